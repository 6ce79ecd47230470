package runtime

import (
	"encoding/binary"
	"fmt"
	"log/slog"

	"github.com/choreo-go/choreo/internal/graph"
	"github.com/choreo-go/choreo/state"
)

// Table stores hold each value as [8-byte big-endian timestamp][serialized
// value], so a table's timestamps survive a restore from its changelog.

func encodeTS(ts int64, v []byte) []byte {
	out := make([]byte, 8+len(v))
	binary.BigEndian.PutUint64(out, uint64(ts))
	copy(out[8:], v)
	return out
}

func decodeTS(raw []byte) (int64, []byte, error) {
	if len(raw) < 8 {
		return 0, nil, fmt.Errorf("%w: table value of %d bytes has no timestamp", state.ErrCorrupt, len(raw))
	}
	return int64(binary.BigEndian.Uint64(raw)), raw[8:], nil
}

// tableStore is typed access to a table store of one task.
type tableStore[K, V any] struct {
	st  graph.Store
	key Serde[K]
	val Serde[V]
}

func openTableStore[K, V any](t graph.Task, name string, key Serde[K], val Serde[V]) (tableStore[K, V], error) {
	st, err := t.Store(name)
	if err != nil {
		return tableStore[K, V]{}, err
	}
	return tableStore[K, V]{st: st, key: key, val: val}, nil
}

func (s tableStore[K, V]) serializeKey(k K) ([]byte, error) {
	kb, err := s.key.Serialize(k)
	if err != nil {
		return nil, serdeErr("serialize key", err)
	}
	return kb, nil
}

// get reads the value (and its timestamp) stored under the serialized key.
func (s tableStore[K, V]) get(kb []byte) (v V, ts int64, ok bool, err error) {
	raw, ok, err := s.st.Get(kb)
	if err != nil || !ok {
		return v, 0, false, err
	}
	ts, vb, err := decodeTS(raw)
	if err != nil {
		return v, 0, false, err
	}
	if v, err = s.val.Deserialize(vb); err != nil {
		return v, 0, false, serdeErr("deserialize stored value", err)
	}
	return v, ts, true, nil
}

func (s tableStore[K, V]) put(kb []byte, v V, ts int64) error {
	vb, err := s.val.Serialize(v)
	if err != nil {
		return serdeErr("serialize value", err)
	}
	return s.st.Put(kb, encodeTS(ts, vb))
}

// valueGetter looks a key up in a table, for joins. Tables that are not
// materialized (Filter, MapTableValues) compose their parent's getter.
type valueGetter[K, V any] func(k K) (V, bool, error)

// getterSupplier creates a table's value getter for one task.
type getterSupplier[K, V any] func(t graph.Task) (valueGetter[K, V], error)

func storeGetter[K, V any](store string, key Serde[K], val Serde[V]) getterSupplier[K, V] {
	return func(t graph.Task) (valueGetter[K, V], error) {
		ts, err := openTableStore(t, store, key, val)
		if err != nil {
			return nil, err
		}
		return func(k K) (V, bool, error) {
			kb, err := ts.serializeKey(k)
			if err != nil {
				var zero V
				return zero, false, err
			}
			v, _, ok, err := ts.get(kb)
			return v, ok, err
		}, nil
	}
}

// aggInst is the instance of every aggregation: it folds each input record
// into the aggregate stored under its key and forwards the change of the
// aggregate, with the input's timestamp and headers.
type aggInst[K, In, A any] struct {
	name             string
	store            tableStore[K, A]
	ignoreTombstones bool
	// step folds in into agg (has: a stored aggregate exists); it returns
	// the new aggregate and whether there is one.
	step    func(k K, in In, agg A, has bool) (A, bool)
	kids    fanout[K, change[A]]
	log     *slog.Logger
	dropped dropCounter
}

func (a *aggInst[K, In, A]) process(r Record[K, In]) error {
	if r.nullKey {
		// Unlike Kafka Streams (which drops it with a warning), the error
		// policy decides: fail with this error, skip, or dead-letter.
		return &graph.Error{Node: a.name, Err: ErrNullKey}
	}
	if r.Tombstone && a.ignoreTombstones {
		a.dropped.dropInvalid(a.log, a.name, "null value")
		return nil
	}
	kb, err := a.store.serializeKey(r.Key)
	if err != nil {
		return &graph.Error{Node: a.name, Err: err}
	}
	old, _, has, err := a.store.get(kb)
	if err != nil {
		return &graph.Error{Node: a.name, Err: err}
	}
	agg, hasNew := a.step(r.Key, r.Value, old, has)
	switch {
	case hasNew:
		err = a.store.put(kb, agg, r.Timestamp)
	case has:
		err = a.store.st.Delete(kb)
	default:
		return nil
	}
	if err != nil {
		return &graph.Error{Node: a.name, Err: err}
	}
	return a.kids.forward(Record[K, change[A]]{
		Key:       r.Key,
		Value:     change[A]{oldV: old, newV: agg, hasOld: has, hasNew: hasNew},
		Timestamp: r.Timestamp,
		Headers:   r.Headers,
	})
}

// Dropped is the number of records skipped for a nil key or value.
func (a *aggInst[K, In, A]) Dropped() int64 { return a.dropped.n.Load() }

// addAggregate adds an aggregation node over store (declared here, logged)
// and returns the table it produces.
func addAggregate[K, In, A any](b *Builder, name, op, store string, parent *graph.Node, key Serde[K], agg Serde[A],
	ignoreTombstones bool, step func(k K, in In, agg A, has bool) (A, bool)) Table[K, A] {
	b.addStore(&graph.StoreSpec{Name: store, Logged: true, Table: true})
	n := addProcessor(b, name, op, []string{store}, parent,
		func(t graph.Task, kids fanout[K, change[A]]) (processor[K, In], error) {
			ts, err := openTableStore(t, store, key, agg)
			if err != nil {
				return nil, err
			}
			return &aggInst[K, In, A]{name: name, store: ts, ignoreTombstones: ignoreTombstones, step: step, kids: kids, log: t.Logger()}, nil
		})
	return Table[K, A]{b: b, node: n, key: key, val: agg, store: store, getter: storeGetter(store, key, agg), getterStore: store}
}
