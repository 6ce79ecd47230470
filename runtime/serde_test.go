package runtime_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/choreo-go/choreo/runtime"
)

type order struct {
	ID     string  `json:"id" msgpack:"id"`
	Amount float64 `json:"amount" msgpack:"amount"`
	Lines  []int   `json:"lines" msgpack:"lines"`
}

func roundTrip[T any](t *testing.T, name string, s runtime.Serde[T], v T) []byte {
	t.Helper()
	b, err := s.Serialize(v)
	if err != nil {
		t.Fatalf("%s: serialize: %v", name, err)
	}
	got, err := s.Deserialize(b)
	if err != nil {
		t.Fatalf("%s: deserialize: %v", name, err)
	}
	eq(t, name, got, v)
	return b
}

func TestSerdes(t *testing.T) {
	roundTrip(t, "string", runtime.String(), "héllo")
	roundTrip(t, "bytes", runtime.Bytes(), []byte{0, 1, 2})
	if b := roundTrip(t, "int64", runtime.Int64(), int64(-2)); !bytes.Equal(b, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe}) {
		t.Errorf("int64 encoding %x, want Kafka's LongSerializer", b)
	}
	if b, _ := runtime.Int64().Serialize(258); !bytes.Equal(b, []byte{0, 0, 0, 0, 0, 0, 1, 2}) {
		t.Errorf("int64 encoding %x", b)
	}
	o := order{ID: "o1", Amount: 12.5, Lines: []int{1, 2}}
	if b := roundTrip(t, "json", runtime.JSON[order](), o); string(b) != `{"id":"o1","amount":12.5,"lines":[1,2]}` {
		t.Errorf("json %s", b)
	}
	roundTrip(t, "msgpack", runtime.Msgpack[order](), o)
	roundTrip(t, "msgpack pointer", runtime.Msgpack[*order](), &o)

	// Bytes.Deserialize copies: the input buffer may be reused.
	buf := []byte("abc")
	v, _ := runtime.Bytes().Deserialize(buf)
	buf[0] = 'x'
	if string(v) != "abc" {
		t.Error("Bytes.Deserialize aliases its input")
	}

	for name, err := range map[string]error{
		"int64":   second(runtime.Int64().Deserialize([]byte{1, 2})),
		"json":    second(runtime.JSON[order]().Deserialize([]byte("{"))),
		"msgpack": second(runtime.Msgpack[order]().Deserialize([]byte{0xc1})),
		"json ser": func() error {
			_, err := runtime.JSON[chan int]().Serialize(make(chan int))
			return err
		}(),
	} {
		if !errors.Is(err, runtime.ErrSerde) {
			t.Errorf("%s: error %v does not wrap ErrSerde", name, err)
		}
	}
}

func second[T any](_ T, err error) error { return err }

func TestDefaultSerde(t *testing.T) {
	if _, ok := runtime.DefaultSerde[string]().(interface{ Serialize(string) ([]byte, error) }); !ok {
		t.Fatal("string")
	}
	b, _ := runtime.DefaultSerde[string]().Serialize("x")
	eq(t, "string", string(b), "x")
	b, _ = runtime.DefaultSerde[int64]().Serialize(1)
	eq(t, "int64", b, []byte{0, 0, 0, 0, 0, 0, 0, 1})
	b, _ = runtime.DefaultSerde[[]byte]().Serialize([]byte("raw"))
	eq(t, "bytes", string(b), "raw")
	roundTrip(t, "struct → msgpack", runtime.DefaultSerde[order](), order{ID: "x"})
	mp, _ := runtime.Msgpack[order]().Serialize(order{ID: "x"})
	b, _ = runtime.DefaultSerde[order]().Serialize(order{ID: "x"})
	eq(t, "default is msgpack", b, mp)
}

type orderID string

type cents int64

type blob []byte

func TestDefaultSerdeNamedTypes(t *testing.T) {
	if b := roundTrip(t, "named string", runtime.DefaultSerde[orderID](), orderID("o-1")); string(b) != "o-1" {
		t.Errorf("named string encoded as %q", b)
	}
	if b := roundTrip(t, "named int64", runtime.DefaultSerde[cents](), cents(258)); !bytes.Equal(b, []byte{0, 0, 0, 0, 0, 0, 1, 2}) {
		t.Errorf("named int64 encoded as %x", b)
	}
	if b := roundTrip(t, "named bytes", runtime.DefaultSerde[blob](), blob("raw")); string(b) != "raw" {
		t.Errorf("named bytes encoded as %q", b)
	}
}

// point encodes itself as a two-element msgpack array and fails on a
// negative X, so a test sees whether its methods were used.
type point struct{ X, Y int8 }

func (p point) MarshalMsgpack() ([]byte, error) {
	if p.X < 0 {
		return nil, errors.New("negative x")
	}
	return []byte{0x92, byte(p.X), byte(p.Y)}, nil
}

func (p *point) UnmarshalMsgpack(b []byte) error {
	if len(b) != 3 || b[0] != 0x92 {
		return errors.New("not a point")
	}
	p.X, p.Y = int8(b[1]), int8(b[2])
	return nil
}

// TestMsgpackMethods: a type with its own msgpack methods is encoded by
// them, to the bytes msgpack.Marshal writes, and their errors wrap
// ErrSerde.
func TestMsgpackMethods(t *testing.T) {
	s := runtime.Msgpack[point]()
	b := roundTrip(t, "point", s, point{3, 4})
	eq(t, "point bytes", b, []byte{0x92, 3, 4})
	ref, err := msgpack.Marshal(point{3, 4})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "same as msgpack.Marshal", b, ref)
	b, _ = runtime.DefaultSerde[point]().Serialize(point{1, 2})
	eq(t, "default serde uses the methods", b, []byte{0x92, 1, 2})
	if _, err := s.Serialize(point{-1, 0}); !errors.Is(err, runtime.ErrSerde) {
		t.Errorf("Serialize error %v does not wrap ErrSerde", err)
	}
	if _, err := s.Deserialize([]byte{0x80}); !errors.Is(err, runtime.ErrSerde) {
		t.Errorf("Deserialize error %v does not wrap ErrSerde", err)
	}
}
