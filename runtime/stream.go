package runtime

import (
	"github.com/choreo-go/choreo/internal/graph"
)

// Stream is a typed record stream: every record is an independent event.
// A Stream value is a handle on a node of the topology being built; using
// it twice forks the stream.
type Stream[K, V any] struct {
	b    *Builder
	node *graph.Node
	key  Serde[K]
	val  Serde[V]
	// rekeyed marks a stream whose key was changed upstream (Map, FlatMap,
	// SelectKey, Process): grouping and joins repartition it first.
	rekeyed bool
}

func (s Stream[K, V]) builder() *Builder {
	if s.b == nil {
		panic("runtime: use of a zero Stream (create streams with StreamOf)")
	}
	return s.b.use()
}

// KeySerde returns the stream's key serde.
func (s Stream[K, V]) KeySerde() Serde[K] { return s.key }

// ValueSerde returns the stream's value serde.
func (s Stream[K, V]) ValueSerde() Serde[V] { return s.val }

// StreamOf reads topic as a stream. A nil value on the wire becomes a
// tombstone record (Record.Tombstone), a nil key the zero key. Named names
// the source node. A topic may be read by one source only.
func StreamOf[K, V any](b *Builder, topic string, key Serde[K], value Serde[V], opts ...Option) Stream[K, V] {
	b.use()
	o := b.parseOptions("StreamOf", optName, opts)
	if topic == "" {
		b.errorf("StreamOf: empty topic")
	}
	if key == nil || value == nil {
		b.errorf("StreamOf(%q): nil serde", topic)
	}
	n := addSource(b, b.nameOr(o, "KSTREAM-SOURCE-"), []string{topic}, false, key, value, false)
	return Stream[K, V]{b: b, node: n, key: key, val: value}
}

// Filter keeps the records for which pred returns true. pred sees the zero
// value for a tombstone.
func (s Stream[K, V]) Filter(pred func(K, V) bool, opts ...Option) Stream[K, V] {
	return s.filter("Filter", pred, false, opts)
}

// FilterNot drops the records for which pred returns true.
func (s Stream[K, V]) FilterNot(pred func(K, V) bool, opts ...Option) Stream[K, V] {
	return s.filter("FilterNot", pred, true, opts)
}

func (s Stream[K, V]) filter(op string, pred func(K, V) bool, not bool, opts []Option) Stream[K, V] {
	b := s.builder()
	o := b.parseOptions(op, optName, opts)
	n := addProcessor(b, b.nameOr(o, "KSTREAM-FILTER-"), "filter", nil, s.node,
		func(_ graph.Task, kids fanout[K, V]) (processor[K, V], error) {
			return procFunc[K, V](func(r Record[K, V]) error {
				if pred(r.Key, r.Value) == not {
					return nil
				}
				return kids.forward(r)
			}), nil
		})
	return s.with(n)
}

// with returns the stream continued at node n.
func (s Stream[K, V]) with(n *graph.Node) Stream[K, V] {
	s.node = n
	return s
}

// Peek calls fn for every record and forwards it unchanged.
func (s Stream[K, V]) Peek(fn func(K, V), opts ...Option) Stream[K, V] {
	b := s.builder()
	o := b.parseOptions("Peek", optName, opts)
	n := addProcessor(b, b.nameOr(o, "KSTREAM-PEEK-"), "peek", nil, s.node,
		func(_ graph.Task, kids fanout[K, V]) (processor[K, V], error) {
			return procFunc[K, V](func(r Record[K, V]) error {
				fn(r.Key, r.Value)
				return kids.forward(r)
			}), nil
		})
	return s.with(n)
}

// Merge combines s and others into one stream (with the serdes of s).
func (s Stream[K, V]) Merge(others ...Stream[K, V]) Stream[K, V] {
	b := s.builder()
	parents := []*graph.Node{s.node}
	rekeyed := s.rekeyed
	for i, o := range others {
		if o.b != b {
			b.errorf("Merge: stream %d is not from this builder", i+1)
			continue
		}
		parents = append(parents, o.node)
		rekeyed = rekeyed || o.rekeyed
	}
	n := b.addNode(&graph.Node{
		Name: b.derive("KSTREAM-MERGE-"),
		Kind: graph.KindProcessor,
		Op:   "merge",
		Instantiate: func(_ graph.Task, kids []any) (any, error) {
			f, err := kidsOf[K, V](kids)
			if err != nil {
				return nil, err
			}
			return procFunc[K, V](f.forward), nil
		},
	}, parents...)
	out := s.with(n)
	out.rekeyed = rekeyed
	return out
}

