package runtime

import (
	"github.com/choreo-go/choreo/internal/graph"
)

// Table is a typed changelog view: the latest value of every key. Tables
// forward changes (the old and the new value of a key) to their downstream
// operators; a deletion is a change without a new value and becomes a
// tombstone in ToStream.
type Table[K, V any] struct {
	b    *Builder
	node *graph.Node // its instance forwards Record[K, change[V]]
	key  Serde[K]
	val  Serde[V]
	// store is the store the table is materialized in, or "" (Filter,
	// MapTableValues).
	store string
	// getter looks values up for joins; getterStore is the store it reads.
	getter      getterSupplier[K, V]
	getterStore string
}

func (t Table[K, V]) builder() *Builder {
	if t.b == nil {
		panic("runtime: use of a zero Table (create tables with TableOf or an aggregation)")
	}
	return t.b.use()
}

// StoreName is the name of the store the table is materialized in (for
// interactive queries), or "" for a table derived by Filter or
// MapTableValues, which is computed from its parent's store on demand.
func (t Table[K, V]) StoreName() string { return t.store }

// KeySerde returns the table's key serde.
func (t Table[K, V]) KeySerde() Serde[K] { return t.key }

// ValueSerde returns the table's value serde.
func (t Table[K, V]) ValueSerde() Serde[V] { return t.val }

// TableOf reads topic as a table, materialized in a logged store named by
// Named (else "<topic>-STATE-STORE-0000000000"). A nil value on the wire
// deletes the key (the deletion of an absent key changes nothing); records
// with a nil key are skipped. With Named(n) the table node is n, its
// source node n-source and its store n.
func TableOf[K, V any](b *Builder, topic string, key Serde[K], value Serde[V], opts ...Option) Table[K, V] {
	b.use()
	o := b.parseOptions("TableOf", optName, opts)
	if topic == "" {
		b.errorf("TableOf: empty topic")
	}
	if key == nil || value == nil {
		b.errorf("TableOf(%q): nil serde", topic)
	}
	var srcName, name, store string
	if o.name != "" {
		srcName, name, store = o.name+"-source", o.name, o.name
	} else {
		store = b.derive(topic + "-STATE-STORE-")
		srcName = b.derive("KSTREAM-SOURCE-")
		name = b.derive("KTABLE-SOURCE-")
	}
	src := addSource(b, srcName, []string{topic}, false, key, value, true)
	b.addStore(&graph.StoreSpec{Name: store, Logged: true, Table: true})
	n := addProcessor(b, name, "table", []string{store}, src,
		func(t graph.Task, kids fanout[K, change[V]]) (processor[K, V], error) {
			ts, err := openTableStore(t, store, key, value)
			if err != nil {
				return nil, err
			}
			return &materializeInst[K, V]{name: name, store: ts, kids: kids}, nil
		})
	return Table[K, V]{b: b, node: n, key: key, val: value, store: store, getter: storeGetter(store, key, value), getterStore: store}
}

// materializeInst applies table updates to the store and forwards the
// change with the old value read from the store.
type materializeInst[K, V any] struct {
	name  string
	store tableStore[K, V]
	kids  fanout[K, change[V]]
}

func (m *materializeInst[K, V]) process(r Record[K, V]) error {
	kb, err := m.store.serializeKey(r.Key)
	if err != nil {
		return &graph.Error{Node: m.name, Err: err}
	}
	old, _, has, err := m.store.get(kb)
	if err != nil {
		return &graph.Error{Node: m.name, Err: err}
	}
	c := change[V]{oldV: old, hasOld: has}
	if r.Tombstone {
		if !has {
			return nil
		}
		err = m.store.st.Delete(kb)
	} else {
		c.newV, c.hasNew = r.Value, true
		err = m.store.put(kb, r.Value, r.Timestamp)
	}
	if err != nil {
		return &graph.Error{Node: m.name, Err: err}
	}
	return m.kids.forward(Record[K, change[V]]{Key: r.Key, Value: c, Timestamp: r.Timestamp, Headers: r.Headers})
}

