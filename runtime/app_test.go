package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/internal/apptest"
	"github.com/choreo-go/choreo/internal/testbroker"
	"github.com/choreo-go/choreo/partition"
	"github.com/choreo-go/choreo/runtime"
	"github.com/choreo-go/choreo/state"
)

// cluster is a kfake broker with helpers to produce and read topics.
type cluster struct {
	t      *testing.T
	broker *testbroker.Broker
	cl     *kgo.Client
	adm    *kadm.Client
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	return newClusterOf(t, 1)
}

func newClusterOf(t *testing.T, brokers int) *cluster {
	t.Helper()
	return newClusterWith(t, testbroker.Options{Brokers: brokers})
}

func newClusterWith(t *testing.T, opts testbroker.Options) *cluster {
	t.Helper()
	b, err := testbroker.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs()...), kgo.ProducerLinger(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, broker: b, cl: cl, adm: kadm.NewClient(cl)}
	t.Cleanup(func() {
		cl.Close()
		b.Close()
	})
	return c
}

func (c *cluster) createTopic(name string, partitions int32) {
	c.t.Helper()
	resp, err := c.adm.CreateTopic(context.Background(), partitions, 1, nil, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		c.t.Fatalf("create %s: %v", name, err)
	}
}

func (c *cluster) produce(topic string, recs ...*kgo.Record) {
	c.t.Helper()
	for _, r := range recs {
		r.Topic = topic
	}
	if err := c.cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		c.t.Fatalf("produce: %v", err)
	}
}

// readAll reads every record of topic (read committed) up to its end offsets.
func (c *cluster) readAll(topic string) []*kgo.Record {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ends, err := c.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		c.t.Fatal(err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	if len(want) == 0 {
		return nil
	}
	// Control records (transaction markers) are kept so that a partition
	// ending in a marker is known to be read to its end.
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.broker.Addrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords())
	if err != nil {
		c.t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			c.t.Fatalf("reading %s: %v (still waiting for %v)", topic, ctx.Err(), want)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
			if end, ok := want[r.Partition]; ok && r.Offset+1 >= end {
				delete(want, r.Partition)
			}
		})
	}
	return out
}

// latestInt64 returns the latest int64 value per key of topic.
func (c *cluster) latestInt64(topic string) map[string]int64 {
	out := map[string]int64{}
	for _, r := range c.readAll(topic) {
		v, err := runtime.Int64().Deserialize(r.Value)
		if err != nil {
			c.t.Fatalf("bad value in %s: %v", topic, err)
		}
		out[string(r.Key)] = v
	}
	return out
}

func countTopology() *runtime.Builder {
	b := runtime.NewBuilder()
	runtime.Count(runtime.StreamOf(b, "in", runtime.String(), runtime.String()).GroupByKey(), runtime.Named("counts")).
		ToStream().To("out")
	return b
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("CHOREO_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func (c *cluster) config(stateDir, instance string) runtime.Config {
	return runtime.Config{
		Brokers:        c.broker.Addrs(),
		ApplicationID:  "count-app",
		InstanceID:     instance,
		StateDir:       stateDir,
		CommitInterval: 100 * time.Millisecond,
		SessionTimeout: 2 * time.Second,
		Logger:         testLogger(c.t),
	}
}

// running starts app.Run in the background and returns a func that stops it
// and returns Run's error.
func running(t *testing.T, app *runtime.App) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- app.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-errc:
			case <-time.After(30 * time.Second):
				err = errors.New("Run did not return within 30s of cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func eventually(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last: %s", d, what, last)
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not a wait for a condition
	}
}

func produceCounts(c *cluster, from, n, keys int) map[string]int64 {
	want := map[string]int64{}
	var recs []*kgo.Record
	for i := from; i < from+n; i++ {
		k := "k" + strconv.Itoa(i%keys)
		want[k]++
		recs = append(recs, &kgo.Record{Key: []byte(k), Value: []byte(strconv.Itoa(i))})
	}
	c.produce("in", recs...)
	return want
}

func equalCounts(c *cluster, want map[string]int64) func() (bool, string) {
	return func() (bool, string) {
		got := c.latestInt64("out")
		for k, v := range want {
			if got[k] != v {
				return false, fmt.Sprintf("key %s: got %d want %d (%d keys seen)", k, got[k], v, len(got))
			}
		}
		return len(got) == len(want), fmt.Sprintf("%d keys, want %d", len(got), len(want))
	}
}

