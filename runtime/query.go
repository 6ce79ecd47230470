package runtime

import (
	"bytes"
	"context"
	"fmt"
	"iter"

	"github.com/choreo-go/choreo/internal/engine"
)

// Sentinel errors of interactive queries; test them with errors.Is.
var (
	// ErrUnknownStore: the table has no store (Filter and MapTableValues
	// derive tables computed on demand) or the app's topology has none of
	// that name.
	ErrUnknownStore = engine.ErrUnknownStore
	// ErrNotLocal: another instance owns the key. The error is a
	// *NotLocalError whose Owner names it (instance id and advertised
	// host:port), so the caller can forward the query there.
	ErrNotLocal = engine.ErrNotLocal
	// ErrStoreNotReady: this instance cannot answer now — the app is not
	// running, has no group assignment yet, or the key's task is being
	// assigned here, restoring its store, or closed during the query.
	// Ask again later.
	ErrStoreNotReady = engine.ErrStoreNotReady
)

// Owner is the instance that owns a key in the group's latest assignment:
// its instance id, the host:port it advertises (Config.ApplicationServer),
// whether it is this instance, and the key's task and partition.
type Owner = engine.Owner

// NotLocalError is the error of a query for a key another instance owns;
// errors.Is(err, ErrNotLocal) holds for it. Get the owner with errors.As.
type NotLocalError = engine.NotLocalError

// Instance is one member of the group in the latest assignment: its
// instance id, advertised host:port, tasks, their source topic partitions
// and stores (like Kafka Streams' StreamsMetadata).
type Instance = engine.Instance

// Instances lists every instance of the application in the group's latest
// assignment, this one included. Every instance learns the whole
// assignment in each rebalance, so all of them return the same list.
func (a *App) Instances() ([]Instance, error) { return a.eng.Instances() }

// Row is one entry of a table: a key, its value and the timestamp of the
// record that last changed it.
type Row[K, V any] struct {
	Key       K
	Value     V
	Timestamp int64
}

// TableQuery is typed, read-only access to a table's store while the app
// runs (Kafka Streams' interactive queries). It reads what this instance
// holds; KeyOwner tells which instance holds any key. It is safe for
// concurrent use.
//
// Reads see committed state: the store as the last commit wrote it,
// never the writes pending until the next commit (under ExactlyOnce, only
// what a committed transaction covers). A reader never blocks processing
// or a rebalance: if the task it reads is closed meanwhile (revoked, or
// the app stops), the read fails with ErrStoreNotReady.
type TableQuery[K, V any] struct {
	app   *App
	store string
	key   Serde[K]
	val   Serde[V]
}

// Query returns read access to the store of table t, which must be
// materialized (TableOf, or an aggregation: Count, Reduce, Aggregate,
// CountTable, ReduceTable, AggregateTable) and part of app's topology.
// It fails with ErrUnknownStore otherwise; query the parent of a table
// derived by Filter or MapTableValues.
func Query[K, V any](app *App, t Table[K, V]) (*TableQuery[K, V], error) {
	if t.store == "" {
		return nil, fmt.Errorf("choreo: query: %w: the table is not materialized (derived by Filter or MapTableValues)", ErrUnknownStore)
	}
	if !app.eng.HasStore(t.store) {
		return nil, fmt.Errorf("choreo: query: %w: %q is not a store of the app's topology", ErrUnknownStore, t.store)
	}
	return &TableQuery[K, V]{app: app, store: t.store, key: t.key, val: t.val}, nil
}

// Store is the name of the queried store.
func (q *TableQuery[K, V]) Store() string { return q.store }

// KeyOwner returns the instance that owns key k in the group's latest
// assignment: k is serialized with the table's key serde and partitioned
// with murmur2 over the store's task count, as records are. During a
// cooperative rebalance that is the new owner, which may still be
// restoring the task. It fails with ErrStoreNotReady before the first
// assignment.
func (q *TableQuery[K, V]) KeyOwner(k K) (Owner, error) {
	kb, err := q.key.Serialize(k)
	if err != nil {
		return Owner{}, serdeErr("serialize key", err)
	}
	return q.app.eng.KeyOwner(q.store, kb)
}

