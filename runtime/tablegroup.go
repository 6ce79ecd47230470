package runtime

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/internal/graph"
)

// GroupedTable is a table regrouped by a new key, ready for an aggregation
// with an adder and a subtractor. Its changes always travel through a
// repartition topic.
type GroupedTable[K, V any] struct {
	b          *Builder
	node       *graph.Node // forwards Record[K, change[V]]
	key        Serde[K]
	val        Serde[V]
	name       string // repartition topic name from Named, or ""
	partitions int32
	rp         *rpCache // shared by every aggregation of this grouping
}

// GroupTable regroups the table's rows by the key and value fn computes.
// When a row changes, its old value is subtracted from the old row's group
// and its new value added to the new row's group: if both groups are the
// same, the change travels as one repartition record and the aggregate
// emits one update; otherwise the old group's record is sent first.
// Named(n) names the selecting node and the repartition topic n (else the
// aggregation's store name); WithPartitions sets that topic's partition
// count; WithKeySerde and WithValueSerde the serdes of KR and VR.
func GroupTable[K, V, KR, VR any](t Table[K, V], fn func(K, V) (KR, VR), opts ...Option) GroupedTable[KR, VR] {
	b := t.builder()
	o := b.parseOptions("GroupTable", optName|optKeySerde|optValueSerde|optPartitions, opts)
	key := keySerdeOr(b, o, "GroupTable", DefaultSerde[KR]())
	val := valueSerdeOr(b, o, "GroupTable", DefaultSerde[VR]())
	name := b.nameOr(o, "KTABLE-SELECT-")
	n := addProcessor(b, name, "groupBy", nil, t.node,
		func(_ graph.Task, kids fanout[KR, change[VR]]) (processor[K, change[V]], error) {
			return procFunc[K, change[V]](func(r Record[K, change[V]]) error {
				c := r.Value
				var ko, kn KR
				var vo, vn VR
				if c.hasOld {
					ko, vo = fn(r.Key, c.oldV)
				}
				if c.hasNew {
					kn, vn = fn(r.Key, c.newV)
				}
				out := Record[KR, change[VR]]{Timestamp: r.Timestamp, Headers: r.Headers}
				if c.hasOld && c.hasNew {
					same, err := sameKey(key, ko, kn)
					if err != nil {
						return &graph.Error{Node: name, Err: err}
					}
					if same {
						out.Key, out.Value = kn, change[VR]{oldV: vo, newV: vn, hasOld: true, hasNew: true}
						return kids.forward(out)
					}
				}
				if c.hasOld {
					out.Key, out.Value = ko, change[VR]{oldV: vo, hasOld: true}
					if err := kids.forward(out); err != nil {
						return err
					}
				}
				if c.hasNew {
					out.Key, out.Value = kn, change[VR]{newV: vn, hasNew: true}
					return kids.forward(out)
				}
				return nil
			}), nil
		})
	return GroupedTable[KR, VR]{b: b, node: n, key: key, val: val, name: o.name, partitions: o.partitions, rp: &rpCache{}}
}

// sameKey reports whether two keys serialize to the same bytes (and so
// land in the same group and partition).
func sameKey[K any](s Serde[K], a, b K) (bool, error) {
	ab, err := s.Serialize(a)
	if err != nil {
		return false, serdeErr("serialize key", err)
	}
	bb, err := s.Serialize(b)
	if err != nil {
		return false, serdeErr("serialize key", err)
	}
	return bytes.Equal(ab, bb), nil
}

func (g GroupedTable[K, V]) builder() *Builder {
	if g.b == nil {
		panic("runtime: use of a zero GroupedTable (create it with GroupTable)")
	}
	return g.b.use()
}

// input returns the source of the repartition topic the aggregation reads,
// created by the first aggregation of the grouping.
func (g GroupedTable[K, V]) input(b *Builder, store string) *graph.Node {
	if g.rp.src == nil {
		g.rp.src = g.addRepartition(b, store)
	}
	return g.rp.src
}

func (g GroupedTable[K, V]) addRepartition(b *Builder, store string) *graph.Node {
	name := g.name
	if name == "" {
		name = store
	}
	b.addRepartitionSpec(name, g.partitions)
	key, val := g.key, g.val
	sinkName, srcName := name+"-repartition-sink", name+"-repartition-source"
	b.addNode(&graph.Node{
		Name:          sinkName,
		Kind:          graph.KindSink,
		Op:            "sink",
		Topic:         name,
		InternalTopic: true,
		Instantiate: func(t graph.Task, _ []any) (any, error) {
			return &changeSink[K, V]{t: t, name: sinkName, topic: graph.Repartition(t.AppID(), name), key: key, val: val}, nil
		},
	}, g.node)
	return b.addNode(&graph.Node{
		Name:          srcName,
		Kind:          graph.KindSource,
		Op:            "source",
		Topics:        []string{name},
		InternalTopic: true,
		Instantiate: func(_ graph.Task, kids []any) (any, error) {
			f, err := kidsOf[K, change[V]](kids)
			if err != nil {
				return nil, err
			}
			return &changeSource[K, V]{name: srcName, key: key, val: val, kids: f}, nil
		},
	})
}

// Value format of a table repartition record (internal topics, written and
// read only by this package):
//
//	byte 0     flags: 0x01 = has an old value (subtract), 0x02 = has a new value (add)
//	uvarint    length of the serialized old value (0 when absent)
//	old value  serialized with the grouped value serde
//	new value  the rest of the record (empty when absent)
const (
	changeHasOld = 0x01
	changeHasNew = 0x02
)

type changeSink[K, V any] struct {
	t     graph.Task
	name  string
	topic string
	key   Serde[K]
	val   Serde[V]
}