// To writes the stream to topic with the stream's serdes, unless
// WithKeySerde or WithValueSerde is given. Records are partitioned by
// murmur2 of the serialized key, like the Java client; a tombstone is
// written with a nil value.
func (s Stream[K, V]) To(topic string, opts ...Option) {
	b := s.builder()
	o := b.parseOptions("To", optName|optKeySerde|optValueSerde, opts)
	if topic == "" {
		b.errorf("To: empty topic")
	}
	key := keySerdeOr(b, o, "To", s.key)
	val := valueSerdeOr(b, o, "To", s.val)
	addSink(b, b.nameOr(o, "KSTREAM-SINK-"), topic, false, key, val, s.node)
}

// Repartition routes the stream through the repartition topic
// <app>-<name>-repartition (Named, else derived), partitioned by the
// current key. WithPartitions sets its partition count; WithKeySerde and
// WithValueSerde its serdes (and those of the returned stream).
func (s Stream[K, V]) Repartition(opts ...Option) Stream[K, V] {
	b := s.builder()
	o := b.parseOptions("Repartition", optName|optKeySerde|optValueSerde|optPartitions, opts)
	name := b.nameOr(o, "KSTREAM-REPARTITION-")
	key := keySerdeOr(b, o, "Repartition", s.key)
	val := valueSerdeOr(b, o, "Repartition", s.val)
	src := addRepartition(b, s.node, name, o.partitions, key, val)
	return Stream[K, V]{b: b, node: src, key: key, val: val}
}

// Map computes a new key and value for every record. A tombstone stays a
// tombstone: fn sees the zero value and only its key is used.
func Map[K, V, KR, VR any](s Stream[K, V], fn func(K, V) (KR, VR), opts ...Option) Stream[KR, VR] {
	b := s.builder()
	o := b.parseOptions("Map", optName|optKeySerde|optValueSerde, opts)
	n := addProcessor(b, b.nameOr(o, "KSTREAM-MAP-"), "map", nil, s.node,
		func(_ graph.Task, kids fanout[KR, VR]) (processor[K, V], error) {
			return procFunc[K, V](func(r Record[K, V]) error {
				k, v := fn(r.Key, r.Value)
				out := Record[KR, VR]{Key: k, Value: v, Timestamp: r.Timestamp, Headers: r.Headers, Tombstone: r.Tombstone}
				if r.Tombstone {
					var zero VR
					out.Value = zero
				}
				return kids.forward(out)
			}), nil
		})
	return Stream[KR, VR]{b: b, node: n,
		key:     keySerdeOr(b, o, "Map", DefaultSerde[KR]()),
		val:     valueSerdeOr(b, o, "Map", DefaultSerde[VR]()),
		rekeyed: true}
}

// MapValues computes a new value for every record, keeping the key. A
// tombstone is forwarded as a tombstone without calling fn.
func MapValues[K, V, VR any](s Stream[K, V], fn func(K, V) VR, opts ...Option) Stream[K, VR] {
	return mapValues(s, "MapValues", func(k K, v V) (VR, error) { return fn(k, v), nil }, opts)
}

// MapValuesE is MapValues with a function that can fail. Its error fails
// the record; the app's processing error handler decides what follows.
func MapValuesE[K, V, VR any](s Stream[K, V], fn func(K, V) (VR, error), opts ...Option) Stream[K, VR] {
	return mapValues(s, "MapValuesE", fn, opts)
}

func mapValues[K, V, VR any](s Stream[K, V], op string, fn func(K, V) (VR, error), opts []Option) Stream[K, VR] {
	b := s.builder()
	o := b.parseOptions(op, optName|optValueSerde, opts)
	name := b.nameOr(o, "KSTREAM-MAPVALUES-")
	n := addProcessor(b, name, "mapValues", nil, s.node,
		func(_ graph.Task, kids fanout[K, VR]) (processor[K, V], error) {
			return procFunc[K, V](func(r Record[K, V]) error {
				out := Record[K, VR]{Key: r.Key, Timestamp: r.Timestamp, Headers: r.Headers, Tombstone: r.Tombstone, nullKey: r.nullKey}
				if !r.Tombstone {
					v, err := fn(r.Key, r.Value)
					if err != nil {
						return &graph.Error{Node: name, Err: err}
					}
					out.Value = v
				}
				return kids.forward(out)
			}), nil
		})
	return Stream[K, VR]{b: b, node: n, key: s.key, val: valueSerdeOr(b, o, op, DefaultSerde[VR]()), rekeyed: s.rekeyed}
}