// Get returns the value of key k when this instance holds its task. ok is
// false when the key is absent. A key that another instance owns fails
// with a *NotLocalError (ErrNotLocal) naming the owner; a key whose task
// is assigned here but is still restoring fails with ErrStoreNotReady, as
// in Kafka Streams (active stores are not queryable while they restore).
// A task that still runs here while the latest assignment already moves
// it elsewhere answers until it is revoked.
func (q *TableQuery[K, V]) Get(ctx context.Context, k K) (v V, ok bool, err error) {
	if err := ctx.Err(); err != nil {
		return v, false, err
	}
	kb, err := q.key.Serialize(k)
	if err != nil {
		return v, false, serdeErr("serialize key", err)
	}
	raw, ok, err := q.app.eng.StoreGet(q.store, kb)
	if err != nil || !ok {
		return v, false, err
	}
	_, vb, err := decodeTS(raw)
	if err != nil {
		return v, false, err
	}
	if v, err = q.val.Deserialize(vb); err != nil {
		return v, false, serdeErr("deserialize stored value", err)
	}
	return v, true, nil
}

// Range iterates the rows with keys from from (inclusive) to to
// (exclusive) held by this instance. Keys compare by their serialized
// bytes (the String serde: byte-wise; Int64: big-endian, so negative
// numbers come after positive ones); unlike Kafka Streams' range, to is
// excluded, as in Go slices.
//
// Rows come in ascending order of serialized key across all of this
// instance's tasks of the store (merged, not one task after the other).
// Each task's rows are a consistent snapshot taken when the iteration
// starts. Only local rows are seen: ask every instance (Instances) for
// the whole table.
//
// Errors are yielded with zero rows and end the iteration: ErrStoreNotReady
// while any of the store's local tasks restores, or when one closes during
// the iteration; ctx's error when it ends.
func (q *TableQuery[K, V]) Range(ctx context.Context, from, to K) iter.Seq2[Row[K, V], error] {
	return func(yield func(Row[K, V], error) bool) {
		lo, err := q.key.Serialize(from)
		if err != nil {
			yield(Row[K, V]{}, serdeErr("serialize key", err))
			return
		}
		hi, err := q.key.Serialize(to)
		if err != nil {
			yield(Row[K, V]{}, serdeErr("serialize key", err))
			return
		}
		if lo == nil {
			lo = []byte{} // a nil lower bound would be unbounded
		}
		if hi == nil {
			hi = []byte{}
		}
		q.scan(ctx, lo, hi, yield)
	}
}

// All iterates every row this instance holds, as Range does without
// bounds.
func (q *TableQuery[K, V]) All(ctx context.Context) iter.Seq2[Row[K, V], error] {
	return func(yield func(Row[K, V], error) bool) {
		q.scan(ctx, nil, nil, yield)
	}
}

// ctxCheckEvery is how many rows a scan yields between checks of its context.
const ctxCheckEvery = 256

func (q *TableQuery[K, V]) scan(ctx context.Context, lo, hi []byte, yield func(Row[K, V], error) bool) {
	if err := ctx.Err(); err != nil {
		yield(Row[K, V]{}, err)
		return
	}
	it, err := q.app.eng.StoreRange(q.store, lo, hi)
	if err != nil {
		yield(Row[K, V]{}, err)
		return
	}
	defer it.Close()
	for n := 1; it.Next(); n++ {
		if n%ctxCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				yield(Row[K, V]{}, err)
				return
			}
		}
		// Copies: the iterator reuses its buffers, and a serde may keep
		// the slices it decodes.
		row, err := q.decode(bytes.Clone(it.Key()), bytes.Clone(it.Value()))
		if !yield(row, err) || err != nil {
			return
		}
	}
	if err := it.Err(); err != nil {
		yield(Row[K, V]{}, err)
	}
}

func (q *TableQuery[K, V]) decode(kb, raw []byte) (Row[K, V], error) {
	var row Row[K, V]
	k, err := q.key.Deserialize(kb)
	if err != nil {
		return row, serdeErr("deserialize stored key", err)
	}
	ts, vb, err := decodeTS(raw)
	if err != nil {
		return row, err
	}
	v, err := q.val.Deserialize(vb)
	if err != nil {
		return row, serdeErr("deserialize stored value", err)
	}
	return Row[K, V]{Key: k, Value: v, Timestamp: ts}, nil
}
