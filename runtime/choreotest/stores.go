package choreotest

import (
	"fmt"
	"time"

	"github.com/choreo-go/choreo/internal/runtimelink"
	"github.com/choreo-go/choreo/runtime"
)

// Entry is one key of a store with its value (and, for tables, the
// timestamp of the record that set it).
type Entry[K, V any] struct {
	Key       K
	Value     V
	Timestamp time.Time
	// Partition is the task partition that holds the key.
	Partition int32
}

// StoreReader reads a store's committed state across all tasks, typed.
// Committed state is every piped record's effect: the driver commits after
// each one.
type StoreReader[K, V any] struct {
	d     *Driver
	name  string
	key   runtime.Serde[K]
	val   runtime.Serde[V]
	table bool // values carry the table timestamp prefix
}

// Table reads the store of a materialized table (TableOf, Aggregate,
// Reduce, Count, ...).
func Table[K, V any](d *Driver, t runtime.Table[K, V]) *StoreReader[K, V] {
	return &StoreReader[K, V]{d: d, name: t.StoreName(), key: t.KeySerde(), val: t.ValueSerde(), table: true}
}

// TableStore reads the table store named name (a table the test cannot
// reach as a runtime.Table value, such as an intermediate aggregate) with
// the table's serdes.
func TableStore[K, V any](d *Driver, name string, key runtime.Serde[K], val runtime.Serde[V]) *StoreReader[K, V] {
	return &StoreReader[K, V]{d: d, name: name, key: key, val: val, table: true}
}

// Store reads a processor store declared with runtime.AddStore.
func Store[K, V any](d *Driver, ref runtime.StoreRef[K, V]) *StoreReader[K, V] {
	return &StoreReader[K, V]{d: d, name: ref.Name(), key: ref.KeySerde(), val: ref.ValueSerde()}
}

// Get returns the value stored under k; ok is false when there is none.
func (s *StoreReader[K, V]) Get(k K) (v V, ok bool, err error) {
	e, ok, err := s.GetEntry(k)
	return e.Value, ok, err
}

// GetEntry is Get with the entry's timestamp (tables only).
func (s *StoreReader[K, V]) GetEntry(k K) (Entry[K, V], bool, error) {
	kb, err := s.key.Serialize(k)
	if err != nil {
		return Entry[K, V]{}, false, fmt.Errorf("choreotest: store %s: serialize key: %w", s.name, err)
	}
	raw, ok, err := s.d.d.StoreGet(s.name, kb)
	if err != nil || !ok {
		return Entry[K, V]{}, false, err
	}
	e, err := s.decode(k, raw)
	return e, err == nil, err
}

// All returns every entry, in the byte order of the serialized keys.
func (s *StoreReader[K, V]) All() ([]Entry[K, V], error) {
	kvs, err := s.d.d.StoreAll(s.name)
	if err != nil {
		return nil, err
	}
	out := make([]Entry[K, V], 0, len(kvs))
	for _, kv := range kvs {
		k, err := s.key.Deserialize(kv.Key)
		if err != nil {
			return nil, fmt.Errorf("choreotest: store %s: deserialize key: %w", s.name, err)
		}
		e, err := s.decode(k, kv.Value)
		if err != nil {
			return nil, err
		}
		e.Partition = kv.Partition
		out = append(out, e)
	}
	return out, nil
}

// Map returns the store's entries as a map of key to value.
func Map[K comparable, V any](s *StoreReader[K, V]) (map[K]V, error) {
	all, err := s.All()
	if err != nil {
		return nil, err
	}
	out := make(map[K]V, len(all))
	for _, e := range all {
		out[e.Key] = e.Value
	}
	return out, nil
}

func (s *StoreReader[K, V]) decode(k K, raw []byte) (Entry[K, V], error) {
	e := Entry[K, V]{Key: k}
	if s.table {
		ts, vb, err := runtimelink.DecodeTableValue(raw)
		if err != nil {
			return e, fmt.Errorf("choreotest: store %s: %w", s.name, err)
		}
		e.Timestamp = time.UnixMilli(ts)
		raw = vb
	}
	v, err := s.val.Deserialize(raw)
	if err != nil {
		return e, fmt.Errorf("choreotest: store %s: deserialize value: %w", s.name, err)
	}
	e.Value = v
	return e, nil
}
