package engine

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/internal/graph"
	"github.com/choreo-go/choreo/partition"
)

// ErrUnknownTopic is returned by the Driver for a topic the topology does
// not read (Pipe) or does not know (Output).
var ErrUnknownTopic = errors.New("topic is not part of the topology")

// ErrDriverClosed is returned by a Driver used after Close.
var ErrDriverClosed = errors.New("test driver closed")

// DriverConfig configures a Driver beyond the engine's Config.
type DriverConfig struct {
	// Partitions sets the partition count of user topics; a topic not
	// listed has one partition. Repartition and changelog topics derive
	// their counts as they do on a cluster.
	Partitions map[string]int32
	// Start is the initial wall-clock time; zero means the Unix epoch.
	Start time.Time
}

// Driver runs a compiled topology without brokers, on one goroutine, with a
// clock that moves only when told. Its tasks are the engine's own: the same
// record processing, store batches with savepoints, error policies,
// dead-letter records and punctuation as a running App. What the driver
// replaces is Kafka: records piped in are appended to in-memory partitions
// and handed to the owning task; every record a task produces is appended to
// its topic, and when the topology reads that topic (a repartition topic,
// or a user topic read downstream) it is processed in turn. After each piped
// record (and each clock advance) the driver commits like the engine does:
// changelog records are produced and the store batches applied, so stores
// and changelogs always reflect every processed record.
//
// A Driver is not safe for concurrent use.
type Driver struct {
	e     *Engine
	now   time.Time
	tasks []*task // in id order: processing order is deterministic
	logs  map[string]*topicLog
	// due lists, in arrival order, the task of every record queued for
	// processing: records are processed in the order they were written.
	due    []*task
	closed bool
}

// topicLog holds every record written to a topic, per partition (their
// offsets) and in write order (what an output reader sees).
type topicLog struct {
	parts   [][]*kgo.Record
	ordered []*kgo.Record
}

// NewDriver prepares every task of topo on in-memory stores. cfg is the
// app's engine configuration; its broker, state directory and commit
// settings are ignored.
func NewDriver(topo *graph.Topology, cfg Config, dc DriverConfig) (*Driver, error) {
	d := &Driver{now: dc.Start, logs: make(map[string]*topicLog)}
	if d.now.IsZero() {
		d.now = time.Unix(0, 0).UTC()
	}
	cfg.noBrokers = true
	cfg.InMemoryState = true
	cfg.StateDir = ""
	// Records are processed in the order they are piped: a task never
	// waits for another partition.
	cfg.MaxTaskIdle = -1
	cfg.Now = func() time.Time { return d.now }
	if cfg.InstanceID == "" {
		cfg.InstanceID = "test-driver"
	}
	e, err := New(topo, cfg)
	if err != nil {
		return nil, err
	}
	d.e = e
	e.sink = d.append
	e.partitions = make(map[string]int32)
	e.maxBytes = make(map[string]int32)
	e.inputIDs = make(map[string][16]byte)
	e.topicIDs = make(map[string][16]byte)
	names, _ := e.userTopicNames()
	for _, n := range names {
		e.partitions[n] = 1
	}
	for topic, n := range dc.Partitions {
		if n < 1 {
			return nil, fmt.Errorf("%w: topic %s: partitions must be positive", ErrInvalidConfig, topic)
		}
		e.partitions[topic] = n
	}
	if cfg.UseDeadLetter {
		var np int32 = 1
		for _, n := range e.partitions {
			np = max(np, n)
		}
		e.partitions[e.cfg.DeadLetterTopic] = np
	}
	if _, err := e.planInternalTopics(); err != nil {
		return nil, err
	}
	e.lc.set(Running)
	for _, s := range e.subs {
		var np int32
		for _, topic := range s.topics {
			np = max(np, e.partitions[topic])
		}
		for p := range np {
			id := partition.TaskID{Subtopology: s.id, Partition: p}
			t, err := e.openTask(id)
			if err != nil {
				return nil, err
			}
			if err := t.instantiate(); err != nil {
				return nil, err
			}
			for _, q := range t.queues {
				q.next, q.committed, q.lso = 0, 0, 0
				if e.byTP[q.topic] == nil {
					e.byTP[q.topic] = make(map[int32]*task)
				}
				e.byTP[q.topic][q.partition] = t
			}
			t.phase = phaseActive
			e.tasks[id] = t
			d.tasks = append(d.tasks, t)
		}
	}
	slices.SortFunc(d.tasks, func(a, b *task) int { return partition.Compare(a.id, b.id) })
	return d, nil
}

