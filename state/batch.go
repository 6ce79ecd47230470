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
	// batchEntryOverhead approximates the memory of a dirty key beyond its
	// key and value (entry, index slot), so that Bytes tracks what a batch
	// of many small records really holds.
	batchEntryOverhead = 96
	// maxRetainedEntries bounds the index and entry slice a Batch keeps for
	// reuse after a commit, so one huge batch does not make every later
	// reset pay for clearing its map.
	maxRetainedEntries = 1 << 16
)

// Batch holds one task's pending writes between commits, over a DB. Reads
// see the batch's own writes first, then the DB. A savepoint per input
// record lets a failed record be undone without touching the writes of
// earlier records. Not safe for concurrent use.
//
// Keys and values are copied into slabs that are never reused, so slices
// handed out by Get, ForEach and iterators stay intact (though they must
// not be modified), and a Put costs no allocation beyond slab refills and
// index growth.
type Batch struct {
	db DB

	// index maps a physical key (see appendKey) to its position in
	// entries. Its keys alias the immutable physical key bytes of entries.
	index   map[string]int32
	entries []batchEntry
	bytes   int

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
	ws    WriteSet
}

type batchEntry struct {
	pkey    string // physical key, aliasing the bytes key points into
	store   string
	key     []byte
	value   []byte // nil when deleted
	deleted bool
	// epoch is the savepoint epoch in which this entry's undo record was
	// written, if it was.
	epoch uint64
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
		e := &b.entries[i]
		return e.value, !e.deleted, nil
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
	b.buf = appendKey(b.buf[:0], store, key)
	if i, ok := b.index[string(b.buf)]; ok {
		e := &b.entries[i]
		if int(i) < b.saveLen && e.epoch != b.epoch {
			b.undo = append(b.undo, batchUndo{idx: i, value: e.value, deleted: e.deleted})
			e.epoch = b.epoch
		}
		b.bytes += len(value) - len(e.value)
		e.value, e.deleted = value, deleted
		return
	}
	pk := b.alloc(len(b.buf))
	copy(pk, b.buf)
	// The bytes of pk are never written again, which is what makes the
	// aliasing string safe; it saves a second copy of every key.
	pkey := unsafe.String(unsafe.SliceData(pk), len(pk))
	n := 1 + len(store)
	b.index[pkey] = int32(len(b.entries))
	b.entries = append(b.entries, batchEntry{
		pkey:    pkey,
		store:   store,
		key:     pk[n:len(pk):len(pk)],
		value:   value,
		deleted: deleted,
	})
	b.bytes += len(pk) + len(value) + batchEntryOverhead
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
	for i := range b.entries {
		e := &b.entries[i]
		if e.store != store ||
			bytes.Compare(e.key, lower) < 0 ||
			(upper != nil && bytes.Compare(e.key, upper) >= 0) {
			continue
		}
		over = append(over, batchKV{key: e.key, value: e.value, deleted: e.deleted})
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
	b.saveLen = len(b.entries)
	b.saveBytes = b.bytes
	b.epoch++
}

// Rollback undoes every write since the last Savepoint, Commit or Discard.
func (b *Batch) Rollback() {
	for i := len(b.undo) - 1; i >= 0; i-- {
		u := &b.undo[i]
		e := &b.entries[u.idx]
		e.value, e.deleted = u.value, u.deleted
	}
	// Keys created since the savepoint sit at the end of entries.
	for i := b.saveLen; i < len(b.entries); i++ {
		delete(b.index, b.entries[i].pkey)
	}
	clear(b.entries[b.saveLen:])
	b.entries = b.entries[:b.saveLen]
	b.bytes = b.saveBytes
	// The batch is back at the savepoint, so it simply starts over.
	b.Savepoint()
}

// Len returns the number of distinct keys written since the last commit.
func (b *Batch) Len() int { return len(b.entries) }

// Bytes returns the approximate memory held by pending writes.
func (b *Batch) Bytes() int { return b.bytes }

// ForEach calls fn for every key written since the last commit, in the
// order of first write, with its latest value; it stops at fn's first
// error and returns it. fn must not modify the batch or the slices of m.
func (b *Batch) ForEach(fn func(m Mutation) error) error {
	for i := range b.entries {
		e := &b.entries[i]
		if err := fn(Mutation{Store: e.store, Key: e.key, Value: e.value, Deleted: e.deleted}); err != nil {
			return err
		}
	}
	return nil
}

// Commit applies every pending write together with cp (nil keeps the DB's
// checkpoint) in one DB.Apply, then empties the batch. On error the batch
// is kept as it was, so the commit can be retried or the batch discarded.
func (b *Batch) Commit(cp *Checkpoint, sync bool) error {
	ws := &b.ws
	ws.Reset()
	for i := range b.entries {
		e := &b.entries[i]
		if e.deleted {
			ws.Delete(e.store, e.key)
		} else {
			ws.Put(e.store, e.key, e.value)
		}
	}
	err := b.db.Apply(ws, cp, sync)
	ws.Reset()
	if err != nil {
		return err
	}
	b.Discard()
	return nil
}

// Discard drops every pending write.
func (b *Batch) Discard() {
	if len(b.entries) > maxRetainedEntries {
		b.index = make(map[string]int32)
		b.entries = nil
		b.undo = nil
	} else {
		clear(b.index)
		clear(b.entries)
		b.entries = b.entries[:0]
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
