package engine

import (
	"bytes"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/choreo-go/choreo/partition"
	"github.com/choreo-go/choreo/state"
)

// Sentinel errors of interactive queries.
var (
	// ErrUnknownStore: the topology has no store of that name.
	ErrUnknownStore = errors.New("unknown store")
	// ErrNotLocal: the key's task belongs to another instance; the error
	// is a *NotLocalError naming it.
	ErrNotLocal = errors.New("key is hosted by another instance")
	// ErrStoreNotReady: the store cannot answer here right now — the
	// app is not running, has no group assignment yet, or the key's task
	// is being assigned, restoring or closing. Asking again later helps.
	ErrStoreNotReady = errors.New("store not ready")
)

// Owner is the instance that owns a key's task in the group's latest
// assignment.
type Owner struct {
	// InstanceID is the owner's static instance id.
	InstanceID string
	// Endpoint is the host:port the owner advertises (its
	// ApplicationServer), or "" if it advertises none.
	Endpoint string
	// Local is true when the owner is this instance.
	Local bool
	// Task is the key's task, numbered as the group leader numbered it.
	Task partition.TaskID
	// Partition is the key's partition (of the store's input topics).
	Partition int32
}

// NotLocalError is returned for a key that another instance owns. It
// matches ErrNotLocal with errors.Is.
type NotLocalError struct {
	// Store is the queried store.
	Store string
	// Owner is the instance that owns the key.
	Owner Owner
}

func (e *NotLocalError) Error() string {
	ep := e.Owner.Endpoint
	if ep == "" {
		ep = "no endpoint advertised"
	}
	return fmt.Sprintf("store %s: %v: instance %s (%s), task %s", e.Store, ErrNotLocal, e.Owner.InstanceID, ep, e.Owner.Task)
}

// Unwrap makes errors.Is(err, ErrNotLocal) true.
func (e *NotLocalError) Unwrap() error { return ErrNotLocal }

// Instance describes one member of the group in the latest assignment.
type Instance struct {
	// InstanceID is the member's static instance id.
	InstanceID string
	// Endpoint is the host:port it advertises, or "".
	Endpoint string
	// Local is true for this instance.
	Local bool
	// Tasks are the member's tasks, sorted, numbered as the leader
	// numbered them.
	Tasks []partition.TaskID
	// Partitions are the source topic partitions of its tasks.
	Partitions map[string][]int32
	// Stores are the stores of its tasks, sorted.
	Stores []string
}

// queryState is what interactive queries read: the DB of every task this
// instance holds and the group's assignment. It has its own lock because
// Engine.mu is held by the loop for a whole poll round and commit (during
// an outage, for as long as the outage lasts); a query must not wait for
// that.
//
// A reader never holds a task open: closing a task closes its DB at once,
// and a read or an iterator on a closed DB fails with state.ErrClosed,
// which queries report as ErrStoreNotReady. A slow reader therefore cannot
// stall a rebalance.
type queryState struct {
	mu    sync.RWMutex
	tasks map[partition.TaskID]*queryTask
	meta  atomic.Pointer[queryMeta]
}

type queryTask struct {
	db    state.DB
	ready bool // restored and processing: its DB holds committed state
}

// queryMeta is the group's latest assignment as this instance saw it.
type queryMeta struct {
	info *partition.AssignmentInfo
	self string // this instance's id
}

// opened registers a task that is restoring.
func (q *queryState) opened(id partition.TaskID, db state.DB) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.tasks == nil {
		q.tasks = make(map[partition.TaskID]*queryTask)
	}
	q.tasks[id] = &queryTask{db: db}
}

// activated makes a restored task's store queryable.
func (q *queryState) activated(id partition.TaskID) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if t := q.tasks[id]; t != nil {
		t.ready = true
	}
}

// closed forgets a task; call it before its DB closes.
func (q *queryState) closed(id partition.TaskID) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.tasks, id)
}

func (q *queryState) setAssignment(info *partition.AssignmentInfo, self string) {
	q.meta.Store(&queryMeta{info: info, self: self})
}

