package engine

import (
	"encoding/hex"
	"fmt"
	"log/slog"
	"math"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/internal/graph"
	"github.com/choreo-go/choreo/partition"
	"github.com/choreo-go/choreo/state"
)

type taskPhase int

const (
	phaseRestoring taskPhase = iota
	phaseActive
	phaseClosed
)

// partQueue buffers the fetched records of one input partition of a task.
type partQueue struct {
	topic     string
	partition int32
	source    graph.SourceInstance
	recs      []*kgo.Record
	head      int
	// next is the offset of the next record to process (-1 = unknown
	// until the first record or an explicit start position).
	next int64
	// processed is true once a record was processed since the last commit.
	dirty bool
	// tally counts records processed since the metrics last took them.
	tally int64
	// lso is the last stable offset (read committed end) from the latest
	// fetch or lag probe, -1 unknown.
	lso         int64
	leaderEpoch int32
	// committed is the input offset last committed for this partition
	// (-1: the group has none).
	committed int64
	// fromStart: the group has no committed offset, so the consumer starts
	// at the log start (learned by the lag probe) .
	fromStart bool
}

func (q *partQueue) empty() bool { return q.head >= len(q.recs) }

func (q *partQueue) peek() *kgo.Record { return q.recs[q.head] }

func (q *partQueue) pop() *kgo.Record {
	r := q.recs[q.head]
	q.recs[q.head] = nil
	q.head++
	if q.head == len(q.recs) {
		q.recs = q.recs[:0]
		q.head = 0
	}
	return r
}

// skipControl drops transaction markers at the head of the queue: they only
// move the position.
func (q *partQueue) skipControl() {
	for !q.empty() && q.peek().Attrs.IsControl() {
		r := q.pop()
		q.next = r.Offset + 1
		q.dirty = true
	}
}

// lagKnown reports whether the position and the end of the partition are
// known; behind reports whether records are known to be waiting to be fetched.
func (q *partQueue) lagKnown() bool { return q.next >= 0 && q.lso >= 0 }
func (q *partQueue) behind() bool   { return q.next < q.lso }

type punctuator struct {
	interval  time.Duration
	typ       graph.PunctuationType
	next      int64 // ms: stream time or wall clock
	fn        func(ts int64) error
	cancelled bool
}

// task runs one sub-topology for one partition. It implements graph.Task.
type task struct {
	e     *Engine
	id    partition.TaskID
	name  string
	sub   *subtopology
	phase taskPhase

	db    state.DB
	batch *state.Batch
	cp    state.Checkpoint
	// nextCP is the checkpoint a commit in progress applies.
	nextCP state.Checkpoint
	stores map[string]*storeHandle

	queues    []*partQueue
	byTopic   map[string]*partQueue
	instances []any
	// blockedSince is when the task first had records but had to wait for
	// an empty partition; zero when not waiting.
	blockedSince time.Time

	streamTime  int64
	rc          graph.RecordContext
	inRecord    bool
	sends       []*kgo.Record
	punctuators []*punctuator
	rr          int32 // round robin for nil-key sends
	needProbe   bool  // an empty partition's lag is unknown
	pending     int   // records processed since the last commit
	// sentTally counts records handed to the producer per topic since the
	// metrics last took them (a few topics: a slice beats a map here).
	sentTally []topicTally
	lastSync  time.Time
	log       *slog.Logger
}

type topicTally struct {
	topic string
	n     int64
}

// countSent tallies a record handed to the producer.
func (t *task) countSent(topic string) {
	for i := range t.sentTally {
		if t.sentTally[i].topic == topic {
			t.sentTally[i].n++
			return
		}
	}
	t.sentTally = append(t.sentTally, topicTally{topic: topic, n: 1})
}

type storeHandle struct {
	t    *task
	name string
}

func (s *storeHandle) Get(key []byte) ([]byte, bool, error) { return s.t.batch.Get(s.name, key) }
func (s *storeHandle) Put(key, value []byte) error {
	s.t.batch.Put(s.name, key, value)
	return nil
}
func (s *storeHandle) Delete(key []byte) error {
	s.t.batch.Delete(s.name, key)
	return nil
}
func (s *storeHandle) Range(lower, upper []byte) (state.Iterator, error) {
	return s.t.batch.NewIter(s.name, lower, upper)
}

// graph.Task implementation.

func (t *task) AppID() string     { return t.e.cfg.AppID }
func (t *task) Subtopology() int  { return t.id.Subtopology }
func (t *task) Partition() int32  { return t.id.Partition }
func (t *task) StreamTime() int64 { return t.streamTime }
func (t *task) Now() time.Time    { return t.e.cfg.Now() }
func (t *task) Logger() *slog.Logger {
	return t.log
}