// Filter keeps the rows for which pred returns true: a row that stops
// matching is deleted downstream. The result is not materialized.
func (t Table[K, V]) Filter(pred func(K, V) bool, opts ...Option) Table[K, V] {
	b := t.builder()
	o := b.parseOptions("Table.Filter", optName, opts)
	n := addProcessor(b, b.nameOr(o, "KTABLE-FILTER-"), "filter", nil, t.node,
		func(_ graph.Task, kids fanout[K, change[V]]) (processor[K, change[V]], error) {
			return procFunc[K, change[V]](func(r Record[K, change[V]]) error {
				c := r.Value
				var out change[V]
				if c.hasOld && pred(r.Key, c.oldV) {
					out.oldV, out.hasOld = c.oldV, true
				}
				if c.hasNew && pred(r.Key, c.newV) {
					out.newV, out.hasNew = c.newV, true
				}
				if !out.hasOld && !out.hasNew {
					return nil
				}
				r.Value = out
				return kids.forward(r)
			}), nil
		})
	parent := t.getter
	out := t
	out.node, out.store = n, ""
	out.getter = func(tk graph.Task) (valueGetter[K, V], error) {
		get, err := parent(tk)
		if err != nil {
			return nil, err
		}
		return func(k K) (V, bool, error) {
			v, ok, err := get(k)
			if err != nil || !ok || !pred(k, v) {
				var zero V
				return zero, false, err
			}
			return v, true, nil
		}, nil
	}
	return out
}

// MapTableValues computes a new value for every row. The result is not
// materialized.
func MapTableValues[K, V, VR any](t Table[K, V], fn func(K, V) VR, opts ...Option) Table[K, VR] {
	b := t.builder()
	o := b.parseOptions("MapTableValues", optName|optValueSerde, opts)
	n := addProcessor(b, b.nameOr(o, "KTABLE-MAPVALUES-"), "mapValues", nil, t.node,
		func(_ graph.Task, kids fanout[K, change[VR]]) (processor[K, change[V]], error) {
			return procFunc[K, change[V]](func(r Record[K, change[V]]) error {
				c := r.Value
				out := change[VR]{hasOld: c.hasOld, hasNew: c.hasNew}
				if c.hasOld {
					out.oldV = fn(r.Key, c.oldV)
				}
				if c.hasNew {
					out.newV = fn(r.Key, c.newV)
				}
				return kids.forward(Record[K, change[VR]]{Key: r.Key, Value: out, Timestamp: r.Timestamp, Headers: r.Headers})
			}), nil
		})
	parent := t.getter
	return Table[K, VR]{b: b, node: n, key: t.key,
		val: valueSerdeOr(b, o, "MapTableValues", DefaultSerde[VR]()),
		getter: func(tk graph.Task) (valueGetter[K, VR], error) {
			get, err := parent(tk)
			if err != nil {
				return nil, err
			}
			return func(k K) (VR, bool, error) {
				v, ok, err := get(k)
				if err != nil || !ok {
					var zero VR
					return zero, false, err
				}
				return fn(k, v), true, nil
			}, nil
		},
		getterStore: t.getterStore,
	}
}

// ToStream turns the table's changes into a stream of their new values; a
// deletion becomes a tombstone record (nil value on the wire).
func (t Table[K, V]) ToStream(opts ...Option) Stream[K, V] {
	b := t.builder()
	o := b.parseOptions("ToStream", optName, opts)
	n := addProcessor(b, b.nameOr(o, "KTABLE-TOSTREAM-"), "toStream", nil, t.node,
		func(_ graph.Task, kids fanout[K, V]) (processor[K, change[V]], error) {
			return procFunc[K, change[V]](func(r Record[K, change[V]]) error {
				return kids.forward(Record[K, V]{Key: r.Key, Value: r.Value.newV, Timestamp: r.Timestamp, Headers: r.Headers, Tombstone: !r.Value.hasNew})
			}), nil
		})
	return Stream[K, V]{b: b, node: n, key: t.key, val: t.val}
}