// Endpoint encoding in the group member metadata: a version byte, then the
// uvarint-length-prefixed host:port. Later versions may append fields;
// decoders ignore what follows.
const endpointVersion = 1

// encodeEndpoint is the member user data advertising endpoint.
func encodeEndpoint(endpoint string) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(endpoint))
	b = append(b, endpointVersion)
	b = binary.AppendUvarint(b, uint64(len(endpoint)))
	return append(b, endpoint...)
}

// decodeEndpoint returns the endpoint in a member's user data, or "" when
// it advertises none or in a format this version does not know.
func decodeEndpoint(b []byte) string {
	if len(b) == 0 || b[0] != endpointVersion {
		return ""
	}
	n, k := binary.Uvarint(b[1:])
	if k <= 0 || n > uint64(len(b)-1-k) {
		return ""
	}
	return string(b[1+k : 1+k+int(n)])
}

// validateEndpoint checks an ApplicationServer value: empty, or host:port.
func validateEndpoint(ep string) error {
	if ep == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(ep)
	if err != nil {
		return fmt.Errorf("%w: ApplicationServer %q: %w", ErrInvalidConfig, ep, err)
	}
	if p, err := strconv.ParseUint(port, 10, 16); host == "" || err != nil || p == 0 {
		return fmt.Errorf("%w: ApplicationServer %q: want host:port", ErrInvalidConfig, ep)
	}
	return nil
}

