package state

import (
	"bytes"
	"slices"
	"unsafe"
)

const (
	// arenaChunk is the size of the slabs that hold copied keys and values,
	// so that a Put costs no allocation of its own in the common case.
	arenaChunk = 32 << 10
	// batchEntryOverhead approximates the memory of a dirty key beyond the
	// bytes of its key and value: its Mutation and epoch (80 bytes), its
	// index slot (a string and an int32 in a hash map, about 40 bytes at
	// the map's average load) and the arena's slack, so that Bytes tracks
	// what a batch of many small records really holds (measured: within
	// a few percent of the live heap for 10-byte keys and 8-byte values).
	batchEntryOverhead = 136
	// maxRetainedEntries bounds the index and mutation slices a Batch
	// keeps for reuse after a commit: a task that once held many keys
	// does not keep their memory while it is idle, which with many tasks
	// would add up beyond any budget of pending writes.
	maxRetainedEntries = 1 << 14
)

// Batch holds one task's pending writes between commits, over a DB. Reads
// see the batch's own writes first, then the DB. A savepoint per input
// record lets a failed record be undone without touching the writes of
// earlier records. Not safe for concurrent use.
//
// Keys and values are copied into slabs that are never reused, so slices
// handed out by Get, ForEach and iterators stay intact (though they must
// not be modified), and a Put costs no allocation beyond slab refills and
// index growth. The pending writes are kept as the Mutations that Commit
// hands to DB.Apply, so a commit copies them only once, into the DB.
type Batch struct {
	db DB

	// index maps a physical key (see appendKey) to its position in muts.
	// Its keys alias the immutable physical key bytes in the arena, of
	// which each Mutation's Key is the tail.
	index map[string]int32
	muts  []Mutation
	// epochs[i] is the savepoint epoch in which the undo record of
	// muts[i] was written, if it was.
	epochs []uint64
	bytes  int

	// Savepoint state: entries past saveLen were created since the
	// savepoint and are simply dropped by Rollback; older entries changed
	// since it have their previous state in undo, recorded once per
	// savepoint thanks to the epoch mark.
	undo      []batchUndo
	saveLen   int
	saveBytes int
	epoch     uint64

	buf   []byte // scratch physical key for lookups
	arena []byte
}

type batchUndo struct {
	idx     int32
	value   []byte
	deleted bool
}

// NewBatch returns an empty batch over db.
func NewBatch(db DB) *Batch {
	return &Batch{db: db, index: make(map[string]int32)}
}

// Get returns the value of key in store, from the batch if it was written
// since the last commit, else from the DB. A value from the batch must not
// be modified; one from the DB is owned by the caller.
func (b *Batch) Get(store string, key []byte) (value []byte, ok bool, err error) {
	if err := checkStore(store); err != nil {
		return nil, false, err
	}
	b.buf = appendKey(b.buf[:0], store, key)
	if i, ok := b.index[string(b.buf)]; ok {
		m := &b.muts[i]
		return m.Value, !m.Deleted, nil
	}
	return b.db.Get(store, key)
}

// Put records a write of value under key in store, copying both. A nil
// value is an empty value, not a delete. Put panics with an error wrapping
// ErrInvalidStoreName on an invalid store name: names are fixed by the
// topology, so a bad one is a programming error.
func (b *Batch) Put(store string, key, value []byte) {
	v := b.alloc(len(value))
	copy(v, value)
	b.write(store, key, v, false)
}

// Delete records a delete of key in store, which hides the key from reads
// through the batch. It panics like Put on an invalid store name.
func (b *Batch) Delete(store string, key []byte) {
	b.write(store, key, nil, true)
}

func (b *Batch) write(store string, key, value []byte, deleted bool) {
	if err := checkStore(store); err != nil {
		panic(err)
	}
	// The arena never reuses space, so every value copied into it counts,
	// also one that replaces an earlier value of the key.
	b.bytes += len(value)
	b.buf = appendKey(b.buf[:0], store, key)
	if i, ok := b.index[string(b.buf)]; ok {
		m := &b.muts[i]
		if int(i) < b.saveLen && b.epochs[i] != b.epoch {
			b.undo = append(b.undo, batchUndo{idx: i, value: m.Value, deleted: m.Deleted})
			b.epochs[i] = b.epoch
		}
		m.Value, m.Deleted = value, deleted
		return
	}
	pk := b.alloc(len(b.buf))
	copy(pk, b.buf)
	// The bytes of pk are never written again, which is what makes the
	// aliasing string safe; it saves a second copy of every key.
	pkey := unsafe.String(unsafe.SliceData(pk), len(pk))
	n := 1 + len(store)
	b.index[pkey] = int32(len(b.muts))
	b.muts = append(b.muts, Mutation{
		Store:   store,
		Key:     pk[n:len(pk):len(pk)],
		Value:   value,
		Deleted: deleted,
	})
	b.epochs = append(b.epochs, 0)
	b.bytes += len(pk) + batchEntryOverhead
}

// alloc returns n bytes from the arena. Slabs are never recycled, so
// callers may keep slices of them for as long as they like.
func (b *Batch) alloc(n int) []byte {
	if n > arenaChunk/4 {
		return make([]byte, n)
	}
	if cap(b.arena)-len(b.arena) < n || b.arena == nil {
		b.arena = make([]byte, 0, arenaChunk)
	}
	l := len(b.arena)
	b.arena = b.arena[:l+n]
	return b.arena[l : l+n : l+n]
}

