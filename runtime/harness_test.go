package runtime_test

// An in-process harness that runs a compiled topology without a broker or
// the engine: one task per (sub-topology, partition) over state.NewMemory and
// state.NewBatch, sends captured per topic, and records sent to a topic the
// topology reads (repartition topics) routed back to the task that reads it.

import (
	"encoding/binary"
	"errors"
	"hash/fnv"
	"log/slog"
	"sort"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/internal/graph"
	"github.com/choreo-go/choreo/runtime"
	"github.com/choreo-go/choreo/state"
)

const appID = "app"

type sent struct {
	Topic     string
	Partition int32
	Key       []byte
	Value     []byte
	Headers   []kgo.RecordHeader
	Timestamp int64
}

type harness struct {
	t          testing.TB
	topo       *graph.Topology
	res        *graph.Resolved
	partitions int32
	tasks      map[[2]int]*htask
	sent       map[string][]sent
	queue      []*kgo.Record
	offsets    map[string]int64
	wall       time.Time
}

type hpunct struct {
	interval  int64
	typ       graph.PunctuationType
	fn        func(ts int64) error
	last      int64
	started   bool
	cancelled bool
}

type htask struct {
	h         *harness
	sub       *graph.Subtopology
	partition int32
	db        state.DB
	batch     *state.Batch
	inst      *graph.Instances
	stores    map[string]bool
	stream    int64
	rec       *graph.RecordContext
	puncts    []*hpunct
}

func build(t testing.TB, b *runtime.Builder) *runtime.Topology {
	t.Helper()
	topo, err := b.Build()
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return topo
}