func TestAppCountEndToEnd(t *testing.T) {
	c := newCluster(t)
	c.createTopic("in", 4)
	c.createTopic("out", 4)
	want := produceCounts(c, 0, 5000, 50)

	dir := t.TempDir()
	var states []runtime.State
	var mu sync.Mutex
	cfg := c.config(dir, "i1")
	cfg.StateListener = func(_, to runtime.State) {
		mu.Lock()
		states = append(states, to)
		mu.Unlock()
	}
	app, err := runtime.New(countTopology(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := running(t, app)
	eventually(t, 30*time.Second, "counts", equalCounts(c, want))
	if !app.Ready() {
		t.Errorf("app not ready while running (state %v)", app.State())
	}
	// More input while running.
	more := produceCounts(c, 5000, 1000, 50)
	for k, v := range more {
		want[k] += v
	}
	eventually(t, 30*time.Second, "counts after more input", equalCounts(c, want))
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if s := app.State(); s != runtime.NotRunning {
		t.Fatalf("state after close = %v, want NOT_RUNNING", s)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(states) < 3 || states[0] != runtime.Rebalancing || states[len(states)-1] != runtime.NotRunning {
		t.Fatalf("state transitions = %v", states)
	}
	// Changelog holds the final counts.
	// Changelog holds the final counts (store values: 8-byte timestamp + value).
	cl := map[string]int64{}
	for _, r := range c.readAll("count-app-counts-changelog") {
		v, err := runtime.Int64().Deserialize(r.Value[8:])
		if err != nil {
			t.Fatal(err)
		}
		cl[string(r.Key)] = v
	}
	for k, v := range want {
		if cl[k] != v {
			t.Fatalf("changelog %s = %d, want %d", k, cl[k], v)
		}
	}
	// Clean close left the group.
	info := c.broker.Cluster().GroupInfo("count-app")
	if info != nil && len(info.Members) != 0 {
		t.Fatalf("group still has %d members after Close", len(info.Members))
	}
}

func TestAppRestartWarmAndCold(t *testing.T) {
	c := newCluster(t)
	c.createTopic("in", 4)
	c.createTopic("out", 4)
	want := produceCounts(c, 0, 3000, 30)
	dir := t.TempDir()

	run := func(dir string, crash bool, want map[string]int64) {
		t.Helper()
		app, err := runtime.New(countTopology(), c.config(dir, "i1"))
		if err != nil {
			t.Fatal(err)
		}
		if crash {
			apptest.CrashOnClose(app)
		}
		stop := running(t, app)
		eventually(t, 30*time.Second, "counts", equalCounts(c, want))
		if err := stop(); err != nil {
			t.Fatalf("Run: %v", err)
		}
	}
	run(dir, false, want)
	// Warm restart: counts continue from the local store.
	for k, v := range produceCounts(c, 3000, 600, 30) {
		want[k] += v
	}
	run(dir, false, want)
	// Cold restart with an empty state dir: full restore from the changelog.
	for k, v := range produceCounts(c, 3600, 600, 30) {
		want[k] += v
	}
	run(t.TempDir(), false, want)
}

func TestAppInvalidConfig(t *testing.T) {
	b := countTopology()
	for name, cfg := range map[string]runtime.Config{
		"no app id":     {Brokers: []string{"x:1"}, StateDir: "d"},
		"bad app id":    {Brokers: []string{"x:1"}, StateDir: "d", ApplicationID: "a b"},
		"no brokers":    {ApplicationID: "a", StateDir: "d"},
		"no state dir":  {ApplicationID: "a", Brokers: []string{"x:1"}},
		"neg interval":  {ApplicationID: "a", Brokers: []string{"x:1"}, StateDir: "d", CommitInterval: -1},
		"heartbeat big": {ApplicationID: "a", Brokers: []string{"x:1"}, StateDir: "d", SessionTimeout: time.Second, HeartbeatInterval: 2 * time.Second},
	} {
		if _, err := runtime.New(b, cfg); !errors.Is(err, runtime.ErrInvalidConfig) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig", name, err)
		}
	}
}

func TestAppMissingTopic(t *testing.T) {
	c := newCluster(t)
	c.createTopic("out", 4)
	app, err := runtime.New(countTopology(), c.config(t.TempDir(), "i1"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = app.Run(ctx)
	if !errors.Is(err, runtime.ErrMissingTopic) {
		t.Fatalf("Run = %v, want ErrMissingTopic", err)
	}
	if app.State() != runtime.Error || app.Alive() {
		t.Fatalf("state %v alive %v, want ERROR and not alive", app.State(), app.Alive())
	}
}

// restoreCounter counts restored records per store, from the listener.
type restoreCounter struct {
	mu       sync.Mutex
	restored map[string]int64
	ends     int
}

func (r *restoreCounter) OnRestoreStart(string, string, string, int32, int64, int64)  {}
func (r *restoreCounter) OnBatchRestored(string, string, string, int32, int64, int64) {}
func (r *restoreCounter) OnRestoreEnd(_, store, _ string, _ int32, total int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.restored == nil {
		r.restored = map[string]int64{}
	}
	r.restored[store] += total
	r.ends++
}

// A suspended restore (the task moved mid-restore) keeps what it applied and
// resumes from there, so its records count too.
func (r *restoreCounter) OnRestoreSuspended(_, store, _ string, _ int32, total int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.restored == nil {
		r.restored = map[string]int64{}
	}
	r.restored[store] += total
}

func (r *restoreCounter) total(store string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.restored[store]
}

// checkpointedTail counts, with an independent read-committed consumer, the
// changelog records after each task's checkpoint in dir.
func checkpointedTail(t *testing.T, c *cluster, dir, app, store string) int64 {
	t.Helper()
	env := state.NewEnv(state.EnvOptions{})
	defer env.Close()
	from := map[int32]int64{}
	for p := int32(0); p < 4; p++ {
		db, err := env.Open(filepath.Join(dir, app, fmt.Sprintf("0_%d", p)))
		if err != nil {
			t.Fatal(err)
		}
		cp, ok, err := db.Checkpoint()
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			from[p] = cp.Changelogs[store].Offset
		}
		db.Close()
	}
	var n int64
	for _, r := range c.readAll(app + "-" + store + "-changelog") {
		if r.Offset >= from[r.Partition] {
			n++
		}
	}
	return n
}

func TestAppWarmRestartReplaysOnlyTheChangelogTail(t *testing.T) {
	c := newCluster(t)
	c.createTopic("in", 4)
	c.createTopic("out", 4)
	want := produceCounts(c, 0, 2000, 40)
	dir := t.TempDir()

	app, err := runtime.New(countTopology(), c.config(dir, "i1"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- app.Run(ctx) }()
	eventually(t, 30*time.Second, "first counts", equalCounts(c, want))
	// The next commit writes outputs and changelog, then "crashes" before
	// the stores and offsets are committed.
	apptest.CrashAt(app, apptest.AfterFlush)
	for k, v := range produceCounts(c, 2000, 500, 40) {
		want[k] += v
	}
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("Run returned nil after a simulated crash")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("simulated crash did not happen")
	}
	tail := checkpointedTail(t, c, dir, "count-app", "counts")
	if tail == 0 {
		t.Fatal("no changelog records after the checkpoint: the crash point was not exercised")
	}

	rc := &restoreCounter{}
	cfg := c.config(dir, "i1")
	cfg.RestoreListener = rc
	app2, err := runtime.New(countTopology(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := running(t, app2)
	// One instance owns all four tasks; RUNNING means all are restored.
	eventually(t, 30*time.Second, "restored and running", func() (bool, string) {
		return app2.State() == runtime.Running, fmt.Sprint(app2.State())
	})
	// At-least-once: the 500 records since the committed offsets are
	// processed again on top of the restored tail, so counts may exceed
	// the input, never fall short.
	eventually(t, 30*time.Second, "counts at least the input", func() (bool, string) {
		got := c.latestInt64("out")
		for k, v := range want {
			if got[k] < v {
				return false, fmt.Sprintf("key %s: %d < %d", k, got[k], v)
			}
		}
		return true, ""
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := rc.total("counts"); got != tail {
		t.Fatalf("restored %d changelog records, the changelog holds %d after the checkpoint", got, tail)
	}
	t.Logf("warm restart replayed %d changelog records (counted independently: %d)", rc.total("counts"), tail)
}

func TestAppRestartResumesFromCheckpointAheadOfCommittedOffsets(t *testing.T) {
	c := newCluster(t)
	c.createTopic("in", 4)
	c.createTopic("out", 4)
	want := produceCounts(c, 0, 2000, 40)
	dir := t.TempDir()
	app, err := runtime.New(countTopology(), c.config(dir, "i1"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- app.Run(ctx) }()
	eventually(t, 30*time.Second, "first counts", equalCounts(c, want))
	apptest.CrashAt(app, apptest.AfterStoreCommit)
	for k, v := range produceCounts(c, 2000, 500, 40) {
		want[k] += v
	}
	select {
	case <-errc:
	case <-time.After(30 * time.Second):
		t.Fatal("simulated crash did not happen")
	}
	// The group's committed offsets lag the store; a restart must not
	// apply those 500 records again.
	app2, err := runtime.New(countTopology(), c.config(dir, "i1"))
	if err != nil {
		t.Fatal(err)
	}
	stop := running(t, app2)
	for k, v := range produceCounts(c, 2500, 200, 40) {
		want[k] += v
	}
	eventually(t, 30*time.Second, "exact counts", equalCounts(c, want))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := c.latestInt64("out")
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("key %s = %d, want exactly %d (input applied twice?)", k, got[k], v)
		}
	}
}

func TestAppTwoInstancesSplitAndTakeOver(t *testing.T) {
	c := newCluster(t)
	c.createTopic("in", 4)
	c.createTopic("out", 4)
	want := produceCounts(c, 0, 4000, 40)
	// A session timeout with room for a loaded CI machine (-race, other
	// packages' tests alongside): a heartbeat delayed past it would make
	// the survivor lose its own tasks too.
	cfgFor := func(id string) runtime.Config {
		cfg := c.config(t.TempDir(), id)
		cfg.SessionTimeout = 5 * time.Second
		return cfg
	}
	a1, err := runtime.New(countTopology(), cfgFor("i1"))
	if err != nil {
		t.Fatal(err)
	}
	a2, err := runtime.New(countTopology(), cfgFor("i2"))
	if err != nil {
		t.Fatal(err)
	}
	apptest.CrashOnClose(a1)
	stop1 := running(t, a1)
	stop2 := running(t, a2)
	eventually(t, 30*time.Second, "both members own tasks", func() (bool, string) {
		info := c.broker.Cluster().GroupInfo("count-app")
		if info == nil {
			return false, "no group"
		}
		return len(info.Members) == 2 && a1.State() == runtime.Running && a2.State() == runtime.Running,
			fmt.Sprintf("%d members, states %v %v", len(info.Members), a1.State(), a2.State())
	})
	eventually(t, 30*time.Second, "counts with two instances", equalCounts(c, want))
	// Crash one: no commit, no leave. The survivor takes over after the
	// session timeout and restores the dead one's tasks.
	_ = stop1()
	for k, v := range produceCounts(c, 4000, 1000, 40) {
		want[k] += v
	}
	eventually(t, 90*time.Second, "survivor processes everything", func() (bool, string) {
		got := c.latestInt64("out")
		for k, v := range want {
			if got[k] < v {
				return false, fmt.Sprintf("key %s: %d < %d", k, got[k], v)
			}
		}
		return true, ""
	})
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
}

func TestAppWaitsForUnreachableBrokers(t *testing.T) {
	// A port with no broker yet: the app must keep retrying, not ready.
	b, err := testbroker.Start(testbroker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	addrs := b.Addrs()
	ports := b.Ports()
	b.Close()

	var logs apptest.Buffer
	cfg := runtime.Config{
		Brokers: addrs, ApplicationID: "count-app", StateDir: t.TempDir(), InstanceID: "i1",
		CommitInterval: 100 * time.Millisecond, SessionTimeout: 2 * time.Second,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	}
	app, err := runtime.New(countTopology(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := running(t, app)
	eventually(t, 20*time.Second, "a log line about waiting for brokers", func() (bool, string) {
		return strings.Contains(logs.String(), "waiting for brokers"), app.State().String()
	})
	if app.Ready() || !app.Alive() || app.State() != runtime.Rebalancing {
		t.Fatalf("during the outage: ready=%v alive=%v state=%v; want not ready, alive, REBALANCING", app.Ready(), app.Alive(), app.State())
	}
	// The broker comes up on that port: the app proceeds on its own.
	b2, err := testbroker.Start(testbroker.Options{Ports: ports})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	c := &cluster{t: t, broker: b2, cl: cl, adm: kadm.NewClient(cl)}
	c.createTopic("in", 4)
	c.createTopic("out", 4)
	want := produceCounts(c, 0, 500, 10)
	eventually(t, 30*time.Second, "counts after the brokers came up", equalCounts(c, want))
	eventually(t, 10*time.Second, "ready", func() (bool, string) { return app.Ready(), app.State().String() })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestAppCopartitionMismatch(t *testing.T) {
	c := newCluster(t)
	c.createTopic("clicks", 4)
	c.createTopic("users", 3)
	c.createTopic("out", 4)
	b := runtime.NewBuilder()
	users := runtime.TableOf(b, "users", runtime.String(), runtime.String())
	clicks := runtime.StreamOf(b, "clicks", runtime.String(), runtime.String())
	runtime.Join(clicks, users, func(_ string, c, u string) string { return u + c }).To("out")
	app, err := runtime.New(b, c.config(t.TempDir(), "i1"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = app.Run(ctx)
	if !errors.Is(err, partition.ErrNotCopartitioned) || !strings.Contains(err.Error(), "clicks=4") || !strings.Contains(err.Error(), "users=3") {
		t.Fatalf("Run = %v, want a co-partitioning error naming clicks=4 and users=3", err)
	}
}

func TestAppJoinSeesEarlierTableUpdateProducedLater(t *testing.T) {
	c := newCluster(t)
	c.createTopic("clicks", 2)
	c.createTopic("users", 2)
	c.createTopic("out", 2)
	// The stream record is produced first but is younger than the table
	// update: processing in timestamp order must apply the table first.
	c.produce("clicks", &kgo.Record{Key: []byte("u1"), Value: []byte("click"), Timestamp: time.UnixMilli(2000)})
	c.produce("users", &kgo.Record{Key: []byte("u1"), Value: []byte("alice"), Timestamp: time.UnixMilli(1000)})
	b := runtime.NewBuilder()
	users := runtime.TableOf(b, "users", runtime.String(), runtime.String(), runtime.Named("users"))
	clicks := runtime.StreamOf(b, "clicks", runtime.String(), runtime.String())
	runtime.Join(clicks, users, func(_ string, c, u string) string { return u + ":" + c }, runtime.Named("enrich")).To("out")
	app, err := runtime.New(b, c.config(t.TempDir(), "i1"))
	if err != nil {
		t.Fatal(err)
	}
	stop := running(t, app)
	eventually(t, 30*time.Second, "joined output", func() (bool, string) {
		recs := c.readAll("out")
		if len(recs) != 1 {
			return false, fmt.Sprintf("%d records", len(recs))
		}
		return string(recs[0].Value) == "alice:click" && recs[0].Timestamp.UnixMilli() == 2000,
			fmt.Sprintf("%q at %d", recs[0].Value, recs[0].Timestamp.UnixMilli())
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestAppPurgesRepartitionTopics(t *testing.T) {
	c := newCluster(t)
	c.createTopic("in", 2)
	c.createTopic("out", 2)
	b := runtime.NewBuilder()
	in := runtime.StreamOf(b, "in", runtime.String(), runtime.String())
	byValue := runtime.GroupBy(in, func(_, v string) string { return v }, runtime.Named("by-value"))
	runtime.Count(byValue, runtime.Named("value-counts")).ToStream().To("out")
	cfg := c.config(t.TempDir(), "i1")
	cfg.RepartitionPurgeInterval = time.Millisecond
	app, err := runtime.New(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := running(t, app)
	var recs []*kgo.Record
	for i := range 1000 {
		recs = append(recs, &kgo.Record{Key: []byte(strconv.Itoa(i)), Value: []byte("v" + strconv.Itoa(i%7))})
	}
	c.produce("in", recs...)
	eventually(t, 30*time.Second, "counts", func() (bool, string) {
		got := c.latestInt64("out")
		var sum int64
		for _, v := range got {
			sum += v
		}
		return len(got) == 7 && sum == 1000, fmt.Sprintf("%d keys, sum %d", len(got), sum)
	})
	topic := "count-app-by-value-repartition"
	eventually(t, 30*time.Second, "repartition topic purged", func() (bool, string) {
		starts, err := c.adm.ListStartOffsets(context.Background(), topic)
		if err != nil {
			return false, err.Error()
		}
		ends, err := c.adm.ListEndOffsets(context.Background(), topic)
		if err != nil {
			return false, err.Error()
		}
		var start, end int64
		starts.Each(func(o kadm.ListedOffset) { start += o.Offset })
		ends.Each(func(o kadm.ListedOffset) { end += o.Offset })
		// Purged up to the committed offsets, keeping each partition's last record.
		return end == 1000 && start == end-2, fmt.Sprintf("start %d end %d", start, end)
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestAppRemovesStateOfMovedTasksAfterDelay(t *testing.T) {
	c := newCluster(t)
	c.createTopic("in", 4)
	c.createTopic("out", 4)
	want := produceCounts(c, 0, 400, 20)
	dir1 := t.TempDir()
	cfg1 := c.config(dir1, "i1")
	cfg1.StateCleanupDelay = 200 * time.Millisecond
	a1, err := runtime.New(countTopology(), cfg1)
	if err != nil {
		t.Fatal(err)
	}
	stop1 := running(t, a1)
	eventually(t, 30*time.Second, "counts", equalCounts(c, want))
	taskDirs := func() []string {
		ents, _ := os.ReadDir(filepath.Join(dir1, "count-app"))
		var out []string
		for _, e := range ents {
			if e.IsDir() {
				out = append(out, e.Name())
			}
		}
		return out
	}
	if n := len(taskDirs()); n != 4 {
		t.Fatalf("%d task dirs, want 4", n)
	}
	// A second instance takes half the tasks; the first deletes their state
	// once the delay has passed.
	a2, err := runtime.New(countTopology(), c.config(t.TempDir(), "i2"))
	if err != nil {
		t.Fatal(err)
	}
	stop2 := running(t, a2)
	eventually(t, 30*time.Second, "moved tasks' state removed", func() (bool, string) {
		d := taskDirs()
		return len(d) == 2, fmt.Sprint(d)
	})
	for k, v := range produceCounts(c, 400, 400, 20) {
		want[k] += v
	}
	eventually(t, 30*time.Second, "counts after the move", equalCounts(c, want))
	if err := errors.Join(stop1(), stop2()); err != nil {
		t.Fatal(err)
	}
}

func TestAppBadRecordPolicies(t *testing.T) {
	c := newCluster(t)
	c.createTopic("in", 1)
	c.createTopic("out", 1)
	topology := func() *runtime.Builder {
		b := runtime.NewBuilder()
		in := runtime.StreamOf(b, "in", runtime.String(), runtime.Int64())
		runtime.MapValues(in, func(_ string, v int64) int64 {
			if v == 13 {
				panic("unlucky")
			}
			return v * 2
		}).To("out")
		return b
	}
	eight := func(v int64) []byte { b, _ := runtime.Int64().Serialize(v); return b }
	c.produce("in",
		&kgo.Record{Key: []byte("a"), Value: eight(1)},
		&kgo.Record{Key: []byte("b"), Value: []byte("corrupt")}, // not 8 bytes
		&kgo.Record{Key: []byte("c"), Value: eight(13)},         // panics
		&kgo.Record{Key: []byte("d"), Value: eight(2)},
	)

	t.Run("skip", func(t *testing.T) {
		cfg := c.config(t.TempDir(), "skip")
		cfg.ApplicationID = "skip-app"
		cfg.DeserializationErrors = runtime.SkipOnError
		cfg.ProcessingErrors = runtime.SkipOnError
		app, err := runtime.New(topology(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		stop := running(t, app)
		eventually(t, 30*time.Second, "good records out", func() (bool, string) {
			got := c.latestInt64("out")
			return len(got) == 2 && got["a"] == 2 && got["d"] == 4, fmt.Sprint(got)
		})
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if n := app.SkippedRecords(); n != 2 {
			t.Fatalf("skipped %d records, want 2", n)
		}
	})
	t.Run("fail", func(t *testing.T) {
		cfg := c.config(t.TempDir(), "fail")
		cfg.ApplicationID = "fail-app"
		app, err := runtime.New(topology(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err = app.Run(ctx)
		if !errors.Is(err, runtime.ErrSerde) || !strings.Contains(err.Error(), "offset 1") {
			t.Fatalf("Run = %v, want a serde error at offset 1", err)
		}
		if app.State() != runtime.Error {
			t.Fatalf("state %v, want ERROR", app.State())
		}
	})
}

// tally sums values per key in its own store and emits every key's total on
// a wall-clock punctuator.
type tally struct {
	ref   runtime.StoreRef[string, int64]
	ctx   runtime.ProcessorContext[string, int64]
	store *runtime.KVStore[string, int64]
}

func (p *tally) Init(ctx runtime.ProcessorContext[string, int64]) error {
	p.ctx = ctx
	s, err := runtime.OpenStore(ctx, p.ref)
	if err != nil {
		return err
	}
	p.store = s
	ctx.Schedule(50*time.Millisecond, runtime.WallClockTime, func(ts int64) error {
		var out []runtime.Record[string, int64]
		err := p.store.Range(nil, nil, func(k string, v int64) bool {
			out = append(out, runtime.Record[string, int64]{Key: k, Value: v, Timestamp: ts})
			return true
		})
		if err != nil {
			return err
		}
		for _, r := range out {
			if err := p.ctx.Forward(r); err != nil {
				return err
			}
		}
		return nil
	})
	return nil
}

func (p *tally) Process(r runtime.Record[string, string]) error {
	n, _, err := p.store.Get(r.Key)
	if err != nil {
		return err
	}
	return p.store.Put(r.Key, n+int64(len(r.Value)))
}

func (p *tally) Close() error { return nil }

func TestAppProcessorAPIWithStoreAndWallClockPunctuator(t *testing.T) {
	c := newCluster(t)
	c.createTopic("in", 2)
	c.createTopic("out", 2)
	b := runtime.NewBuilder()
	ref := runtime.AddStore(b, "tally", runtime.String(), runtime.Int64())
	in := runtime.StreamOf(b, "in", runtime.String(), runtime.String())
	runtime.Process(in, func() runtime.Processor[string, string, string, int64] { return &tally{ref: ref} },
		[]string{ref.Name()}, runtime.Named("tally-proc")).To("out")
	app, err := runtime.New(b, c.config(t.TempDir(), "i1"))
	if err != nil {
		t.Fatal(err)
	}
	stop := running(t, app)
	c.produce("in", &kgo.Record{Key: []byte("a"), Value: []byte("xx")}, &kgo.Record{Key: []byte("b"), Value: []byte("yyy")},
		&kgo.Record{Key: []byte("a"), Value: []byte("zzzz")})
	eventually(t, 30*time.Second, "punctuated totals", func() (bool, string) {
		got := c.latestInt64("out")
		return got["a"] == 6 && got["b"] == 3, fmt.Sprint(got)
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func eosConfig(c *cluster, dir, instance string) runtime.Config {
	cfg := c.config(dir, instance)
	cfg.Guarantee = runtime.ExactlyOnce
	cfg.TransactionTimeout = 5 * time.Second
	return cfg
}

func TestAppExactlyOnceCrashesNeverDoubleCount(t *testing.T) {
	c := newCluster(t)
	c.createTopic("in", 4)
	c.createTopic("out", 4)
	want := produceCounts(c, 0, 2000, 40)
	dir := t.TempDir()
	start := func() (*runtime.App, chan error, context.CancelFunc) {
		app, err := runtime.New(countTopology(), eosConfig(c, dir, "i1"))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- app.Run(ctx) }()
		return app, errc, cancel
	}
	awaitCrash := func(errc chan error) {
		t.Helper()
		select {
		case err := <-errc:
			if err == nil {
				t.Fatal("Run returned nil after a simulated crash")
			}
		case <-time.After(30 * time.Second):
			t.Fatal("simulated crash did not happen")
		}
	}

	// 1. Crash after the transaction committed, before the stores applied
	// it: the restart must replay the changelog tail, not the input.
	app, errc, cancel := start()
	eventually(t, 30*time.Second, "first counts", equalCounts(c, want))
	apptest.CrashAt(app, apptest.AfterFlush)
	for k, v := range produceCounts(c, 2000, 500, 40) {
		want[k] += v
	}
	awaitCrash(errc)
	cancel()
	tail := checkpointedTail(t, c, dir, "count-app", "counts")
	if tail == 0 {
		t.Fatal("no committed changelog records after the checkpoint: the crash point was not exercised")
	}

	// 2. Restart, then crash abruptly mid-stream (nothing committed, the
	// open transaction is left to be fenced).
	rc := &restoreCounter{}
	app2, err := runtime.New(countTopology(), func() runtime.Config {
		cfg := eosConfig(c, dir, "i1")
		cfg.RestoreListener = rc
		return cfg
	}())
	if err != nil {
		t.Fatal(err)
	}
	apptest.CrashOnClose(app2)
	ctx2, cancel2 := context.WithCancel(context.Background())
	errc2 := make(chan error, 1)
	go func() { errc2 <- app2.Run(ctx2) }()
	eventually(t, 30*time.Second, "running after the first crash", func() (bool, string) {
		return app2.State() == runtime.Running, app2.State().String()
	})
	if got := rc.total("counts"); got != tail {
		t.Fatalf("restored %d changelog records, %d committed after the checkpoint", got, tail)
	}
	for k, v := range produceCounts(c, 2500, 500, 40) {
		want[k] += v
	}
	cancel2()
	<-errc2

	// 3. A last clean run: counts are exact, never double.
	app3, err := runtime.New(countTopology(), eosConfig(c, dir, "i1"))
	if err != nil {
		t.Fatal(err)
	}
	stop := running(t, app3)
	for k, v := range produceCounts(c, 3000, 300, 40) {
		want[k] += v
	}
	eventually(t, 60*time.Second, "exact counts", equalCounts(c, want))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := c.latestInt64("out")
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("key %s = %d, want exactly %d", k, got[k], v)
		}
	}
	t.Logf("exactly-once: %d changelog records replayed after the crash between commit and store apply", tail)
}

func TestAppExactlyOnceRebalanceAbortsAndKeepsCountsExact(t *testing.T) {
	c := newCluster(t)
	c.createTopic("in", 4)
	c.createTopic("out", 4)
	want := produceCounts(c, 0, 3000, 40)
	a1, err := runtime.New(countTopology(), eosConfig(c, t.TempDir(), "i1"))
	if err != nil {
		t.Fatal(err)
	}
	stop1 := running(t, a1)
	eventually(t, 30*time.Second, "counts", equalCounts(c, want))
	// A second instance joins while input flows: tasks move, open
	// transactions abort, and nothing is counted twice.
	a2, err := runtime.New(countTopology(), eosConfig(c, t.TempDir(), "i2"))
	if err != nil {
		t.Fatal(err)
	}
	stop2 := running(t, a2)
	for i := range 10 {
		for k, v := range produceCounts(c, 3000+i*200, 200, 40) {
			want[k] += v
		}
	}
	eventually(t, 60*time.Second, "exact counts after the rebalance", equalCounts(c, want))
	if err := errors.Join(stop1(), stop2()); err != nil {
		t.Fatal(err)
	}
	got := c.latestInt64("out")
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("key %s = %d, want exactly %d", k, got[k], v)
		}
	}
}

func TestAppJoinWaitsForTablePartitionsOnOtherBrokers(t *testing.T) {
	// Three brokers: the table's and the stream's partitions are fetched
	// from different brokers, so the stream's data may arrive first. The
	// task must wait for the table partition it knows is behind.
	c := newClusterOf(t, 3)
	c.createTopic("clicks", 3)
	c.createTopic("users", 3)
	c.createTopic("out", 3)
	var users, clicks []*kgo.Record
	for i := range 300 {
		k := []byte("u" + strconv.Itoa(i))
		users = append(users, &kgo.Record{Key: k, Value: []byte("name" + strconv.Itoa(i)), Timestamp: time.UnixMilli(1000 + int64(i))})
		clicks = append(clicks, &kgo.Record{Key: k, Value: []byte("click"), Timestamp: time.UnixMilli(5000 + int64(i))})
	}
	c.produce("users", users...)
	c.produce("clicks", clicks...)
	b := runtime.NewBuilder()
	tbl := runtime.TableOf(b, "users", runtime.String(), runtime.String(), runtime.Named("users"))
	st := runtime.StreamOf(b, "clicks", runtime.String(), runtime.String())
	runtime.Join(st, tbl, func(_ string, c, u string) string { return u + ":" + c }, runtime.Named("enrich")).To("out")
	app, err := runtime.New(b, c.config(t.TempDir(), "i1"))
	if err != nil {
		t.Fatal(err)
	}
	stop := running(t, app)
	eventually(t, 30*time.Second, "all 300 clicks joined", func() (bool, string) {
		n := len(c.readAll("out"))
		return n == 300, fmt.Sprintf("%d joined", n)
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestAppCloseDuringOutageGivesUpAfterCloseTimeout(t *testing.T) {
	c := newCluster(t)
	c.createTopic("in", 2)
	c.createTopic("out", 2)
	cfg := c.config(t.TempDir(), "i1")
	cfg.CommitInterval = time.Hour // keep the work pending
	cfg.CloseTimeout = 2 * time.Second
	app, err := runtime.New(countTopology(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- app.Run(ctx) }()
	produceCounts(c, 0, 100, 5)
	eventually(t, 30*time.Second, "outputs produced", func() (bool, string) {
		n := len(c.readAll("out"))
		return n == 100, fmt.Sprint(n)
	})
	// Nothing is committed yet (the counts wait in the store batch, their
	// changelog records unsent); the brokers go away; Close must not hang.
	c.broker.Stop()
	start := time.Now()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, runtime.ErrCloseTimeout) {
			t.Fatalf("Run = %v, want ErrCloseTimeout", err)
		}
		if d := time.Since(start); d > 15*time.Second {
			t.Fatalf("Close took %v with CloseTimeout 2s", d)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return during an outage")
	}
}

func TestAppDeadLetterTopic(t *testing.T) {
	c := newCluster(t)
	c.createTopic("in", 1)
	// A small output limit: one input maps to an oversized output.
	resp, err := c.adm.CreateTopic(context.Background(), 2, 1, map[string]*string{"max.message.bytes": ptr("2000")}, "out")
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatal(err)
	}
	b := runtime.NewBuilder()
	in := runtime.StreamOf(b, "in", runtime.String(), runtime.Int64())
	runtime.MapValuesE(in, func(_ string, v int64) (string, error) {
		switch v {
		case 7:
			panic("unlucky")
		case 13:
			return "", errors.New("thirteen is not allowed")
		case 99:
			return strings.Repeat("x", 5000), nil // larger than out's max.message.bytes
		}
		return strconv.FormatInt(v*2, 10), nil
	}, runtime.Named("double")).To("out")
	eight := func(v int64) []byte { b, _ := runtime.Int64().Serialize(v); return b }
	hdr := []kgo.RecordHeader{{Key: "correlation-id", Value: []byte("c-1")}}
	c.produce("in",
		&kgo.Record{Key: []byte("a"), Value: eight(1)},
		&kgo.Record{Key: []byte("b"), Value: []byte("corrupt"), Headers: hdr},
		&kgo.Record{Key: []byte("c"), Value: eight(13)},
		&kgo.Record{Key: []byte("d"), Value: eight(99)},
		&kgo.Record{Key: []byte("e"), Value: eight(2)},
		&kgo.Record{Key: []byte("f"), Value: eight(7)},
	)
	cfg := c.config(t.TempDir(), "i1")
	cfg.DeserializationErrors = runtime.DeadLetterOnError
	cfg.ProcessingErrors = runtime.DeadLetterOnError
	cfg.ProductionErrors = runtime.DeadLetterOnError
	app, err := runtime.New(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := running(t, app)
	eventually(t, 30*time.Second, "good records out, bad ones dead-lettered", func() (bool, string) {
		out := c.readAll("out")
		dlq := c.readAll("count-app-dlq")
		return len(out) == 2 && len(dlq) == 4, fmt.Sprintf("%d out, %d dead-lettered", len(out), len(dlq))
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range c.readAll("out") {
		got[string(r.Key)] = string(r.Value)
	}
	if got["a"] != "2" || got["e"] != "4" {
		t.Fatalf("outputs %v, want a=2 e=4", got)
	}
	byKey := map[string]*kgo.Record{}
	for _, r := range c.readAll("count-app-dlq") {
		byKey[string(r.Key)] = r
	}
	header := func(r *kgo.Record, k string) string {
		for _, h := range r.Headers {
			if h.Key == k {
				return string(h.Value)
			}
		}
		return ""
	}
	for key, want := range map[string]struct{ kind, offset, msg string }{
		"b": {"deserialization", "1", "serde"},
		"c": {"processing", "2", "thirteen"},
		"d": {"production", "3", "max.message.bytes"},
		"f": {"processing", "5", "unlucky"},
	} {
		r := byKey[key]
		if r == nil {
			t.Fatalf("no dead-letter record for %s", key)
		}
		if header(r, "__choreo.errors.kind") != want.kind || header(r, "__streams.errors.offset") != want.offset ||
			header(r, "__streams.errors.topic") != "in" || header(r, "__streams.errors.partition") == "" ||
			!strings.Contains(header(r, "__streams.errors.message"), want.msg) || header(r, "__streams.errors.exception") == "" {
			t.Errorf("dead letter %s: headers %v", key, r.Headers)
		}
	}
	if string(byKey["b"].Value) != "corrupt" || header(byKey["b"], "correlation-id") != "c-1" {
		t.Errorf("dead letter b keeps the original bytes and headers: %q %v", byKey["b"].Value, byKey["b"].Headers)
	}
	if !strings.Contains(header(byKey["f"], "__streams.errors.stacktrace"), "goroutine") {
		t.Errorf("panic dead letter without a stack trace")
	}
	if header(byKey["c"], "__choreo.errors.processor") != "double" {
		t.Errorf("processor header = %q, want double", header(byKey["c"], "__choreo.errors.processor"))
	}
	if header(byKey["d"], "__choreo.errors.output.topic") != "out" {
		t.Errorf("production dead letter without its output topic")
	}
	if n := app.DeadLetteredRecords(); n != 4 {
		t.Errorf("DeadLetteredRecords = %d, want 4", n)
	}
}

func ptr[T any](v T) *T { return &v }

// TestAppCommitsEarlyWhenPendingWritesExceedCommitMaxBytes: with a commit
// interval far beyond the test, a small CommitMaxBytes alone makes the app
// commit as it goes (changelog records written, input offsets committed),
// and the counts stay exact.
func TestAppCommitsEarlyWhenPendingWritesExceedCommitMaxBytes(t *testing.T) {
	c := newCluster(t)
	c.createTopic("in", 4)
	c.createTopic("out", 4)
	const keys = 4000
	want := produceCounts(c, 0, keys, keys) // every key once: one pending write each
	cfg := c.config(t.TempDir(), "i1")
	cfg.CommitInterval = time.Hour
	cfg.CommitMaxBytes = 32 << 10 // about 200 pending keys
	app, err := runtime.New(countTopology(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := running(t, app)
	eventually(t, 30*time.Second, "counts", equalCounts(c, want))
	// Every commit leaves less than CommitMaxBytes pending, so nearly all
	// the input is committed already, an hour before the interval ends.
	committedInput := func() int64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		committed, err := c.adm.FetchOffsets(ctx, "count-app")
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		committed.Each(func(o kadm.OffsetResponse) {
			if o.Topic == "in" {
				n += o.At
			}
		})
		return n
	}
	eventually(t, 30*time.Second, "input offsets committed early", func() (bool, string) {
		n := committedInput()
		return n >= keys*3/4, fmt.Sprintf("%d of %d input records committed", n, keys)
	})
	if n := len(c.readAll("count-app-counts-changelog")); n < keys*3/4 {
		t.Fatalf("%d changelog records before the commit interval, want at least %d", n, keys*3/4)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	// The final commit wrote the rest: one changelog record per key, with its count.
	cl := map[string]int64{}
	n := 0
	for _, r := range c.readAll("count-app-counts-changelog") {
		v, err := runtime.Int64().Deserialize(r.Value[8:])
		if err != nil {
			t.Fatal(err)
		}
		cl[string(r.Key)] = v
		n++
	}
	if n != keys {
		t.Errorf("%d changelog records, want one per key (%d)", n, keys)
	}
	for k, v := range want {
		if cl[k] != v {
			t.Fatalf("changelog %s = %d, want %d", k, cl[k], v)
		}
	}
	if got := committedInput(); got != keys {
		t.Fatalf("%d input records committed after Close, want %d", got, keys)
	}
}