func (s *changeSink[K, V]) process(r Record[K, change[V]]) error {
	kb, err := s.key.Serialize(r.Key)
	if err != nil {
		return &graph.Error{Node: s.name, Err: serdeErr("serialize key", err)}
	}
	c := r.Value
	var flags byte
	var ob, nb []byte
	if c.hasOld {
		flags |= changeHasOld
		if ob, err = s.val.Serialize(c.oldV); err != nil {
			return &graph.Error{Node: s.name, Err: serdeErr("serialize old value", err)}
		}
	}
	if c.hasNew {
		flags |= changeHasNew
		if nb, err = s.val.Serialize(c.newV); err != nil {
			return &graph.Error{Node: s.name, Err: serdeErr("serialize new value", err)}
		}
	}
	vb := make([]byte, 0, 1+binary.MaxVarintLen64+len(ob)+len(nb))
	vb = append(vb, flags)
	vb = binary.AppendUvarint(vb, uint64(len(ob)))
	vb = append(vb, ob...)
	vb = append(vb, nb...)
	if kb == nil {
		kb = []byte{}
	}
	if err := s.t.Send(s.topic, -1, kb, vb, r.Headers, r.Timestamp); err != nil {
		return &graph.Error{Node: s.name, Err: err}
	}
	return nil
}

type changeSource[K, V any] struct {
	name string
	key  Serde[K]
	val  Serde[V]
	kids fanout[K, change[V]]
}

func (s *changeSource[K, V]) Process(kr *kgo.Record) error {
	r := Record[K, change[V]]{Timestamp: kr.Timestamp.UnixMilli(), Headers: kr.Headers}
	var err error
	if r.Key, err = s.key.Deserialize(kr.Key); err != nil {
		return &graph.Error{Node: s.name, Err: serdeErr("deserialize key", err)}
	}
	v := kr.Value
	if len(v) < 2 || v[0]&^(changeHasOld|changeHasNew) != 0 {
		return &graph.Error{Node: s.name, Err: fmt.Errorf("%w: malformed table change of %d bytes", ErrSerde, len(v))}
	}
	flags := v[0]
	n, w := binary.Uvarint(v[1:])
	if w <= 0 || n > uint64(len(v)-1-w) {
		return &graph.Error{Node: s.name, Err: fmt.Errorf("%w: malformed table change: bad old value length", ErrSerde)}
	}
	ob, nb := v[1+w:1+w+int(n)], v[1+w+int(n):]
	if flags&changeHasOld != 0 {
		if r.Value.oldV, err = s.val.Deserialize(ob); err != nil {
			return &graph.Error{Node: s.name, Err: serdeErr("deserialize old value", err)}
		}
		r.Value.hasOld = true
	}
	if flags&changeHasNew != 0 {
		if r.Value.newV, err = s.val.Deserialize(nb); err != nil {
			return &graph.Error{Node: s.name, Err: serdeErr("deserialize new value", err)}
		}
		r.Value.hasNew = true
	}
	return s.kids.forward(r)
}

// AggregateTable aggregates the rows of every group: a row's new value is
// added with add (to init() for a new group) and its old value removed
// with sub. A group whose rows were all removed keeps its (subtracted)
// aggregate, as in Kafka Streams. The aggregate is stored with
// WithValueSerde, else DefaultSerde[A], in a logged store named by Named
// (else KTABLE-AGGREGATE-STATE-STORE-0000000000); every change emits the
// group's new aggregate with the input's timestamp.
func AggregateTable[K, V, A any](g GroupedTable[K, V], init func() A, add, sub func(k K, v V, agg A) A, opts ...Option) Table[K, A] {
	b := g.builder()
	o := b.parseOptions("AggregateTable", optName|optValueSerde, opts)
	store, name := aggregateNames(b, o, "KTABLE-AGGREGATE")
	in := g.input(b, store)
	return addAggregate(b, name(), "aggregate", store, in, g.key, valueSerdeOr(b, o, "AggregateTable", DefaultSerde[A]()), false,
		func(k K, c change[V], agg A, has bool) (A, bool) {
			if c.hasOld && has {
				agg = sub(k, c.oldV, agg)
			}
			if c.hasNew {
				if !has {
					agg = init()
				}
				return add(k, c.newV, agg), true
			}
			return agg, has
		})
}

// ReduceTable combines the rows of every group with add, starting with the
// first value, and removes a row's old value with sub. Materialized like
// AggregateTable (store KTABLE-REDUCE-STATE-STORE-0000000000).
func ReduceTable[K, V any](g GroupedTable[K, V], add, sub func(agg, v V) V, opts ...Option) Table[K, V] {
	b := g.builder()
	o := b.parseOptions("ReduceTable", optName, opts)
	store, name := aggregateNames(b, o, "KTABLE-REDUCE")
	in := g.input(b, store)
	return addAggregate(b, name(), "reduce", store, in, g.key, g.val, false,
		func(_ K, c change[V], agg V, has bool) (V, bool) {
			if c.hasOld && has {
				agg = sub(agg, c.oldV)
			}
			if c.hasNew {
				if !has {
					return c.newV, true
				}
				return add(agg, c.newV), true
			}
			return agg, has
		})
}

// CountTable counts the rows of every group. Materialized like
// AggregateTable.
func CountTable[K, V any](g GroupedTable[K, V], opts ...Option) Table[K, int64] {
	b := g.builder()
	o := b.parseOptions("CountTable", optName, opts)
	store, name := aggregateNames(b, o, "KTABLE-AGGREGATE")
	in := g.input(b, store)
	return addAggregate(b, name(), "count", store, in, g.key, Int64(), false,
		func(_ K, c change[V], agg int64, has bool) (int64, bool) {
			if c.hasOld && has {
				agg--
			}
			if c.hasNew {
				return agg + 1, true
			}
			return agg, has
		})
}
