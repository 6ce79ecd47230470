package runtime

import (
	"log/slog"

	"github.com/choreo-go/choreo/internal/graph"
)

// Join joins every stream record with the table's current value for its
// key (the stream key serialized with the table's key serde): fn's result
// is forwarded with the stream record's key, timestamp and headers. Stream
// records whose key is absent from the table, tombstones and records with
// a nil key are dropped (counted by the instance's Dropped).
//
// The stream and the table are processed by the same task, so their source
// topics must be co-partitioned (checked at startup). If the stream's key
// was changed upstream it is first repartitioned through
// <app>-<name>-repartition (name: Named, else the join's derived name)
// with the partition count of the table's topics.
//
// The output value serde is WithValueSerde, else DefaultSerde[VR].
func Join[K, V, VT, VR any](s Stream[K, V], t Table[K, VT], fn func(k K, v V, vt VT) VR, opts ...Option) Stream[K, VR] {
	return joinStreamTable(s, t, "Join", "KSTREAM-JOIN-", false,
		func(k K, v V, vt VT, _ bool) VR { return fn(k, v, vt) }, opts)
}

// LeftJoin is Join that also forwards stream records without a table
// value: fn then gets the zero VT and found=false.
func LeftJoin[K, V, VT, VR any](s Stream[K, V], t Table[K, VT], fn func(k K, v V, vt VT, found bool) VR, opts ...Option) Stream[K, VR] {
	return joinStreamTable(s, t, "LeftJoin", "KSTREAM-LEFTJOIN-", true, fn, opts)
}

func joinStreamTable[K, V, VT, VR any](s Stream[K, V], t Table[K, VT], op, prefix string, left bool,
	fn func(k K, v V, vt VT, found bool) VR, opts []Option) Stream[K, VR] {
	b := s.builder()
	o := b.parseOptions(op, optName|optValueSerde, opts)
	if t.b != b {
		b.errorf("%s: the table is not from this builder", op)
		return Stream[K, VR]{b: b, node: s.node, key: s.key, val: DefaultSerde[VR]()}
	}
	name := b.nameOr(o, prefix)
	in := s.node
	if s.rekeyed {
		in = addRepartition(b, s.node, name, 0, s.key, s.val)
	}
	getter := t.getter
	n := addProcessor(b, name, "join", []string{t.getterStore}, in,
		func(tk graph.Task, kids fanout[K, VR]) (processor[K, V], error) {
			get, err := getter(tk)
			if err != nil {
				return nil, err
			}
			return &joinInst[K, V, VT, VR]{name: name, get: get, fn: fn, left: left, kids: kids, log: tk.Logger()}, nil
		})
	group := upstreamSources(in)
	for _, src := range upstreamSources(t.node) {
		if !containsNode(group, src) {
			group = append(group, src)
		}
	}
	b.g.CopartitionGroups = append(b.g.CopartitionGroups, group)
	return Stream[K, VR]{b: b, node: n, key: s.key, val: valueSerdeOr(b, o, op, DefaultSerde[VR]())}
}

func containsNode(ns []*graph.Node, n *graph.Node) bool {
	for _, m := range ns {
		if m == n {
			return true
		}
	}
	return false
}

type joinInst[K, V, VT, VR any] struct {
	name    string
	get     valueGetter[K, VT]
	fn      func(k K, v V, vt VT, found bool) VR
	left    bool
	kids    fanout[K, VR]
	log     *slog.Logger
	dropped dropCounter
}

func (j *joinInst[K, V, VT, VR]) process(r Record[K, V]) error {
	if r.nullKey {
		return &graph.Error{Node: j.name, Err: ErrNullKey}
	}
	if r.Tombstone {
		j.dropped.dropInvalid(j.log, j.name, "null value")
		return nil
	}
	vt, found, err := j.get(r.Key)
	if err != nil {
		return &graph.Error{Node: j.name, Err: err}
	}
	if !found && !j.left {
		j.dropped.drop(j.log, j.name, "no table value")
		return nil
	}
	return j.kids.forward(Record[K, VR]{Key: r.Key, Value: j.fn(r.Key, r.Value, vt, found), Timestamp: r.Timestamp, Headers: r.Headers})
}

// Dropped is the number of stream records the join dropped: no table value
// (inner join), a tombstone or a nil key.
func (j *joinInst[K, V, VT, VR]) Dropped() int64 { return j.dropped.n.Load() }
