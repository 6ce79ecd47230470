package runtime

import (
	"github.com/choreo-go/choreo/internal/graph"
)

// Grouped is a stream grouped by key, ready for an aggregation. When the
// key was changed upstream, the aggregation first routes the records
// through a repartition topic so that all records of a key meet in one
// task.
type Grouped[K, V any] struct {
	s          Stream[K, V]
	name       string // repartition topic name from Named, or ""
	partitions int32
	// rp caches the repartition source, shared by every aggregation of
	// this grouping.
	rp *rpCache
}

type rpCache struct{ src *graph.Node }

// GroupByKey groups the stream by its current key. If the key was changed
// upstream (Map, FlatMap, SelectKey, Process) the aggregation repartitions
// it first, through <app>-<name>-repartition where name is Named here, else
// the aggregation's store name. WithPartitions sets that topic's partition
// count; WithKeySerde and WithValueSerde the serdes used for it and for the
// aggregation's store key.
func (s Stream[K, V]) GroupByKey(opts ...Option) Grouped[K, V] {
	b := s.builder()
	o := b.parseOptions("GroupByKey", optName|optKeySerde|optValueSerde|optPartitions, opts)
	s.key = keySerdeOr(b, o, "GroupByKey", s.key)
	s.val = valueSerdeOr(b, o, "GroupByKey", s.val)
	return Grouped[K, V]{s: s, name: o.name, partitions: o.partitions, rp: &rpCache{}}
}

// GroupBy groups the stream by a new key computed by fn (fn sees the zero
// value for a tombstone), which always repartitions. Named(n) names the
// key-selecting node and the repartition topic n.
func GroupBy[K, V, KR any](s Stream[K, V], fn func(K, V) KR, opts ...Option) Grouped[KR, V] {
	b := s.builder()
	o := b.parseOptions("GroupBy", optName|optKeySerde|optValueSerde|optPartitions, opts)
	n := addSelectKey(b, b.nameOr(o, "KSTREAM-KEY-SELECT-"), s.node, fn)
	rs := Stream[KR, V]{b: b, node: n,
		key:     keySerdeOr(b, o, "GroupBy", DefaultSerde[KR]()),
		val:     valueSerdeOr(b, o, "GroupBy", s.val),
		rekeyed: true}
	return Grouped[KR, V]{s: rs, name: o.name, partitions: o.partitions, rp: &rpCache{}}
}

func (g Grouped[K, V]) builder() *Builder {
	if g.s.b == nil {
		panic("runtime: use of a zero Grouped (create it with GroupByKey or GroupBy)")
	}
	return g.s.builder()
}

// input returns the node the aggregation reads: the grouped stream, or the
// source of its repartition topic (created by the first aggregation of the
// grouping and shared by the others).
func (g Grouped[K, V]) input(b *Builder, store string) *graph.Node {
	if !g.s.rekeyed {
		return g.s.node
	}
	if g.rp.src == nil {
		name := g.name
		if name == "" {
			name = store
		}
		g.rp.src = addRepartition(b, g.s.node, name, g.partitions, g.s.key, g.s.val)
	}
	return g.rp.src
}

// aggregateNames returns the store and node names of an aggregation:
// Named(n) gives both; else the store is derived first (as Kafka Streams
// does) and the node after the repartition nodes.
func aggregateNames(b *Builder, o *options, prefix string) (store string, name func() string) {
	if o.name != "" {
		return o.name, func() string { return o.name }
	}
	return b.derive(prefix + "-STATE-STORE-"), func() string { return b.derive(prefix + "-") }
}

// Count counts the records of every key; tombstones are not counted. The
// result is materialized in a logged store named by Named (else
// KSTREAM-AGGREGATE-STATE-STORE-0000000000) and emits, for every record,
// the key's new count with the record's timestamp.
func Count[K, V any](g Grouped[K, V], opts ...Option) Table[K, int64] {
	b := g.builder()
	o := b.parseOptions("Count", optName, opts)
	store, name := aggregateNames(b, o, "KSTREAM-AGGREGATE")
	in := g.input(b, store)
	return addAggregate(b, name(), "count", store, in, g.s.key, Int64(), true,
		func(_ K, _ V, agg int64, has bool) (int64, bool) {
			if !has {
				return 1, true
			}
			return agg + 1, true
		})
}

// Reduce combines the values of every key with fn, starting with the
// first value; tombstones are skipped. Materialized like Count.
func Reduce[K, V any](g Grouped[K, V], fn func(agg, v V) V, opts ...Option) Table[K, V] {
	b := g.builder()
	o := b.parseOptions("Reduce", optName, opts)
	store, name := aggregateNames(b, o, "KSTREAM-REDUCE")
	in := g.input(b, store)
	return addAggregate(b, name(), "reduce", store, in, g.s.key, g.s.val, true,
		func(_ K, v V, agg V, has bool) (V, bool) {
			if !has {
				return v, true
			}
			return fn(agg, v), true
		})
}

// Aggregate folds the values of every key into an aggregate that starts
// as init(); tombstones are skipped. The aggregate is stored with
// WithValueSerde, else DefaultSerde[A]. Materialized like Count.
func Aggregate[K, V, A any](g Grouped[K, V], init func() A, fn func(k K, v V, agg A) A, opts ...Option) Table[K, A] {
	b := g.builder()
	o := b.parseOptions("Aggregate", optName|optValueSerde, opts)
	store, name := aggregateNames(b, o, "KSTREAM-AGGREGATE")
	in := g.input(b, store)
	return addAggregate(b, name(), "aggregate", store, in, g.s.key, valueSerdeOr(b, o, "Aggregate", DefaultSerde[A]()), true,
		func(k K, v V, agg A, has bool) (A, bool) {
			if !has {
				agg = init()
			}
			return fn(k, v, agg), true
		})
}