func (t *task) Store(name string) (graph.Store, error) {
	s, ok := t.stores[name]
	if !ok {
		return nil, fmt.Errorf("task %s: store %q is not connected to this sub-topology", t.name, name)
	}
	return s, nil
}

func (t *task) Record() *graph.RecordContext {
	if !t.inRecord {
		return nil
	}
	return &t.rc
}

func (t *task) Send(topic string, part int32, key, value []byte, headers []kgo.RecordHeader, ts int64) error {
	if part < 0 {
		n, ok := t.e.partitions[topic]
		if !ok {
			return fmt.Errorf("send to %q: topic is not known to the topology", topic)
		}
		if key == nil {
			t.rr++
			part = t.rr % n
		} else {
			part = partition.ForKey(key, n)
		}
	}
	rec := &kgo.Record{
		Topic:     topic,
		Partition: part,
		Key:       key,
		Value:     value,
		Headers:   headers,
		Timestamp: time.UnixMilli(ts),
	}
	// Checked here, so one oversized record does not fail the producer
	// batch it would land in, and the policy decides about it alone.
	if t.e.tooLarge(rec) {
		return t.e.handleProductionError(t, rec, fmt.Errorf("%w: %d bytes to %s", errRecordTooLarge, recordSize(rec), topic))
	}
	t.sends = append(t.sends, rec)
	return nil
}

func (t *task) Schedule(interval time.Duration, typ graph.PunctuationType, fn func(ts int64) error) func() {
	// Punctuation works in whole milliseconds (record timestamps).
	interval = max(interval.Round(time.Millisecond), time.Millisecond)
	p := &punctuator{interval: interval, typ: typ, fn: fn}
	if typ == graph.StreamTime {
		p.next = math.MinInt64 // first fires at the first stream time seen
	} else {
		p.next = t.e.cfg.Now().Add(interval).UnixMilli()
	}
	t.punctuators = append(t.punctuators, p)
	return func() { p.cancelled = true }
}

// instantiate builds the node instances of the sub-topology for this task.
func (t *task) instantiate() error {
	nodes := t.sub.nodes
	inst := make(map[*graph.Node]any, len(nodes))
	// Children before parents: walk the topological order backwards.
	for i := len(nodes) - 1; i >= 0; i-- {
		n := nodes[i]
		kids := make([]any, len(n.Children))
		for j, c := range n.Children {
			ki, ok := inst[c]
			if !ok {
				return fmt.Errorf("task %s: node %s: child %s not instantiated (not in sub-topology)", t.name, n.Name, c.Name)
			}
			kids[j] = ki
		}
		in, err := n.Instantiate(t, kids)
		if err != nil {
			return fmt.Errorf("task %s: instantiate %s: %w", t.name, n.Name, err)
		}
		inst[n] = in
		t.instances = append(t.instances, in)
	}
	for _, src := range t.sub.sources {
		si, ok := inst[src.node].(graph.SourceInstance)
		if !ok {
			return fmt.Errorf("task %s: source %s does not implement graph.SourceInstance", t.name, src.node.Name)
		}
		for _, q := range t.queues {
			if src.topics[q.topic] {
				q.source = si
			}
		}
	}
	return nil
}

// fetchDueWait bounds how long a task waits for a partition whose records
// are known to be due (or whose lag is not known yet) before it processes
// the others anyway.
const fetchDueWait = 5 * time.Second

// nextQueue picks the partition whose head record has the lowest timestamp,
// or nil when the task must wait or has nothing. It follows Kafka Streams
// (KIP-695): a task waits for an empty partition that has records still to
// be fetched, or whose lag is not known yet; with MaxTaskIdle > 0 it also
// waits that long for an empty partition that is caught up; with
// MaxTaskIdle < 0 it never waits.
func (t *task) nextQueue(now time.Time) *partQueue {
	var best *partQueue
	mustWait, idleWait := false, false
	for _, q := range t.queues {
		q.skipControl()
		if q.empty() {
			switch {
			case !q.lagKnown():
				mustWait = true
				t.needProbe = true
			case q.behind():
				mustWait = true
			default:
				idleWait = true
			}
			continue
		}
		if best == nil || q.peek().Timestamp.Before(best.peek().Timestamp) {
			best = q
		}
	}
	maxIdle := t.e.cfg.MaxTaskIdle
	if best == nil || len(t.queues) == 1 || maxIdle < 0 || (!mustWait && !idleWait) {
		t.blockedSince = time.Time{}
		return best
	}
	if t.blockedSince.IsZero() {
		t.blockedSince = now
	}
	waited := now.Sub(t.blockedSince)
	if mustWait && waited < max(maxIdle, fetchDueWait) {
		return nil
	}
	if idleWait && !mustWait && waited < maxIdle {
		return nil
	}
	return best
}