// FlatMap turns every record into zero or more records with new keys and
// values, all with the input's timestamp and headers. For a tombstone fn
// sees the zero value, and every output is a tombstone.
func FlatMap[K, V, KR, VR any](s Stream[K, V], fn func(K, V) []KeyValue[KR, VR], opts ...Option) Stream[KR, VR] {
	b := s.builder()
	o := b.parseOptions("FlatMap", optName|optKeySerde|optValueSerde, opts)
	n := addProcessor(b, b.nameOr(o, "KSTREAM-FLATMAP-"), "flatMap", nil, s.node,
		func(_ graph.Task, kids fanout[KR, VR]) (processor[K, V], error) {
			return procFunc[K, V](func(r Record[K, V]) error {
				for _, kv := range fn(r.Key, r.Value) {
					out := Record[KR, VR]{Key: kv.Key, Value: kv.Value, Timestamp: r.Timestamp, Headers: r.Headers, Tombstone: r.Tombstone}
					if r.Tombstone {
						var zero VR
						out.Value = zero
					}
					if err := kids.forward(out); err != nil {
						return err
					}
				}
				return nil
			}), nil
		})
	return Stream[KR, VR]{b: b, node: n,
		key:     keySerdeOr(b, o, "FlatMap", DefaultSerde[KR]()),
		val:     valueSerdeOr(b, o, "FlatMap", DefaultSerde[VR]()),
		rekeyed: true}
}

// FlatMapValues turns every record into zero or more records with the same
// key. A tombstone is forwarded as one tombstone without calling fn.
func FlatMapValues[K, V, VR any](s Stream[K, V], fn func(K, V) []VR, opts ...Option) Stream[K, VR] {
	b := s.builder()
	o := b.parseOptions("FlatMapValues", optName|optValueSerde, opts)
	n := addProcessor(b, b.nameOr(o, "KSTREAM-FLATMAPVALUES-"), "flatMapValues", nil, s.node,
		func(_ graph.Task, kids fanout[K, VR]) (processor[K, V], error) {
			return procFunc[K, V](func(r Record[K, V]) error {
				out := Record[K, VR]{Key: r.Key, Timestamp: r.Timestamp, Headers: r.Headers, Tombstone: r.Tombstone, nullKey: r.nullKey}
				if r.Tombstone {
					return kids.forward(out)
				}
				for _, v := range fn(r.Key, r.Value) {
					out.Value = v
					if err := kids.forward(out); err != nil {
						return err
					}
				}
				return nil
			}), nil
		})
	return Stream[K, VR]{b: b, node: n, key: s.key, val: valueSerdeOr(b, o, "FlatMapValues", DefaultSerde[VR]()), rekeyed: s.rekeyed}
}

// SelectKey computes a new key for every record (fn sees the zero value
// for a tombstone), keeping the value.
func SelectKey[K, V, KR any](s Stream[K, V], fn func(K, V) KR, opts ...Option) Stream[KR, V] {
	b := s.builder()
	o := b.parseOptions("SelectKey", optName|optKeySerde, opts)
	n := addSelectKey(b, b.nameOr(o, "KSTREAM-KEY-SELECT-"), s.node, fn)
	return Stream[KR, V]{b: b, node: n, key: keySerdeOr(b, o, "SelectKey", DefaultSerde[KR]()), val: s.val, rekeyed: true}
}

func addSelectKey[K, V, KR any](b *Builder, name string, parent *graph.Node, fn func(K, V) KR) *graph.Node {
	return addProcessor(b, name, "selectKey", nil, parent,
		func(_ graph.Task, kids fanout[KR, V]) (processor[K, V], error) {
			return procFunc[K, V](func(r Record[K, V]) error {
				return kids.forward(Record[KR, V]{Key: fn(r.Key, r.Value), Value: r.Value, Timestamp: r.Timestamp, Headers: r.Headers, Tombstone: r.Tombstone})
			}), nil
		})
}