// NewIter iterates over store in [lower, upper) as the batch sees it: the
// batch's writes over the DB, its deletes hiding DB keys. The batch part
// is a snapshot taken now; the cost of creating the iterator grows with
// the number of keys in the batch.
func (b *Batch) NewIter(store string, lower, upper []byte) (Iterator, error) {
	if err := checkStore(store); err != nil {
		return nil, err
	}
	it, err := b.db.NewIter(store, lower, upper)
	if err != nil {
		return nil, err
	}
	if emptyRange(lower, upper) {
		return it, nil
	}
	var over []batchKV
	for i := range b.muts {
		m := &b.muts[i]
		if m.Store != store ||
			bytes.Compare(m.Key, lower) < 0 ||
			(upper != nil && bytes.Compare(m.Key, upper) >= 0) {
			continue
		}
		over = append(over, batchKV{key: m.Key, value: m.Value, deleted: m.Deleted})
	}
	if len(over) == 0 {
		return it, nil
	}
	slices.SortFunc(over, func(x, y batchKV) int { return bytes.Compare(x.key, y.key) })
	return &mergeIter{db: it, over: over}, nil
}

// Savepoint marks the start of a record: a later Rollback undoes only the
// writes made after it.
func (b *Batch) Savepoint() {
	clear(b.undo)
	b.undo = b.undo[:0]
	b.saveLen = len(b.muts)
	b.saveBytes = b.bytes
	b.epoch++
}

// Rollback undoes every write since the last Savepoint, Commit or Discard.
func (b *Batch) Rollback() {
	for i := len(b.undo) - 1; i >= 0; i-- {
		u := &b.undo[i]
		m := &b.muts[u.idx]
		m.Value, m.Deleted = u.value, u.deleted
	}
	// Keys created since the savepoint sit at the end of muts.
	for i := b.saveLen; i < len(b.muts); i++ {
		m := &b.muts[i]
		b.buf = appendKey(b.buf[:0], m.Store, m.Key)
		delete(b.index, string(b.buf))
	}
	clear(b.muts[b.saveLen:])
	b.muts = b.muts[:b.saveLen]
	b.epochs = b.epochs[:b.saveLen]
	b.bytes = b.saveBytes
	// The batch is back at the savepoint, so it simply starts over.
	b.Savepoint()
}

// Len returns the number of distinct keys written since the last commit.
func (b *Batch) Len() int { return len(b.muts) }

// Bytes returns the approximate memory held by pending writes: the bytes
// of keys and values copied since the last commit (a key written twice
// holds both values until then) plus a fixed overhead per distinct key
// for the batch's own bookkeeping.
func (b *Batch) Bytes() int { return b.bytes }

// ForEach calls fn for every key written since the last commit, in the
// order of first write, with its latest value; it stops at fn's first
// error and returns it. fn must not modify the batch or the slices of m.
func (b *Batch) ForEach(fn func(m Mutation) error) error {
	for i := range b.muts {
		if err := fn(b.muts[i]); err != nil {
			return err
		}
	}
	return nil
}

// Commit applies every pending write together with cp (nil keeps the DB's
// checkpoint) in one DB.Apply, then empties the batch. On error the batch
// is kept as it was, so the commit can be retried or the batch discarded.
func (b *Batch) Commit(cp *Checkpoint, sync bool) error {
	// The pending writes are already Mutations: the DB reads them in place.
	ws := WriteSet{Mutations: b.muts, bytes: b.bytes}
	if err := b.db.Apply(&ws, cp, sync); err != nil {
		return err
	}
	b.Discard()
	return nil
}

// Discard drops every pending write.
func (b *Batch) Discard() {
	if len(b.muts) > maxRetainedEntries {
		b.index = make(map[string]int32)
		b.muts, b.epochs, b.undo = nil, nil, nil
	} else {
		clear(b.index)
		clear(b.muts)
		b.muts = b.muts[:0]
		b.epochs = b.epochs[:0]
	}
	b.bytes = 0
	b.Savepoint()
}

type batchKV struct {
	key, value []byte
	deleted    bool
}

// mergeIter merges a sorted snapshot of batch writes over a DB iterator.
type mergeIter struct {
	db   Iterator
	over []batchKV

	started bool
	// dbOK means db is at a key not yet passed; dbStep means that key was
	// just returned and db must move before it is looked at again (its
	// Key stays valid until then).
	dbOK   bool
	dbStep bool
	done   bool
	key    []byte
	value  []byte
}

func (m *mergeIter) Next() bool {
	m.key, m.value = nil, nil
	if m.done {
		return false
	}
	if !m.started {
		m.started = true
		m.dbStep = true
	}
	for {
		if m.dbStep {
			m.dbStep = false
			m.dbOK = m.db.Next()
			if !m.dbOK && m.db.Err() != nil {
				m.done = true
				return false
			}
		}
		var c int
		switch {
		case len(m.over) == 0 && !m.dbOK:
			m.done = true
			return false
		case len(m.over) == 0:
			c = 1
		case !m.dbOK:
			c = -1
		default:
			c = bytes.Compare(m.over[0].key, m.db.Key())
		}
		if c > 0 {
			m.key, m.value = m.db.Key(), m.db.Value()
			m.dbStep = true
			return true
		}
		if c == 0 {
			// The batch's write shadows the DB's value.
			m.dbStep = true
		}
		kv := m.over[0]
		m.over = m.over[1:]
		if !kv.deleted {
			m.key, m.value = kv.key, kv.value
			return true
		}
	}
}

func (m *mergeIter) Key() []byte   { return m.key }
func (m *mergeIter) Value() []byte { return m.value }
func (m *mergeIter) Err() error    { return m.db.Err() }

func (m *mergeIter) Close() error {
	m.done = true
	m.key, m.value, m.over = nil, nil, nil
	return m.db.Close()
}