// process runs up to budget records; it returns how many it processed.
func (t *task) process(budget int, now time.Time) (int, error) {
	n := 0
	for n < budget {
		q := t.nextQueue(now)
		if q == nil {
			break
		}
		r := q.pop()
		if err := t.processRecord(q, r); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func (t *task) processRecord(q *partQueue, r *kgo.Record) error {
	ts := r.Timestamp.UnixMilli()
	t.rc = graph.RecordContext{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: ts, Headers: r.Headers}
	t.inRecord = true
	if ts > t.streamTime {
		t.streamTime = ts
	}
	err := t.guarded(func() error { return q.source.Process(r) })
	t.inRecord = false
	q.next = r.Offset + 1
	q.leaderEpoch = r.LeaderEpoch
	q.dirty = true
	q.tally++
	t.pending++
	if err != nil {
		kind := ProcessingError
		if graph.IsDeserialization(err) {
			kind = DeserializationError
		}
		if herr := t.e.handleRecordError(t, kind, r, err); herr != nil {
			return herr
		}
	}
	return t.punctuateStream()
}

// guarded runs fn inside a savepoint: on error or panic every store write and
// send of fn is undone; on success its sends go to the producer.
func (t *task) guarded(fn func() error) (err error) {
	t.batch.Savepoint()
	t.sends = t.sends[:0]
	defer func() {
		if p := recover(); p != nil {
			err = &panicError{value: p, stack: debug.Stack()}
		}
		if err != nil {
			t.batch.Rollback()
			clear(t.sends)
			t.sends = t.sends[:0]
			return
		}
		for _, rec := range t.sends {
			t.countSent(rec.Topic)
			t.e.produce(rec, t.e.sendPromise)
		}
		clear(t.sends)
		t.sends = t.sends[:0]
	}()
	return fn()
}

func (t *task) punctuateStream() error {
	for _, p := range t.punctuators {
		if p.cancelled || p.typ != graph.StreamTime || t.streamTime < 0 {
			continue
		}
		if p.next == math.MinInt64 {
			p.next = t.streamTime + p.interval.Milliseconds()
			continue
		}
		if t.streamTime >= p.next {
			ts := t.streamTime
			// Schedule from the fire time, skipping missed intervals like Kafka Streams.
			iv := p.interval.Milliseconds()
			p.next += ((ts-p.next)/iv + 1) * iv
			if err := t.runPunctuator(p, ts); err != nil {
				return err
			}
		}
	}
	return nil
}

func (t *task) punctuateWall(now time.Time) error {
	ms := now.UnixMilli()
	for _, p := range t.punctuators {
		if p.cancelled || p.typ != graph.WallClockTime || ms < p.next {
			continue
		}
		iv := p.interval.Milliseconds()
		p.next += ((ms-p.next)/iv + 1) * iv
		if err := t.runPunctuator(p, ms); err != nil {
			return err
		}
	}
	return nil
}

func (t *task) runPunctuator(p *punctuator, ts int64) error {
	if err := t.guarded(func() error { return p.fn(ts) }); err != nil {
		return fmt.Errorf("task %s: punctuator: %w", t.name, err)
	}
	return nil
}

// nextWallPunctuation returns the earliest wall-clock punctuation time.
func (t *task) nextWallPunctuation() (time.Time, bool) {
	var best int64 = math.MaxInt64
	for _, p := range t.punctuators {
		if !p.cancelled && p.typ == graph.WallClockTime && p.next < best {
			best = p.next
		}
	}
	if best == math.MaxInt64 {
		return time.Time{}, false
	}
	return time.UnixMilli(best), true
}

// inputKey names an input partition in a checkpoint. It includes the topic
// id, so a checkpointed offset of a deleted and recreated topic is never
// taken for an offset of the new one.
func (e *Engine) inputKey(topic string, part int32) string {
	id := e.inputIDs[topic]
	return topic + "/" + strconv.FormatInt(int64(part), 10) + "/" + hex.EncodeToString(id[:])
}

// closeInstances closes node instances that hold resources.
func (t *task) closeInstances() {
	for _, in := range t.instances {
		if c, ok := in.(graph.Closer); ok {
			if err := c.Close(); err != nil {
				t.log.Warn("closing processor", "err", err)
			}
		}
	}
	t.instances = nil
}

// dropPending discards everything since the last commit: store writes and
// buffered input (the consumer rewinds to the committed offsets).
func (t *task) dropPending() {
	t.batch.Discard()
	for _, q := range t.queues {
		clear(q.recs)
		q.recs = q.recs[:0]
		q.head = 0
		// The consumer rewinds to the last committed offset.
		q.next = q.committed
		q.dirty = false
	}
	t.pending = 0
	t.blockedSince = time.Time{}
}
