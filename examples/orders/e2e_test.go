package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/examples/orders/orders"
	"github.com/choreo-go/choreo/internal/apptest"
	"github.com/choreo-go/choreo/internal/graph"
	"github.com/choreo-go/choreo/internal/testbroker"
	"github.com/choreo-go/choreo/runtime"
)

// logEnv names the environment variable that turns the apps' logs on:
// CHOREO_TEST_LOG=1 go test ./examples/orders writes them to stderr.
const logEnv = "CHOREO_TEST_LOG"

// testLogger is the apps' logger: nil (discard) unless logEnv is set.
func testLogger(instance string) *slog.Logger {
	if os.Getenv(logEnv) == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("instance", instance)
}

// testContext ends 10 s before the test's deadline, or after d.
func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	if dl, ok := t.Deadline(); ok {
		ctx, cancel = context.WithDeadline(context.Background(), dl.Add(-10*time.Second))
	}
	t.Cleanup(cancel)
	return ctx
}

// startBroker starts an embedded broker with the scenario's topics (6
// partitions) and returns it with a plain client on it.
func startBroker(ctx context.Context, t *testing.T) (*testbroker.Broker, *kgo.Client, *kadm.Client) {
	t.Helper()
	br, err := testbroker.Start(testbroker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(br.Close)
	cl, err := kgo.NewClient(append(orders.ProducerOpts(), kgo.SeedBrokers(br.Addrs()...))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	if err := orders.CreateTopics(ctx, adm, 6); err != nil {
		t.Fatal(err)
	}
	return br, cl, adm
}

// outputRecords is the number of records in order-portfolio (0 on error).
func outputRecords(ctx context.Context, adm *kadm.Client) int64 {
	ends, err := adm.ListEndOffsets(ctx, orders.TopicPortfolio)
	if err != nil {
		return 0
	}
	var out int64
	ends.Each(func(o kadm.ListedOffset) { out += o.Offset })
	return out
}

// waitFor polls cond every 50 ms until it holds; it fails the test after
// timeout (or when ctx ends) with what and cond's last explanation.
func waitFor(ctx context.Context, t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("waiting for %s: gave up after %v: %s", what, timeout, why)
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

// checkTables compares the final contents of the portfolio and lines
// tables, read from their changelog topics, with the model.
func checkTables(ctx context.Context, t *testing.T, cl *kgo.Client, in orders.Inputs) {
	t.Helper()
	portfolio, lines, err := orders.ReadTables(ctx, cl, orders.AppID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := orders.Diff(orders.Model(in), portfolio); len(diff) > 0 {
		t.Errorf("portfolio table (changelog) differs from the model for %d customers:\n%v", len(diff), strings.Join(diff[:min(10, len(diff))], "\n"))
	}
	if diff := orders.DiffLines(orders.EvaluateLines(in), lines); len(diff) > 0 {
		t.Errorf("lines table (changelog) differs from the model for %d lines:\n%v", len(diff), strings.Join(diff[:min(10, len(diff))], "\n"))
	}
}

// TestEndToEnd runs the scenario on an embedded broker: 40,000 lines
// (100,000 events) with product price changes and a product deleted
// mid-stream, produced while the app runs; the app is stopped once
// mid-way and started again on the same state; at the end the
// order-portfolio topic and the final contents of the portfolio and lines
// tables (read from their changelog topics) must equal the model computed
// from the input topics.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	ctx := testContext(t, 280*time.Second)
	br, cl, adm := startBroker(ctx, t)

	gen := orders.DefaultOptions(7)
	gen.Lines = 40000
	gen.PriceChanges, gen.Deletes = 5, 1
	if gen.Events() < 100000 {
		t.Fatalf("load has %d events", gen.Events())
	}

	stateDir := t.TempDir()
	start := func() (*runtime.App, chan error) {
		b := runtime.NewBuilder()
		orders.Topology(b)
		app, err := runtime.New(b, runtime.Config{
			Brokers:        br.Addrs(),
			ApplicationID:  orders.AppID,
			StateDir:       stateDir,
			CommitInterval: 200 * time.Millisecond,
			Logger:         testLogger("e2e"),
		})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- app.Run(ctx) }()
		return app, done
	}
	stop := func(app *runtime.App, done chan error) {
		t.Helper()
		app.Close()
		if err := <-done; err != nil {
			t.Fatal("app:", err)
		}
	}

	app, done := start()
	produced := make(chan error, 1)
	go func() { produced <- orders.Produce(ctx, cl, gen, nil) }()

	// Stop the app once a good part of the output is out, and start it
	// again on the same state directory.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for restarted := false; !restarted; {
		select {
		case err := <-done:
			t.Fatal("app stopped:", err)
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-tick.C:
			if outputRecords(ctx, adm) >= 20000 {
				stop(app, done)
				app, done = start()
				restarted = true
			}
		}
	}
	if err := <-produced; err != nil {
		t.Fatal("produce:", err)
	}
	if err := orders.WaitProcessed(ctx, cl, orders.AppID, orders.SourceTopics(orders.AppID)); err != nil {
		t.Fatal(err)
	}
	checkMetrics(ctx, t, app)
	stop(app, done)

	in, err := orders.ReadInputs(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	want, st := orders.Evaluate(in)
	if st.Events != gen.Events() || st.Dropped == 0 || in.Undecodable != 0 {
		t.Fatalf("inputs: %+v, %d undecodable", st, in.Undecodable)
	}
	got, err := orders.ReadPortfolioTopic(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if diff := orders.Diff(want, got); len(diff) > 0 {
		t.Errorf("order-portfolio differs from the model for %d of %d customers:\n%v", len(diff), len(want), diff[:min(10, len(diff))])
	}
	checkTables(ctx, t, cl, in)
	if !t.Failed() {
		t.Logf("%d events, %d dropped by the join, %d lines, %d customers: order-portfolio and the portfolio and lines tables equal the model",
			st.Events, st.Dropped, st.Lines, len(want))
	}
}

// checkMetrics scrapes /metrics from the app's HTTP handler (what the
// program serves on -http) once everything is processed: every input
// partition of every task, repartition topics included, has a lag of 0, and
// the records the app processed and produced are counted.
func checkMetrics(ctx context.Context, t *testing.T, app *runtime.App) {
	t.Helper()
	srv := httptest.NewServer(app.Handler())
	defer srv.Close()
	waitFor(ctx, t, 30*time.Second, "lag 0 in /metrics", func() (bool, string) {
		resp, err := http.Get(srv.URL + "/metrics")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		var p expfmt.TextParser
		fams, err := p.TextToMetricFamilies(resp.Body)
		if err != nil {
			return false, err.Error()
		}
		total := func(name, label, value string) (sum float64, n int) {
			for _, m := range fams[name].GetMetric() {
				for _, l := range m.GetLabel() {
					if label == "" || l.GetName() == label && l.GetValue() == value {
						sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
						n++
						break
					}
				}
			}
			return sum, n
		}
		lag, parts := total("choreo_consumer_lag_records", "", "")
		processed, _ := total("choreo_records_processed_total", "", "")
		out, _ := total("choreo_records_produced_total", "topic", orders.TopicPortfolio)
		// 6 partitions of order-lines, products and the three repartition topics.
		why := fmt.Sprintf("lag %v over %d partitions, %v processed, %v produced to %s", lag, parts, processed, out, orders.TopicPortfolio)
		return lag == 0 && parts == 5*6 && processed > 0 && out > 0, why
	})
}

// restoreCounter is a runtime.RestoreListener that counts restored
// records; safe for concurrent use.
type restoreCounter struct {
	stores   atomic.Int64 // restores started
	restored atomic.Int64 // records: totals of ended and suspended restores
}

func (c *restoreCounter) OnRestoreStart(_, _, _ string, _ int32, _, _ int64)  { c.stores.Add(1) }
func (c *restoreCounter) OnBatchRestored(_, _, _ string, _ int32, _, _ int64) {}
func (c *restoreCounter) OnRestoreEnd(_, _, _ string, _ int32, total int64)   { c.restored.Add(total) }
func (c *restoreCounter) OnRestoreSuspended(_, _, _ string, _ int32, total int64) {
	c.restored.Add(total)
}

// instance is one app of a group, with its own Run context.
type instance struct {
	id       string
	app      *runtime.App
	cancel   context.CancelFunc
	done     chan struct{} // closed when Run returned
	err      error         // what Run returned; read after done
	restores restoreCounter
}

// TestTwoInstancesCrashAndTakeOver: two instances of the app in one group
// split the tasks while 24,000 lines (60,000 events) are produced; once
// both run and output flows, instance "a" crashes (no commit, no leave
// group, as kill -9); "b" takes its tasks over after the session timeout,
// restores their stores from the changelogs and processes the rest. Nothing
// is lost: the lines table holds every line of the model at its highest
// seq. Under at-least-once the portfolio may count input that "a"
// processed but did not commit twice, so its difference from the model is
// only reported.
func TestTwoInstancesCrashAndTakeOver(t *testing.T) {
	twoInstances(t, true)
}

// TestTwoInstancesCleanHandOver is the same run with "a" stopped cleanly
// (commit, leave the group): "b" takes over at once, and the portfolio
// (table and topic) and the lines table equal the model exactly.
func TestTwoInstancesCleanHandOver(t *testing.T) {
	twoInstances(t, false)
}

func twoInstances(t *testing.T, crash bool) {
	if testing.Short() {
		t.Skip("long")
	}
	ctx := testContext(t, 120*time.Second)
	br, cl, adm := startBroker(ctx, t)

	gen := orders.DefaultOptions(23)
	gen.Lines = 24000
	gen.PriceChanges, gen.Deletes = 3, 1
	// About 6 s of input: the stop and the takeover happen while it flows.
	gen.Rate = 10000

	start := func(id string) *instance {
		in := &instance{id: id, done: make(chan struct{})}
		b := runtime.NewBuilder()
		orders.Topology(b)
		app, err := runtime.New(b, runtime.Config{
			Brokers:         br.Addrs(),
			ApplicationID:   orders.AppID,
			InstanceID:      id,
			StateDir:        t.TempDir(),
			SessionTimeout:  2 * time.Second,
			CommitInterval:  200 * time.Millisecond,
			Logger:          testLogger(id),
			RestoreListener: &in.restores,
		})
		if err != nil {
			t.Fatal(err)
		}
		in.app = app
		var runCtx context.Context
		runCtx, in.cancel = context.WithCancel(ctx)
		go func() {
			in.err = app.Run(runCtx)
			close(in.done)
		}()
		return in
	}
	a, b := start("a"), start("b")
	defer func() { // on failure: stop what still runs
		for _, in := range []*instance{a, b} {
			in.cancel()
			<-in.done
		}
	}()

	var produced atomic.Int64
	produceDone := make(chan error, 1)
	go func() { produceDone <- orders.Produce(ctx, cl, gen, func(n int) { produced.Store(int64(n)) }) }()

	// The source topics of the sub-topologies with stores: "a" must own
	// some of their partitions, so that "b" has stores to restore.
	stateful := []string{
		orders.TopicProducts,
		graph.Repartition(orders.AppID, orders.NameLinesByLine),
		graph.Repartition(orders.AppID, orders.NameLinesByCustomer),
	}
	members := func() (*memberSet, string) {
		info := br.Cluster().GroupInfo(orders.AppID)
		if info == nil {
			return nil, "no group yet"
		}
		ms := &memberSet{state: info.State, assigned: make(map[string]map[string][]int32)}
		for _, m := range info.Members {
			id := "?"
			if m.InstanceID != nil {
				id = *m.InstanceID
			}
			ms.assigned[id] = m.Assignment
		}
		return ms, ms.String()
	}
	// The changelog records in the partitions of the stateful tasks "a"
	// owns: only the owner of a task writes its changelog partition.
	storeSource := map[string]string{
		orders.NameProducts:  orders.TopicProducts,
		orders.NameLines:     graph.Repartition(orders.AppID, orders.NameLinesByLine),
		orders.NamePortfolio: graph.Repartition(orders.AppID, orders.NameLinesByCustomer),
	}
	changelogOf := func(ms *memberSet, id string) int64 {
		var n int64
		for store, source := range storeSource {
			topic := orders.ChangelogTopic(orders.AppID, store)
			ends, err := adm.ListEndOffsets(ctx, topic)
			if err != nil || ends.Error() != nil {
				continue // not logged, or not there yet
			}
			for _, p := range ms.assigned[id][source] {
				if o, ok := ends.Lookup(topic, p); ok {
					n += o.Offset
				}
			}
		}
		return n
	}
	// Both run, each owns stateful tasks, and output flows; "a" has written
	// changelog records since it got its current tasks (the tasks may have
	// been "b"'s for a moment first, which left "b" a warm copy of their
	// state up to that point: "b" must then restore what "a" added).
	var (
		outAtStop      int64
		aAssignment    string
		aBase, aTotal  int64
		msBefore       *memberSet
		before         string
		restoredBefore int64
	)
	waitFor(ctx, t, 30*time.Second, "two running instances sharing the stateful tasks, with output, and changelog records written by a", func() (bool, string) {
		ms, why := members()
		if ms == nil {
			return false, why
		}
		why = fmt.Sprintf("group %s; states a=%v b=%v; %d output records", why, a.app.State(), b.app.State(), outputRecords(ctx, adm))
		if len(ms.assigned) != 2 || ms.state != "Stable" || a.app.State() != runtime.Running || b.app.State() != runtime.Running {
			aAssignment = ""
			return false, why
		}
		for _, id := range []string{"a", "b"} {
			if !ms.owns(id, stateful...) {
				aAssignment = ""
				return false, why
			}
		}
		if as := fmt.Sprint(ms.assigned["a"]); as != aAssignment {
			aAssignment, aBase = as, changelogOf(ms, "a")
			return false, why + "; a has new tasks"
		}
		aTotal = changelogOf(ms, "a")
		outAtStop = outputRecords(ctx, adm)
		why += fmt.Sprintf("; a wrote %d changelog records", aTotal-aBase)
		msBefore, before = ms, ms.String()
		restoredBefore = b.restores.restored.Load()
		return outAtStop >= 2000 && aTotal-aBase >= 500, why
	})
	producedAtStop := produced.Load()

	// Stop "a": a crash abandons its work without committing or leaving
	// the group; a clean stop commits and leaves.
	how := "stopped cleanly"
	if crash {
		how = "crashed"
		apptest.CrashOnClose(a.app)
	}
	a.cancel()
	select {
	case <-a.done:
		if !crash && a.err != nil {
			t.Fatal("instance a:", a.err)
		}
		t.Logf("instance a %s: Run returned %v", how, a.err)
		if crash {
			// Final: "b" cannot write these partitions before the session
			// of "a" timed out.
			aTotal = changelogOf(msBefore, "a")
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("instance a did not return from Run after it %s", how)
	}
	stoppedAt := time.Now()

	// "b" alone owns every partition: at once after a clean stop, after the
	// session timeout of "a" after a crash.
	total := 0
	for _, topic := range orders.SourceTopics(orders.AppID) {
		total += len(partitionsOf(ctx, t, adm, topic))
	}
	waitFor(ctx, t, 30*time.Second, "b to take over every task", func() (bool, string) {
		ms, why := members()
		if ms == nil {
			return false, why
		}
		why = fmt.Sprintf("group %s; state b=%v", why, b.app.State())
		return len(ms.assigned) == 1 && ms.count("b") == total && b.app.State() == runtime.Running, why
	})
	takeover := time.Since(stoppedAt)

	if err := <-produceDone; err != nil {
		t.Fatal("produce:", err)
	}
	if err := orders.WaitProcessed(ctx, cl, orders.AppID, orders.SourceTopics(orders.AppID)); err != nil {
		t.Fatal(err)
	}
	b.cancel()
	<-b.done
	if b.err != nil {
		t.Fatal("instance b:", b.err)
	}

	in, err := orders.ReadInputs(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	want, st := orders.Evaluate(in)
	if st.Events != gen.Events() || in.Undecodable != 0 {
		t.Fatalf("inputs: %+v, %d undecodable; want %d events", st, in.Undecodable, gen.Events())
	}
	restored := b.restores.restored.Load()
	t.Logf("%d events, %d dropped by the join, %d lines, %d customers; a %s after %d output records, %d of %d events produced; group before: %s",
		st.Events, st.Dropped, st.Lines, len(want), how, outAtStop, producedAtStop, gen.Events(), before)
	t.Logf("b owned every task %v later; b restored %d changelog records in %d store restores, %d of them after a stopped (a's changelog partitions: %d records, %d written by a)",
		takeover.Round(time.Millisecond), restored, b.restores.stores.Load(), restored-restoredBefore, aTotal, aTotal-aBase)

	// Nothing lost: every line at its highest seq, with its price.
	portfolio, lines, err := orders.ReadTables(ctx, cl, orders.AppID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := orders.DiffLines(orders.EvaluateLines(in), lines); len(diff) > 0 {
		t.Errorf("lines table (changelog) differs from the model for %d of %d lines:\n%v", len(diff), st.Lines, strings.Join(diff[:min(10, len(diff))], "\n"))
	}
	// "b" replays at least what "a" wrote (all of the partitions if it
	// had no warm copy of a task) and, after a crash, at most all of them.
	// (After a clean stop "b" may write them before the count above.)
	if got := restored - restoredBefore; got < aTotal-aBase || crash && got > aTotal {
		t.Errorf("b restored %d changelog records after a stopped; want between the %d a wrote and the %d in a's partitions", got, aTotal-aBase, aTotal)
	}
	topic, err := orders.ReadPortfolioTopic(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	tableDiff, topicDiff := orders.Diff(want, portfolio), orders.Diff(want, topic)
	if crash {
		// At-least-once: input "a" processed but did not commit is
		// processed again by "b", and the portfolio may count it twice.
		t.Logf("after the crash (at-least-once), customers differing from the model: %d of %d in the portfolio table, %d in order-portfolio",
			len(tableDiff), len(want), len(topicDiff))
		return
	}
	if len(tableDiff) > 0 {
		t.Errorf("portfolio table (changelog) differs from the model for %d of %d customers:\n%v", len(tableDiff), len(want), strings.Join(tableDiff[:min(10, len(tableDiff))], "\n"))
	}
	if len(topicDiff) > 0 {
		t.Errorf("order-portfolio differs from the model for %d of %d customers:\n%v", len(topicDiff), len(want), strings.Join(topicDiff[:min(10, len(topicDiff))], "\n"))
	}
}

// memberSet is the group's membership: assignment by instance id.
type memberSet struct {
	state    string
	assigned map[string]map[string][]int32
}

// owns reports whether instance id owns a partition of each topic.
func (m *memberSet) owns(id string, topics ...string) bool {
	for _, t := range topics {
		if len(m.assigned[id][t]) == 0 {
			return false
		}
	}
	return true
}

// count is the number of partitions instance id owns.
func (m *memberSet) count(id string) int {
	n := 0
	for _, ps := range m.assigned[id] {
		n += len(ps)
	}
	return n
}

func (m *memberSet) String() string {
	ids := make([]string, 0, len(m.assigned))
	for id := range m.assigned {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var b strings.Builder
	fmt.Fprintf(&b, "%s:", m.state)
	for _, id := range ids {
		fmt.Fprintf(&b, " %s=%d partitions", id, m.count(id))
	}
	return b.String()
}

// partitionsOf lists the partitions of topic.
func partitionsOf(ctx context.Context, t *testing.T, adm *kadm.Client, topic string) []int32 {
	t.Helper()
	td, err := adm.ListTopics(ctx, topic)
	if err == nil {
		err = td.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	return td[topic].Partitions.Numbers()
}
