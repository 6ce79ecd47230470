package state

import (
	"errors"
	"time"
)

// Sentinel errors callers can test with errors.Is.
var (
	// ErrClosed is returned by any operation on a closed DB.
	ErrClosed = errors.New("state: db closed")
	// ErrCorrupt is returned when the stored data or checkpoint cannot be decoded.
	ErrCorrupt = errors.New("state: corrupt store")
	// ErrInvalidStoreName is returned for an empty store name or one longer than 255 bytes.
	ErrInvalidStoreName = errors.New("state: invalid store name")
)

// ChangelogPosition is how far one store's data reflects its changelog partition.
type ChangelogPosition struct {
	// Offset is the next changelog offset to restore from.
	Offset int64 `json:"offset"`
	// TopicID identifies the changelog topic the offset belongs to, so a
	// checkpoint taken against a deleted and recreated topic is not trusted.
	TopicID [16]byte `json:"topic_id"`
}

// Checkpoint records, atomically with the data, how far a DB reflects its
// changelogs and its inputs. The keys are opaque to this package: the caller
// names changelogs by store and inputs by "topic/partition" or however it likes.
type Checkpoint struct {
	// Changelogs maps a store name to its changelog position.
	Changelogs map[string]ChangelogPosition `json:"changelogs,omitempty"`
	// Inputs maps an input name to the next input offset to process.
	Inputs map[string]int64 `json:"inputs,omitempty"`
	// Written is when the checkpoint was written (wall clock).
	Written time.Time `json:"written"`
}

// Iterator walks key-value pairs of one store in ascending key order.
// Key and Value are valid only until the next call to Next or Close.
// An iterator sees the DB as it was when it was created. Closing or wiping
// the DB ends its open iterators with an error wrapping ErrClosed.
type Iterator interface {
	// Next advances to the next pair and reports whether there is one.
	Next() bool
	// Key returns the current key. It must not be modified.
	Key() []byte
	// Value returns the current value. It must not be modified.
	Value() []byte
	// Err returns the first error the iteration met.
	Err() error
	Close() error
}

// Reader reads committed state.
type Reader interface {
	// Get returns the value stored under key in store. The returned slice
	// is owned by the caller. ok is false when the key is absent.
	Get(store string, key []byte) (value []byte, ok bool, err error)
	// NewIter iterates store over keys in [lower, upper); a nil bound is
	// unbounded.
	NewIter(store string, lower, upper []byte) (Iterator, error)
}

// DB is the local state of one task: any number of named key-value stores
// that commit together, plus the checkpoint. Writes reach a DB only through
// Apply (a Batch commit or a restore), so every change is atomic with the
// checkpoint that describes it.
//
// A DB is not safe for concurrent writers; concurrent readers (interactive
// queries) are safe with one writer.
type DB interface {
	Reader
	// Apply atomically writes w together with cp (nil keeps the stored
	// checkpoint). sync makes it durable before returning; restore passes
	// false and calls Sync once at the end.
	Apply(w *WriteSet, cp *Checkpoint, sync bool) error
	// Checkpoint returns the stored checkpoint; ok is false when none was
	// ever written.
	Checkpoint() (cp Checkpoint, ok bool, err error)
	// Sync makes every applied write durable.
	Sync() error
	// Wipe deletes every store and the checkpoint.
	Wipe() error
	// ApproximateSize is the on-disk (or in-memory) size in bytes.
	ApproximateSize() int64
	Close() error
}

// BulkLoader is implemented by DBs that can load faster while they are
// being filled from scratch, as a restore after a Wipe does. Between
// BeginBulkLoad and EndBulkLoad the DB may buffer writes and defer work
// (Pebble: compactions) until the end, and may keep no log of its own:
// Apply is still atomic, but after a crash the DB may hold fewer of the
// applied writes than Sync would otherwise guarantee: the writes of the
// Applies up to some point, with the checkpoint of the last of them (never
// a write without the checkpoint applied with it, nor a checkpoint without
// the writes applied before it). Reads are correct but may be slower. Both
// calls end open iterators, like Wipe; Sync and Close keep every applied
// write. An error of deferred work ends the load: later Applies fail, and
// EndBulkLoad returns the error with the DB back in normal mode, holding
// the writes up to the failed one. EndBulkLoad returns once the DB is back
// in its normal mode; the deferred work then runs in the background.
type BulkLoader interface {
	// BeginBulkLoad switches the DB to bulk load mode (a no-op if it is
	// in it already).
	BeginBulkLoad() error
	// EndBulkLoad makes every applied write durable and switches the DB
	// back to its normal mode (a no-op if it is not in bulk load mode).
	EndBulkLoad() error
}

// Mutation is one write of a WriteSet.
type Mutation struct {
	Store string
	Key   []byte
	// Value is nil for a delete.
	Value   []byte
	Deleted bool
}

// WriteSet is an ordered list of raw writes, used to apply a restore batch or
// the pending writes of a Batch. The zero value is ready to use.
type WriteSet struct {
	Mutations []Mutation
	bytes     int
}

// Put appends a write. The slices are retained, not copied.
func (w *WriteSet) Put(store string, key, value []byte) {
	w.Mutations = append(w.Mutations, Mutation{Store: store, Key: key, Value: value})
	w.bytes += len(key) + len(value)
}

// Delete appends a delete. The key is retained, not copied.
func (w *WriteSet) Delete(store string, key []byte) {
	w.Mutations = append(w.Mutations, Mutation{Store: store, Key: key, Deleted: true})
	w.bytes += len(key)
}

// Len is the number of writes.
func (w *WriteSet) Len() int { return len(w.Mutations) }

// Bytes is the total size of keys and values.
func (w *WriteSet) Bytes() int { return w.bytes }

// Reset empties the set, keeping its memory.
func (w *WriteSet) Reset() {
	clear(w.Mutations)
	w.Mutations = w.Mutations[:0]
	w.bytes = 0
}
