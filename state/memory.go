package state

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
)

// memNodeOverhead approximates the memory of a node beyond its key and
// value, for ApproximateSize.
const memNodeOverhead = 64

// NewMemory returns a DB held in memory, with the semantics of a Pebble DB
// from an Env: sorted iteration over snapshots, atomic Apply, a stored
// checkpoint. It suits tests and state that is cheap to restore.
func NewMemory() DB {
	return &memDB{stores: make(map[string]*memNode)}
}

// memDB keeps each store in a treap. Iterators take a snapshot in O(1): a
// snapshot bumps ver, which freezes every existing node, and the writer
// copies frozen nodes on the path it changes instead of mutating them.
// Without open iterators, writes mutate in place and allocate only the new
// key-value pair and node.
type memDB struct {
	mu     sync.RWMutex
	closed bool
	stores map[string]*memNode
	cp     []byte // JSON, so Checkpoint round-trips exactly as in Pebble
	size   int64

	// ver is the version of nodes the writer may mutate in place. It is
	// read by the writer under mu and bumped by snapshots under a read
	// lock, hence atomic.
	ver atomic.Uint64
	// epoch changes on Close and Wipe, ending open iterators as Pebble's.
	epoch atomic.Uint64
}

type memNode struct {
	key, value  []byte
	left, right *memNode
	prio        uint32
	ver         uint64
}

func (d *memDB) Get(store string, key []byte) ([]byte, bool, error) {
	if err := checkStore(store); err != nil {
		return nil, false, err
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return nil, false, ErrClosed
	}
	for n := d.stores[store]; n != nil; {
		switch c := bytes.Compare(key, n.key); {
		case c < 0:
			n = n.left
		case c > 0:
			n = n.right
		default:
			return append(make([]byte, 0, len(n.value)), n.value...), true, nil
		}
	}
	return nil, false, nil
}

func (d *memDB) NewIter(store string, lower, upper []byte) (Iterator, error) {
	if err := checkStore(store); err != nil {
		return nil, err
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return nil, ErrClosed
	}
	if emptyRange(lower, upper) {
		return emptyIter{}, nil
	}
	root := d.stores[store]
	d.ver.Add(1)
	it := &memIter{db: d, epoch: d.epoch.Load()}
	if upper != nil {
		it.upper = append(make([]byte, 0, len(upper)), upper...)
	}
	for n := root; n != nil; {
		if bytes.Compare(n.key, lower) >= 0 {
			it.stack = append(it.stack, n)
			n = n.left
		} else {
			n = n.right
		}
	}
	return it, nil
}

func (d *memDB) Apply(w *WriteSet, cp *Checkpoint, sync bool) error {
	var cpData []byte
	if cp != nil {
		var err error
		if cpData, err = json.Marshal(cp); err != nil {
			return fmt.Errorf("state: encoding checkpoint: %w", err)
		}
	}
	// Validate first: nothing may be applied if anything fails.
	if w != nil {
		for i := range w.Mutations {
			if err := checkStore(w.Mutations[i].Store); err != nil {
				return err
			}
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	if w != nil {
		t := memWriter{ver: d.ver.Load()}
		for i := range w.Mutations {
			m := &w.Mutations[i]
			root := d.stores[m.Store]
			if m.Deleted {
				if root = t.delete(root, m.Key); root == nil {
					delete(d.stores, m.Store)
					continue
				}
			} else {
				// One allocation holds the copies of key and value.
				kv := make([]byte, len(m.Key)+len(m.Value))
				k := kv[:copy(kv, m.Key):len(m.Key)]
				copy(kv[len(k):], m.Value)
				root = t.put(root, k, kv[len(k):])
			}
			d.stores[m.Store] = root
		}
		d.size += t.size
	}
	if cp != nil {
		d.cp = cpData
	}
	return nil
}

func (d *memDB) Checkpoint() (Checkpoint, bool, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return Checkpoint{}, false, ErrClosed
	}
	if d.cp == nil {
		return Checkpoint{}, false, nil
	}
	var cp Checkpoint
	if err := json.Unmarshal(d.cp, &cp); err != nil {
		return Checkpoint{}, false, fmt.Errorf("%w: checkpoint: %w", ErrCorrupt, err)
	}
	return cp, true, nil
}

func (d *memDB) Sync() error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return ErrClosed
	}
	return nil
}