// Now is the driver's wall clock.
func (d *Driver) Now() time.Time { return d.now }

// Partitions returns the partition count of a topic the topology reads or
// writes (user, repartition, changelog or dead-letter topic).
func (d *Driver) Partitions(topic string) (int32, bool) {
	n, ok := d.e.partitions[topic]
	return n, ok
}

// Pipe appends rec to its topic and processes it, and everything it
// causes, to completion; then it commits. rec.Partition < 0 picks the
// partition from the key like the default producer partitioner (murmur2;
// a nil key goes to partition 0). rec.Offset is set. A processing error
// that the error policy does not absorb is returned; the record's effects
// are then rolled back and the driver stays usable.
func (d *Driver) Pipe(rec *kgo.Record) error {
	if d.closed {
		return ErrDriverClosed
	}
	if d.e.topicSub[rec.Topic] == nil {
		return fmt.Errorf("pipe to %s: %w", rec.Topic, ErrUnknownTopic)
	}
	n := d.e.partitions[rec.Topic]
	switch {
	case rec.Partition < 0 && rec.Key != nil:
		rec.Partition = partition.ForKey(rec.Key, n)
	case rec.Partition < 0:
		rec.Partition = 0
	case rec.Partition >= n:
		return fmt.Errorf("pipe to %s: partition %d of %d: %w", rec.Topic, rec.Partition, n, ErrUnknownTopic)
	}
	d.append(rec, nil)
	return d.runAndCommit()
}

// AdvanceWallClock moves the wall clock forward by by, fires the
// wall-clock punctuators that fall due (once each, at the new time, as a
// running app that was busy would), processes what they cause and commits.
func (d *Driver) AdvanceWallClock(by time.Duration) error {
	if d.closed {
		return ErrDriverClosed
	}
	if by < 0 {
		return fmt.Errorf("advance wall clock by %v: time cannot go back", by)
	}
	d.now = d.now.Add(by)
	for _, t := range d.tasks {
		if err := t.punctuateWall(d.now); err != nil {
			// Nothing of the failed punctuation is kept; what earlier
			// punctuators did is committed.
			return errors.Join(err, d.runAndCommit())
		}
	}
	return d.runAndCommit()
}

// append writes rec to its topic's log and, when the topology reads the
// topic, to the owning task's input queue. It is the engine's sink.
func (d *Driver) append(rec *kgo.Record, promise func(*kgo.Record, error)) {
	l := d.logs[rec.Topic]
	if l == nil {
		l = &topicLog{}
		d.logs[rec.Topic] = l
	}
	for int32(len(l.parts)) <= rec.Partition {
		l.parts = append(l.parts, nil)
	}
	rec.Offset = int64(len(l.parts[rec.Partition]))
	if rec.Timestamp.IsZero() {
		rec.Timestamp = d.now
	}
	l.parts[rec.Partition] = append(l.parts[rec.Partition], rec)
	l.ordered = append(l.ordered, rec)
	if t := d.e.byTP[rec.Topic][rec.Partition]; t != nil {
		q := t.byTopic[rec.Topic]
		q.recs = append(q.recs, rec)
		q.lso = rec.Offset + 1
		d.due = append(d.due, t)
	}
	if promise != nil {
		promise(rec, nil)
	}
}