// newHarness runs the topology with every topic having the given number of
// partitions.
func newHarness(t testing.TB, b *runtime.Builder, partitions int32) *harness {
	t.Helper()
	h, err := startHarness(t, b, partitions)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// startHarness is newHarness returning instantiation errors.
func startHarness(t testing.TB, b *runtime.Builder, partitions int32) (*harness, error) {
	t.Helper()
	topo := build(t, b)
	h := &harness{
		t:          t,
		topo:       topo.Graph(),
		res:        topo.Graph().Resolve(appID),
		partitions: partitions,
		tasks:      map[[2]int]*htask{},
		sent:       map[string][]sent{},
		offsets:    map[string]int64{},
		wall:       time.UnixMilli(1_000_000),
	}
	t.Cleanup(func() {
		for _, tk := range h.tasks {
			_ = tk.inst.Close()
			_ = tk.db.Close()
		}
	})
	for _, st := range h.topo.Subtopologies {
		for p := int32(0); p < partitions; p++ {
			db := state.NewMemory()
			tk := &htask{h: h, sub: st, partition: p, db: db, batch: state.NewBatch(db), stores: map[string]bool{}, stream: -1}
			for _, s := range st.Stores {
				tk.stores[s] = true
			}
			inst, err := st.Instantiate(tk)
			if err != nil {
				return nil, err
			}
			tk.inst = inst
			h.tasks[[2]int{st.ID, int(p)}] = tk
		}
	}
	return h, nil
}

func (h *harness) partitionOf(key []byte, partition int32) int32 {
	if partition >= 0 {
		return partition
	}
	if h.partitions == 1 || key == nil {
		return 0
	}
	f := fnv.New32a()
	f.Write(key)
	return int32(f.Sum32() % uint32(h.partitions))
}

// pipe feeds one record to topic and processes it and everything it causes
// (repartition round trips) before returning the first error.
func (h *harness) pipe(topic string, key, value []byte, ts int64, headers ...kgo.RecordHeader) error {
	h.queue = append(h.queue, &kgo.Record{Topic: topic, Partition: h.partitionOf(key, -1), Key: key, Value: value, Timestamp: time.UnixMilli(ts), Headers: headers})
	return h.drain()
}

func (h *harness) mustPipe(topic string, key, value []byte, ts int64, headers ...kgo.RecordHeader) {
	h.t.Helper()
	if err := h.pipe(topic, key, value, ts, headers...); err != nil {
		h.t.Fatalf("pipe %s: %v", topic, err)
	}
}

func (h *harness) drain() error {
	for len(h.queue) > 0 {
		r := h.queue[0]
		h.queue = h.queue[1:]
		in, ok := h.res.Inputs[r.Topic]
		if !ok {
			return errors.New("harness: no source reads " + r.Topic)
		}
		tk := h.tasks[[2]int{in.Subtopology.ID, int(r.Partition)}]
		r.Offset = h.offsets[r.Topic]
		h.offsets[r.Topic]++
		ts := r.Timestamp.UnixMilli()
		tk.rec = &graph.RecordContext{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: ts, Headers: r.Headers}
		if ts > tk.stream {
			tk.stream = ts
		}
		tk.batch.Savepoint()
		err := tk.inst.Sources[r.Topic].Process(r)
		tk.rec = nil
		if err != nil {
			tk.batch.Rollback()
			h.queue = nil
			return err
		}
		if err := tk.punctuate(graph.StreamTime, tk.stream); err != nil {
			return err
		}
		if err := tk.batch.Commit(nil, false); err != nil {
			return err
		}
	}
	return nil
}

// advance moves the wall clock and fires wall-clock punctuators.
func (h *harness) advance(d time.Duration) error {
	h.wall = h.wall.Add(d)
	for _, k := range h.taskKeys() {
		tk := h.tasks[k]
		if err := tk.punctuate(graph.WallClockTime, h.wall.UnixMilli()); err != nil {
			return err
		}
		if err := tk.batch.Commit(nil, false); err != nil {
			return err
		}
	}
	return h.drain()
}

func (h *harness) taskKeys() [][2]int {
	var ks [][2]int
	for k := range h.tasks {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool {
		if ks[i][0] != ks[j][0] {
			return ks[i][0] < ks[j][0]
		}
		return ks[i][1] < ks[j][1]
	})
	return ks
}

// output returns the records sent to topic (real name) and forgets them.
func (h *harness) output(topic string) []sent {
	out := h.sent[topic]
	delete(h.sent, topic)
	return out
}

// storeGet reads a store key from whichever task holds it.
func (h *harness) storeGet(store string, key []byte) ([]byte, bool) {
	h.t.Helper()
	for _, k := range h.taskKeys() {
		tk := h.tasks[k]
		if !tk.stores[store] {
			continue
		}
		v, ok, err := tk.batch.Get(store, key)
		if err != nil {
			h.t.Fatal(err)
		}
		if ok {
			return v, true
		}
	}
	return nil, false
}

// storeLen counts the keys of a store over all tasks.
func (h *harness) storeLen(store string) int {
	h.t.Helper()
	n := 0
	for _, tk := range h.tasks {
		if !tk.stores[store] {
			continue
		}
		it, err := tk.batch.NewIter(store, nil, nil)
		if err != nil {
			h.t.Fatal(err)
		}
		for it.Next() {
			n++
		}
		_ = it.Close()
	}
	return n
}

func (tk *htask) punctuate(typ graph.PunctuationType, now int64) error {
	for _, p := range tk.puncts {
		if p.cancelled || p.typ != typ || now < 0 {
			continue
		}
		if !p.started {
			p.started, p.last = true, now
			continue
		}
		if now >= p.last+p.interval {
			p.last = now
			tk.batch.Savepoint()
			if err := p.fn(now); err != nil {
				tk.batch.Rollback()
				return err
			}
		}
	}
	return nil
}

// graph.Task

func (tk *htask) AppID() string        { return appID }
func (tk *htask) Subtopology() int     { return tk.sub.ID }
func (tk *htask) Partition() int32     { return tk.partition }
func (tk *htask) StreamTime() int64    { return tk.stream }
func (tk *htask) Now() time.Time       { return tk.h.wall }
func (tk *htask) Logger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func (tk *htask) Record() *graph.RecordContext { return tk.rec }

func (tk *htask) Store(name string) (graph.Store, error) {
	if !tk.stores[name] {
		return nil, errors.New("harness: store " + name + " is not in sub-topology")
	}
	return batchStore{b: tk.batch, name: name}, nil
}

func (tk *htask) Send(topic string, partition int32, key, value []byte, headers []kgo.RecordHeader, ts int64) error {
	p := tk.h.partitionOf(key, partition)
	tk.h.sent[topic] = append(tk.h.sent[topic], sent{Topic: topic, Partition: p, Key: key, Value: value, Headers: headers, Timestamp: ts})
	if _, ok := tk.h.res.Inputs[topic]; ok {
		tk.h.queue = append(tk.h.queue, &kgo.Record{Topic: topic, Partition: p, Key: key, Value: value, Headers: headers, Timestamp: time.UnixMilli(ts)})
	}
	return nil
}

func (tk *htask) Schedule(interval time.Duration, typ graph.PunctuationType, fn func(ts int64) error) func() {
	p := &hpunct{interval: interval.Milliseconds(), typ: typ, fn: fn}
	if typ == graph.WallClockTime {
		p.started, p.last = true, tk.h.wall.UnixMilli()
	}
	tk.puncts = append(tk.puncts, p)
	return func() { p.cancelled = true }
}

type batchStore struct {
	b    *state.Batch
	name string
}

func (s batchStore) Get(key []byte) ([]byte, bool, error) { return s.b.Get(s.name, key) }
func (s batchStore) Put(key, value []byte) error {
	s.b.Put(s.name, key, value)
	return nil
}
func (s batchStore) Delete(key []byte) error {
	s.b.Delete(s.name, key)
	return nil
}
func (s batchStore) Range(lower, upper []byte) (state.Iterator, error) {
	return s.b.NewIter(s.name, lower, upper)
}

// stored reads and decodes a table store value: [8-byte timestamp][value].
func (h *harness) stored(store string, key []byte) (int64, []byte) {
	h.t.Helper()
	raw, ok := h.storeGet(store, key)
	if !ok {
		h.t.Fatalf("%s: key %q not in store", store, key)
	}
	if len(raw) < 8 {
		h.t.Fatalf("%s: store value %x has no timestamp", store, raw)
	}
	return int64(binary.BigEndian.Uint64(raw)), raw[8:]
}