func (d *memDB) Wipe() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	d.epoch.Add(1)
	d.stores = make(map[string]*memNode)
	d.cp = nil
	d.size = 0
	return nil
}

func (d *memDB) ApproximateSize() int64 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.size
}

func (d *memDB) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	d.closed = true
	d.epoch.Add(1)
	d.stores, d.cp, d.size = nil, nil, 0
	return nil
}

// memWriter applies writes to treaps at one node version.
type memWriter struct {
	ver  uint64
	size int64 // change of the DB's approximate size
}

// own returns n itself if it may be mutated, or a copy that may.
func (t *memWriter) own(n *memNode) *memNode {
	if n.ver == t.ver {
		return n
	}
	c := *n
	c.ver = t.ver
	return &c
}

func (t *memWriter) put(n *memNode, key, value []byte) *memNode {
	if n == nil {
		t.size += int64(len(key) + len(value) + memNodeOverhead)
		return &memNode{key: key, value: value, prio: rand.Uint32(), ver: t.ver}
	}
	c := bytes.Compare(key, n.key)
	n = t.own(n)
	switch {
	case c < 0:
		n.left = t.put(n.left, key, value)
		if n.left.prio > n.prio {
			l := n.left
			n.left, l.right = l.right, n
			return l
		}
	case c > 0:
		n.right = t.put(n.right, key, value)
		if n.right.prio > n.prio {
			r := n.right
			n.right, r.left = r.left, n
			return r
		}
	default:
		t.size += int64(len(key)+len(value)) - int64(len(n.key)+len(n.value))
		n.key, n.value = key, value
	}
	return n
}

func (t *memWriter) delete(root *memNode, key []byte) *memNode {
	// Look first: a missing key must not copy the path to it.
	n := root
	for n != nil {
		c := bytes.Compare(key, n.key)
		if c == 0 {
			break
		}
		if c < 0 {
			n = n.left
		} else {
			n = n.right
		}
	}
	if n == nil {
		return root
	}
	return t.remove(root, key)
}

func (t *memWriter) remove(n *memNode, key []byte) *memNode {
	c := bytes.Compare(key, n.key)
	if c == 0 {
		t.size -= int64(len(n.key) + len(n.value) + memNodeOverhead)
		return t.join(n.left, n.right)
	}
	n = t.own(n)
	if c < 0 {
		n.left = t.remove(n.left, key)
	} else {
		n.right = t.remove(n.right, key)
	}
	return n
}

// join merges two treaps where every key of l is below every key of r.
func (t *memWriter) join(l, r *memNode) *memNode {
	switch {
	case l == nil:
		return r
	case r == nil:
		return l
	case l.prio > r.prio:
		l = t.own(l)
		l.right = t.join(l.right, r)
		return l
	default:
		r = t.own(r)
		r.left = t.join(l, r.left)
		return r
	}
}

// memIter walks a frozen treap in order with an explicit stack.
type memIter struct {
	db    *memDB
	epoch uint64
	stack []*memNode
	upper []byte
	key   []byte
	value []byte
	err   error
	done  bool
}

func (i *memIter) Next() bool {
	i.key, i.value = nil, nil
	if i.done || i.err != nil || len(i.stack) == 0 {
		return false
	}
	if i.db.epoch.Load() != i.epoch {
		i.err = errIterInvalid
		return false
	}
	n := i.stack[len(i.stack)-1]
	i.stack = i.stack[:len(i.stack)-1]
	if i.upper != nil && bytes.Compare(n.key, i.upper) >= 0 {
		i.stack = i.stack[:0]
		return false
	}
	for c := n.right; c != nil; c = c.left {
		i.stack = append(i.stack, c)
	}
	i.key, i.value = n.key, n.value
	return true
}

func (i *memIter) Key() []byte   { return i.key }
func (i *memIter) Value() []byte { return i.value }
func (i *memIter) Err() error    { return i.err }

func (i *memIter) Close() error {
	i.done = true
	i.key, i.value, i.stack = nil, nil, nil
	return nil
}