// runAndCommit processes every queued record in the order it was written
// (within a task, the lowest timestamp first, as a task on a cluster does),
// then commits every task with work. The first error stops processing; the
// queued records that remain are dropped (they stay in their topic's log),
// as a failed app would not process them either.
func (d *Driver) runAndCommit() error {
	var perr error
	for len(d.due) > 0 && perr == nil {
		t := d.due[0]
		d.due = d.due[1:]
		_, perr = t.process(1, d.now)
	}
	if perr != nil {
		d.due = d.due[:0]
		for _, t := range d.tasks {
			for _, q := range t.queues {
				for !q.empty() {
					q.next = q.pop().Offset + 1
				}
			}
		}
	}
	active := d.e.tasksWithWork()
	slices.SortFunc(active, func(a, b *task) int { return partition.Compare(a.id, b.id) })
	d.e.produceChangelogs(active)
	if _, err := d.e.applyBatches(active); err != nil {
		return errors.Join(perr, err)
	}
	return perr
}

// Records returns every record written to topic so far, in write order.
// Input topics hold the piped records; repartition, changelog and
// dead-letter topics hold what the tasks wrote to them.
func (d *Driver) Records(topic string) []*kgo.Record {
	if l := d.logs[topic]; l != nil {
		return l.ordered
	}
	return nil
}

// Topics lists every topic written to so far, sorted.
func (d *Driver) Topics() []string {
	var out []string
	for t := range d.logs {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// storeTasks returns the tasks holding store.
func (d *Driver) storeTasks(store string) ([]*task, error) {
	s, err := d.e.storeSub(store)
	if err != nil {
		return nil, err
	}
	var out []*task
	for _, t := range d.tasks {
		if t.sub == s {
			out = append(out, t)
		}
	}
	return out, nil
}

// StoreGet reads key from store's committed state, looking in every task
// that holds the store (a key lives in one of them).
func (d *Driver) StoreGet(store string, key []byte) ([]byte, bool, error) {
	ts, err := d.storeTasks(store)
	if err != nil {
		return nil, false, err
	}
	for _, t := range ts {
		v, ok, err := t.db.Get(store, key)
		if err != nil || ok {
			return v, ok, err
		}
	}
	return nil, false, nil
}

// KV is one entry of a store.
type KV struct {
	Key, Value []byte
	// Partition is the task partition that holds the entry.
	Partition int32
}

// StoreAll returns every entry of store's committed state across its
// tasks, sorted by key bytes.
func (d *Driver) StoreAll(store string) ([]KV, error) {
	ts, err := d.storeTasks(store)
	if err != nil {
		return nil, err
	}
	var out []KV
	for _, t := range ts {
		it, err := t.db.NewIter(store, nil, nil)
		if err != nil {
			return nil, err
		}
		for it.Next() {
			out = append(out, KV{Key: bytes.Clone(it.Key()), Value: bytes.Clone(it.Value()), Partition: t.id.Partition})
		}
		err = errors.Join(it.Err(), it.Close())
		if err != nil {
			return nil, err
		}
	}
	slices.SortStableFunc(out, func(a, b KV) int { return bytes.Compare(a.Key, b.Key) })
	return out, nil
}

// InternalTopics lists the topology's repartition and changelog topics,
// sorted.
func (d *Driver) InternalTopics() []string {
	out := slices.Clone(d.e.repartTops)
	for _, topic := range d.e.changelogs {
		out = append(out, topic)
	}
	slices.Sort(out)
	return out
}

// Stores lists the topology's stores, sorted.
func (d *Driver) Stores() []string {
	var out []string
	for name := range d.e.topo.Graph.Stores {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// IsTableStore reports whether store holds a table (values framed with
// the record timestamp).
func (d *Driver) IsTableStore(store string) bool {
	spec := d.e.topo.Graph.Stores[store]
	return spec != nil && spec.Table
}

// Skipped and DeadLettered count records the error policies dropped.
func (d *Driver) Skipped() int64 { return d.e.Skipped() }

// DeadLettered counts records sent to the dead-letter topic.
func (d *Driver) DeadLettered() int64 { return d.e.DeadLettered() }

// Close closes the processors (their Close methods run) and the stores.
func (d *Driver) Close() error {
	if d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	for _, t := range d.tasks {
		t.closeInstances()
		errs = append(errs, t.db.Close())
	}
	return errors.Join(errs...)
}
