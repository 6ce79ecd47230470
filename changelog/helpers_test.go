package changelog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/internal/testbroker"
	"github.com/choreo-go/choreo/state"
)

const testTimeout = 20 * time.Second

type env struct {
	t    testing.TB
	b    *testbroker.Broker
	adm  *kadm.Client
	prod *kgo.Client
}

func newEnv(t testing.TB) *env {
	t.Helper()
	// No periodic compaction: tests count records; TestRestoreCompacted
	// compacts on demand.
	b, err := testbroker.Start(testbroker.Options{BrokerConfigs: map[string]string{"log.cleaner.backoff.ms": "3600000"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	acl, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(acl.Close)
	prod, err := kgo.NewClient(
		kgo.SeedBrokers(b.Addrs()...),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	return &env{t: t, b: b, adm: kadm.NewClient(acl), prod: prod}
}

func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	e.t.Cleanup(cancel)
	return ctx
}

func (e *env) createTopic(name string, partitions int32, configs map[string]*string) {
	e.t.Helper()
	err := EnsureTopics(e.ctx(), e.adm, []TopicSpec{{Name: name, Partitions: partitions, ReplicationFactor: -1, Compacted: true, Configs: configs}})
	if err != nil {
		e.t.Fatal(err)
	}
}

// restoreClient returns a client fit for a Restorer.
func (e *env) restoreClient(keepControl bool) *kgo.Client {
	e.t.Helper()
	opts := []kgo.Opt{
		kgo.SeedBrokers(e.b.Addrs()...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(200 * time.Millisecond),
	}
	if keepControl {
		opts = append(opts, kgo.KeepControlRecords())
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(cl.Close)
	return cl
}

// logRec is one produced record, for models.
type logRec struct {
	off   int64
	key   string
	value []byte // nil: delete
}

// changelogLog records what was produced to a partition.
type changelogLog struct {
	topic string
	part  int32
	recs  []logRec
}

// model replays the records at or above from.
func (l *changelogLog) model(from int64) map[string][]byte {
	m := make(map[string][]byte)
	for _, r := range l.recs {
		if r.off < from {
			continue
		}
		if r.value == nil {
			delete(m, r.key)
		} else {
			m[r.key] = r.value
		}
	}
	return m
}

func (l *changelogLog) countFrom(from int64) int64 {
	var n int64
	for _, r := range l.recs {
		if r.off >= from {
			n++
		}
	}
	return n
}

// genRecords makes n records over keys distinct keys, about 10% deletes and
// some empty values.
func genRecords(rng *rand.Rand, topic string, part int32, n, keys int) []*kgo.Record {
	recs := make([]*kgo.Record, n)
	for i := range recs {
		k := fmt.Sprintf("key-%06d", rng.IntN(keys))
		var v []byte
		switch x := rng.IntN(20); {
		case x < 2:
			v = nil
		case x == 2:
			v = []byte{}
		default:
			v = fmt.Appendf(nil, "value-%d-%d", i, rng.Uint64())
		}
		recs[i] = &kgo.Record{Topic: topic, Partition: part, Key: []byte(k), Value: v}
	}
	return recs
}

// produce writes n generated records non-transactionally and appends them to l.
func (e *env) produce(l *changelogLog, rng *rand.Rand, n, keys int) {
	e.t.Helper()
	recs := genRecords(rng, l.topic, l.part, n, keys)
	e.produceRecs(e.prod, recs)
	for _, r := range recs {
		l.recs = append(l.recs, logRec{off: r.Offset, key: string(r.Key), value: r.Value})
	}
}

func (e *env) produceRecs(cl *kgo.Client, recs []*kgo.Record) {
	e.t.Helper()
	const chunk = 5000
	for len(recs) > 0 {
		n := min(chunk, len(recs))
		if err := cl.ProduceSync(e.ctx(), recs[:n]...).FirstErr(); err != nil {
			e.t.Fatal(err)
		}
		recs = recs[n:]
	}
}

func (e *env) endOffset(topic string, part int32) int64 {
	e.t.Helper()
	offs, err := e.adm.ListCommittedOffsets(fresh(e.ctx()), topic)
	if err != nil {
		e.t.Fatal(err)
	}
	o, ok := offs.Lookup(topic, part)
	if !ok || o.Err != nil {
		e.t.Fatalf("end offset of %s[%d]: %v", topic, part, o.Err)
	}
	return o.Offset
}

// storeContents reads a whole store.
func storeContents(t testing.TB, db state.DB, store string) map[string][]byte {
	t.Helper()
	it, err := db.NewIter(store, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	m := make(map[string][]byte)
	for it.Next() {
		m[string(it.Key())] = bytes.Clone(it.Value())
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

func checkStore(t testing.TB, db state.DB, store string, want map[string][]byte) {
	t.Helper()
	got := storeContents(t, db, store)
	if len(got) != len(want) {
		t.Errorf("store %q has %d keys, want %d", store, len(got), len(want))
	}
	n := 0
	for _, k := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("store %q: key %q missing", store, k)
		case !bytes.Equal(g, want[k]):
			t.Errorf("store %q: key %q = %q, want %q", store, k, g, want[k])
		}
		if t.Failed() {
			if n++; n > 10 {
				t.FailNow()
			}
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("store %q: unexpected key %q", store, k)
			if n++; n > 10 {
				t.FailNow()
			}
		}
	}
}

func checkpointOf(t testing.TB, db state.DB) state.Checkpoint {
	t.Helper()
	cp, ok, err := db.Checkpoint()
	if err != nil || !ok {
		t.Fatalf("checkpoint: ok=%v err=%v", ok, err)
	}
	return cp
}

// recListener records listener calls.
type recListener struct {
	mu        sync.Mutex
	starts    map[string][2]int64 // store -> start, end
	batches   map[string]int64    // store -> sum of restored
	ends      map[string]int64    // store -> total
	suspended map[string]int64
	onBatch   func(store string, end, n int64)
	onEnd     func(store string, total int64)
}

func newRecListener() *recListener {
	return &recListener{starts: map[string][2]int64{}, batches: map[string]int64{}, ends: map[string]int64{}, suspended: map[string]int64{}}
}

func (l *recListener) OnRestoreStart(task, store, topic string, partition int32, start, end int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.starts[task+"/"+store] = [2]int64{start, end}
}

func (l *recListener) OnBatchRestored(task, store, topic string, partition int32, batchEnd, n int64) {
	l.mu.Lock()
	l.batches[task+"/"+store] += n
	fn := l.onBatch
	l.mu.Unlock()
	if fn != nil {
		fn(task+"/"+store, batchEnd, n)
	}
}

func (l *recListener) OnRestoreEnd(task, store, topic string, partition int32, total int64) {
	l.mu.Lock()
	l.ends[task+"/"+store] = total
	fn := l.onEnd
	l.mu.Unlock()
	if fn != nil {
		fn(task+"/"+store, total)
	}
}

func (l *recListener) OnRestoreSuspended(task, store, topic string, partition int32, total int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.suspended[task+"/"+store] = total
}

func (l *recListener) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.starts)
	clear(l.batches)
	clear(l.ends)
	clear(l.suspended)
}

// runRestorer runs r until the test ends.
func runRestorer(t testing.TB, r *Restorer) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-errc:
			case <-time.After(testTimeout):
				err = errors.New("Run did not return")
			}
		})
		return err
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
	return stop
}