// storeSub returns the sub-topology that holds store.
func (e *Engine) storeSub(store string) (*subtopology, error) {
	for _, s := range e.subs { // resolved by New and never changed: no lock
		if slices.Contains(s.stores, store) {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownStore, store)
}

// HasStore reports whether the topology has a store named store.
func (e *Engine) HasStore(store string) bool {
	_, err := e.storeSub(store)
	return err == nil
}

// queryable reports why the app cannot answer queries, or nil.
func (e *Engine) queryable() error {
	switch st := e.State(); st {
	case Running, Rebalancing:
		return nil
	default:
		return fmt.Errorf("%w: app is %s", ErrStoreNotReady, st)
	}
}

// locate finds the task and owner of a serialized key of store from the
// group's latest assignment.
func (e *Engine) locate(store string, key []byte) (*subtopology, Owner, error) {
	s, err := e.storeSub(store)
	if err != nil {
		return nil, Owner{}, err
	}
	if err := e.queryable(); err != nil {
		return s, Owner{}, err
	}
	m := e.query.meta.Load()
	if m == nil {
		return s, Owner{}, fmt.Errorf("%w: no group assignment yet", ErrStoreNotReady)
	}
	// The leader numbers sub-topologies; find ours by its topics, so an
	// instance running another topology version still finds the owner.
	leaderSub := -1
	for i, topics := range m.info.Subtopologies {
		if len(s.topics) > 0 && slices.Contains(topics, s.topics[0]) {
			leaderSub = i
			break
		}
	}
	if leaderSub < 0 || leaderSub >= len(m.info.Partitions) || m.info.Partitions[leaderSub] <= 0 {
		return s, Owner{}, fmt.Errorf("%w: store %s: its topics are not in the group assignment", ErrStoreNotReady, store)
	}
	p := partition.ForKey(key, m.info.Partitions[leaderSub])
	tid := partition.TaskID{Subtopology: leaderSub, Partition: p}
	mi, ok := m.info.Owner(tid)
	if !ok {
		return s, Owner{}, fmt.Errorf("%w: store %s: task %s has no owner", ErrStoreNotReady, store, tid)
	}
	return s, Owner{
		InstanceID: mi.InstanceID,
		Endpoint:   decodeEndpoint(mi.UserData),
		Local:      mi.InstanceID == m.self,
		Task:       tid,
		Partition:  p,
	}, nil
}

// KeyOwner returns the instance that owns the serialized key of store in
// the group's latest assignment. During a cooperative rebalance that is
// the new owner, which may still be restoring the task.
func (e *Engine) KeyOwner(store string, key []byte) (Owner, error) {
	_, o, err := e.locate(store, key)
	return o, err
}

// StoreGet reads the committed value of a serialized key of store from
// the local task that holds it. Values are read from the task's DB, never
// from its pending batch, so they are what the last commit wrote (under
// exactly-once: what a committed transaction covers).
//
// A key whose task runs here is answered even when the latest assignment
// already names a new owner (the task is being revoked): this instance
// still processes it. A key of a task assigned here that is still
// restoring gets ErrStoreNotReady; a key owned elsewhere a *NotLocalError.
func (e *Engine) StoreGet(store string, key []byte) ([]byte, bool, error) {
	s, o, err := e.locate(store, key)
	if err != nil {
		return nil, false, err
	}
	local := partition.TaskID{Subtopology: s.id, Partition: o.Partition}
	e.query.mu.RLock()
	qt := e.query.tasks[local]
	var db state.DB
	ready := qt != nil && qt.ready
	if ready {
		db = qt.db
	}
	e.query.mu.RUnlock()
	switch {
	case ready:
		v, ok, err := db.Get(store, key)
		if err != nil {
			return nil, false, queryErr(store, local, err)
		}
		return v, ok, nil
	case qt != nil:
		return nil, false, fmt.Errorf("%w: store %s: task %s is restoring", ErrStoreNotReady, store, local)
	case o.Local:
		return nil, false, fmt.Errorf("%w: store %s: task %s is being assigned", ErrStoreNotReady, store, local)
	default:
		return nil, false, &NotLocalError{Store: store, Owner: o}
	}
}

// queryErr reports a read on a DB closed under the reader (the task was
// revoked or closed meanwhile) as ErrStoreNotReady.
func queryErr(store string, id partition.TaskID, err error) error {
	if errors.Is(err, state.ErrClosed) {
		return fmt.Errorf("%w: store %s: task %s closed during the query: %w", ErrStoreNotReady, store, id, err)
	}
	return fmt.Errorf("store %s: task %s: %w", store, id, err)
}

// StoreRange iterates the committed entries of store in [lower, upper)
// (nil: unbounded) across every task of the store that runs here, merged
// into one ascending order of serialized keys (keys are partitioned, so no
// key is in two tasks). Each task's part is a consistent snapshot taken
// when StoreRange is called.
//
// It fails with ErrStoreNotReady while any of the store's tasks here is
// restoring, as Kafka Streams does: a partial answer would look complete.
// If a task closes during the iteration, the iterator ends with an error
// wrapping ErrStoreNotReady.
func (e *Engine) StoreRange(store string, lower, upper []byte) (state.Iterator, error) {
	s, err := e.storeSub(store)
	if err != nil {
		return nil, err
	}
	if err := e.queryable(); err != nil {
		return nil, err
	}
	e.query.mu.RLock()
	var ids []partition.TaskID
	for id, qt := range e.query.tasks {
		if id.Subtopology != s.id {
			continue
		}
		if !qt.ready {
			e.query.mu.RUnlock()
			return nil, fmt.Errorf("%w: store %s: task %s is restoring", ErrStoreNotReady, store, id)
		}
		ids = append(ids, id)
	}
	dbs := make([]state.DB, len(ids))
	slices.SortFunc(ids, partition.Compare)
	for i, id := range ids {
		dbs[i] = e.query.tasks[id].db
	}
	e.query.mu.RUnlock()

	mi := &mergeIter{store: store}
	for i, db := range dbs {
		it, err := db.NewIter(store, lower, upper)
		if err != nil {
			mi.Close()
			return nil, queryErr(store, ids[i], err)
		}
		mi.parts = append(mi.parts, &mergePart{it: it, id: ids[i]})
	}
	return mi, nil
}

// mergeIter merges the iterators of several tasks by key.
type mergeIter struct {
	store   string
	parts   []*mergePart
	h       mergeHeap
	started bool
	cur     *mergePart
	err     error
}

type mergePart struct {
	it state.Iterator
	id partition.TaskID
}

type mergeHeap []*mergePart

func (h mergeHeap) Len() int           { return len(h) }
func (h mergeHeap) Less(i, j int) bool { return bytes.Compare(h[i].it.Key(), h[j].it.Key()) < 0 }
func (h mergeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *mergeHeap) Push(x any)        { *h = append(*h, x.(*mergePart)) }
func (h *mergeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// advance moves p to its next entry and reports whether it has one.
func (m *mergeIter) advance(p *mergePart) bool {
	if p.it.Next() {
		return true
	}
	if err := p.it.Err(); err != nil && m.err == nil {
		m.err = queryErr(m.store, p.id, err)
	}
	return false
}

// Next implements state.Iterator.
func (m *mergeIter) Next() bool {
	if m.err != nil {
		return false
	}
	if !m.started {
		m.started = true
		for _, p := range m.parts {
			if m.advance(p) {
				m.h = append(m.h, p)
			}
		}
		heap.Init(&m.h)
	} else if m.cur != nil {
		if m.advance(m.cur) {
			heap.Push(&m.h, m.cur)
		}
		m.cur = nil
	}
	if m.err != nil || len(m.h) == 0 {
		return false
	}
	m.cur = heap.Pop(&m.h).(*mergePart)
	return true
}

// Key implements state.Iterator.
func (m *mergeIter) Key() []byte {
	if m.cur == nil {
		return nil
	}
	return m.cur.it.Key()
}

// Value implements state.Iterator.
func (m *mergeIter) Value() []byte {
	if m.cur == nil {
		return nil
	}
	return m.cur.it.Value()
}

// Err implements state.Iterator.
func (m *mergeIter) Err() error { return m.err }

// Close implements state.Iterator.
func (m *mergeIter) Close() error {
	var errs []error
	for _, p := range m.parts {
		if err := p.it.Close(); err != nil && !errors.Is(err, state.ErrClosed) {
			errs = append(errs, err)
		}
	}
	m.parts, m.h, m.cur = nil, nil, nil
	return errors.Join(errs...)
}

// Instances lists the group's members in the latest assignment, with
// their endpoints and tasks.
func (e *Engine) Instances() ([]Instance, error) {
	if err := e.queryable(); err != nil {
		return nil, err
	}
	m := e.query.meta.Load()
	if m == nil {
		return nil, fmt.Errorf("%w: no group assignment yet", ErrStoreNotReady)
	}
	out := make([]Instance, 0, len(m.info.Members))
	for _, mi := range m.info.Members {
		in := Instance{
			InstanceID: mi.InstanceID,
			Endpoint:   decodeEndpoint(mi.UserData),
			Local:      mi.InstanceID == m.self,
			Tasks:      slices.Clone(mi.Tasks),
			Partitions: make(map[string][]int32),
		}
		for _, t := range mi.Tasks {
			if t.Subtopology >= len(m.info.Subtopologies) {
				continue
			}
			topics := m.info.Subtopologies[t.Subtopology]
			for _, topic := range topics {
				in.Partitions[topic] = append(in.Partitions[topic], t.Partition)
			}
			if len(topics) > 0 {
				if s := e.topicSub[topics[0]]; s != nil {
					in.Stores = append(in.Stores, s.stores...)
				}
			}
		}
		slices.Sort(in.Stores)
		in.Stores = slices.Compact(in.Stores)
		out = append(out, in)
	}
	return out, nil
}

// awaitingTasks reports whether the group's latest assignment gives this
// instance a task it has not opened yet. franz-go hands the tasks over
// only after the loop's current poll round (BlockRebalanceOnPoll), so
// without this check the app would report Running, with nothing to
// restore yet, in between. e.mu must be held.
func (e *Engine) awaitingTasks() bool {
	m := e.query.meta.Load()
	if m == nil {
		return false
	}
	for _, mi := range m.info.Members {
		if mi.InstanceID != m.self {
			continue
		}
		for _, t := range mi.Tasks {
			if t.Subtopology >= len(m.info.Subtopologies) || len(m.info.Subtopologies[t.Subtopology]) == 0 {
				continue
			}
			s := e.topicSub[m.info.Subtopologies[t.Subtopology][0]]
			if s == nil {
				continue
			}
			if _, ok := e.tasks[partition.TaskID{Subtopology: s.id, Partition: t.Partition}]; !ok {
				return true
			}
		}
	}
	return false
}
