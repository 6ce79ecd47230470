package runtime

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"
)

// ErrSerde is wrapped by every serialization and deserialization failure,
// including those of user serdes as reported by sources and sinks: test it
// with errors.Is.
var ErrSerde = errors.New("serde")

// Serde serializes and deserializes values of type T.
//
// Deserialize is never called with nil: a nil value on the wire is a
// tombstone (Record.Tombstone) and a nil key becomes the zero key, both
// handled before the serde is asked. Deserialize must not retain data: the
// slice may be reused after the call.
type Serde[T any] interface {
	Serialize(v T) ([]byte, error)
	Deserialize(data []byte) (T, error)
}

// String returns the serde of UTF-8 strings (Kafka's StringSerializer).
func String() Serde[string] { return stringSerde{} }

// Bytes returns the serde of raw bytes. Deserialize copies.
func Bytes() Serde[[]byte] { return bytesSerde{} }

// Int64 returns the serde of int64 as 8 bytes big-endian, like Kafka's
// LongSerializer.
func Int64() Serde[int64] { return int64Serde{} }

// JSON returns a serde that encodes T with encoding/json.
func JSON[T any]() Serde[T] { return jsonSerde[T]{} }

// Msgpack returns a serde that encodes T with MessagePack
// (github.com/vmihailenco/msgpack/v5). A type that implements
// msgpack.Marshaler and whose pointer implements msgpack.Unmarshaler is
// encoded and decoded by its own methods, called directly: the bytes are the
// same as through msgpack.Marshal, which calls them too, without its encoder
// and reflection in between. Hand-written methods are how a hot type avoids
// the cost of reflection.
func Msgpack[T any]() Serde[T] {
	pt := reflect.TypeFor[*T]()
	if pt.Implements(reflect.TypeFor[msgpack.Marshaler]()) && pt.Implements(reflect.TypeFor[msgpack.Unmarshaler]()) {
		return msgpackMethods[T]{}
	}
	return msgpackSerde[T]{}
}

// DefaultSerde returns String for string, Bytes for []byte, Int64 for int64
// (and the same wire formats for named types with those underlying types,
// such as type OrderID string) and Msgpack for any other type. Operators
// that derive a new key or value type use it unless WithKeySerde or
// WithValueSerde is given.
func DefaultSerde[T any]() Serde[T] {
	var zero T
	switch any(zero).(type) {
	case string:
		return any(String()).(Serde[T])
	case []byte:
		return any(Bytes()).(Serde[T])
	case int64:
		return any(Int64()).(Serde[T])
	}
	switch rt := reflect.TypeFor[T](); {
	case rt.Kind() == reflect.String:
		return stringLike[T]{}
	case rt.Kind() == reflect.Int64:
		return int64Like[T]{}
	case rt.Kind() == reflect.Slice && rt.Elem() == reflect.TypeFor[byte]():
		return bytesLike[T]{}
	}
	return Msgpack[T]()
}

// stringLike, int64Like and bytesLike serve named types whose underlying
// type is string, int64 or []byte (DefaultSerde checks the kind once), with
// the memory layout of the underlying type.
type stringLike[T any] struct{}

func (stringLike[T]) Serialize(v T) ([]byte, error) {
	return String().Serialize(*(*string)(unsafe.Pointer(&v)))
}

func (stringLike[T]) Deserialize(data []byte) (T, error) {
	s := string(data)
	return *(*T)(unsafe.Pointer(&s)), nil
}

type int64Like[T any] struct{}

func (int64Like[T]) Serialize(v T) ([]byte, error) {
	return Int64().Serialize(*(*int64)(unsafe.Pointer(&v)))
}

func (int64Like[T]) Deserialize(data []byte) (T, error) {
	n, err := Int64().Deserialize(data)
	return *(*T)(unsafe.Pointer(&n)), err
}

type bytesLike[T any] struct{}

func (bytesLike[T]) Serialize(v T) ([]byte, error) {
	return Bytes().Serialize(*(*[]byte)(unsafe.Pointer(&v)))
}

func (bytesLike[T]) Deserialize(data []byte) (T, error) {
	b, err := Bytes().Deserialize(data)
	return *(*T)(unsafe.Pointer(&b)), err
}

type stringSerde struct{}

func (stringSerde) Serialize(v string) ([]byte, error)      { return []byte(v), nil }
func (stringSerde) Deserialize(data []byte) (string, error) { return string(data), nil }

type bytesSerde struct{}

func (bytesSerde) Serialize(v []byte) ([]byte, error) {
	if v == nil {
		return []byte{}, nil
	}
	return v, nil
}

func (bytesSerde) Deserialize(data []byte) ([]byte, error) {
	return append([]byte{}, data...), nil
}

type int64Serde struct{}

func (int64Serde) Serialize(v int64) ([]byte, error) {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), uint64(v)), nil
}

func (int64Serde) Deserialize(data []byte) (int64, error) {
	if len(data) != 8 {
		return 0, fmt.Errorf("%w: int64 needs 8 bytes, got %d", ErrSerde, len(data))
	}
	return int64(binary.BigEndian.Uint64(data)), nil
}

type jsonSerde[T any] struct{}

func (jsonSerde[T]) Serialize(v T) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: json: %w", ErrSerde, err)
	}
	return b, nil
}

func (jsonSerde[T]) Deserialize(data []byte) (T, error) {
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return v, fmt.Errorf("%w: json: %w", ErrSerde, err)
	}
	return v, nil
}

type msgpackSerde[T any] struct{}

func (msgpackSerde[T]) Serialize(v T) ([]byte, error) {
	b, err := msgpack.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: msgpack: %w", ErrSerde, err)
	}
	return b, nil
}

func (msgpackSerde[T]) Deserialize(data []byte) (T, error) {
	var v T
	if err := msgpack.Unmarshal(data, &v); err != nil {
		return v, fmt.Errorf("%w: msgpack: %w", ErrSerde, err)
	}
	return v, nil
}

// msgpackMethods is the Msgpack serde of a type with its own msgpack
// methods.
type msgpackMethods[T any] struct{}

func (msgpackMethods[T]) Serialize(v T) ([]byte, error) {
	b, err := any(&v).(msgpack.Marshaler).MarshalMsgpack()
	if err != nil {
		return nil, fmt.Errorf("%w: msgpack: %w", ErrSerde, err)
	}
	return b, nil
}

func (msgpackMethods[T]) Deserialize(data []byte) (T, error) {
	var v T
	if err := any(&v).(msgpack.Unmarshaler).UnmarshalMsgpack(data); err != nil {
		return v, fmt.Errorf("%w: msgpack: %w", ErrSerde, err)
	}
	return v, nil
}

// serdeErr wraps err with ErrSerde (unless it already is one) and what
// failed.
func serdeErr(what string, err error) error {
	if errors.Is(err, ErrSerde) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: %w: %w", what, ErrSerde, err)
}