// add adds a request and returns a channel with its result.
func add(r *Restorer, task string, db state.DB, stores ...StoreChangelog) <-chan Result {
	ch := make(chan Result, 1)
	r.Add(Request{Task: task, DB: db, Stores: stores, Done: func(res Result) { ch <- res }})
	return ch
}

func wait(t testing.TB, ch <-chan Result) Result {
	t.Helper()
	select {
	case res := <-ch:
		return res
	case <-time.After(testTimeout):
		t.Fatal("restore did not finish")
		return Result{}
	}
}

func restore(t testing.TB, r *Restorer, task string, db state.DB, stores ...StoreChangelog) Result {
	t.Helper()
	res := wait(t, add(r, task, db, stores...))
	if res.Err != nil {
		t.Fatalf("restore %s: %v", task, res.Err)
	}
	return res
}

// faultyDB fails Apply with err once armed.
type faultyDB struct {
	state.DB
	mu  sync.Mutex
	err error
}

func (d *faultyDB) Apply(w *state.WriteSet, cp *state.Checkpoint, sync bool) error {
	d.mu.Lock()
	err := d.err
	d.mu.Unlock()
	if err != nil {
		return err
	}
	return d.DB.Apply(w, cp, sync)
}

// testLogger logs through t.Log at debug level.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
