//go:build unix

package crashtest

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/choreo-go/choreo/examples/orders/orders"
	"github.com/choreo-go/choreo/internal/testbroker"
)

var (
	flagLong    = flag.Bool("crash.long", false, "long crash run: ≥ 20 kills and ≥ 200,000 input events per combination")
	flagKills   = flag.Int("crash.kills", 0, "kills per combination (0: 5 by default, 3 under -race, 20 with -crash.long)")
	flagEvents  = flag.Int("crash.events", 0, "input events per combination (0: 20,000 by default, 6,000 under -race, 200,000 with -crash.long)")
	flagSeed    = flag.Uint64("crash.seed", 0, "seed of the kill schedule (0: from the clock; printed)")
	flagLog     = flag.String("crash.log", "info", "the child's slog level (stderr, captured in a file in the test's temp dir; empty: none)")
	flagSession = flag.Duration("crash.session-timeout", 2*time.Second, "the child's group session timeout")
)

// sizes returns the kills and input events of one combination.
func sizes() (kills, events int) {
	switch {
	case *flagLong:
		kills, events = 20, 200_000
	case raceEnabled:
		kills, events = 3, 6_000
	default:
		kills, events = 5, 20_000
	}
	if *flagKills > 0 {
		kills = *flagKills
	}
	if *flagEvents > 0 {
		events = *flagEvents
	}
	return kills, events
}

// testContext ends 20 s before the test's deadline.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	if dl, ok := t.Deadline(); ok {
		ctx, cancel = context.WithDeadline(context.Background(), dl.Add(-20*time.Second))
	}
	t.Cleanup(cancel)
	return ctx
}

// env is a broker in the test process (it outlives every child) with a
// plain client, and what it takes to start children against it.
type env struct {
	t        *testing.T
	bin      string
	brokers  []string
	cl       *kgo.Client
	adm      *kadm.Client // on a client of its own, with fresh metadata
	topo     string       // count | orders
	stores   []string     // the logged stores
	guar     string       // exactly-once | at-least-once
	app      string
	stateDir string
	logPath  string
	instance string
	starts   int
}

func newEnv(ctx context.Context, t *testing.T, topo, guarantee string) *env {
	t.Helper()
	bin := childBinary(t)
	br, err := testbroker.Start(testbroker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(br.Close)
	cl, err := kgo.NewClient(append(orders.ProducerOpts(), kgo.SeedBrokers(br.Addrs()...), kgo.ProducerLinger(2*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	// The producer's client serves "all topics" metadata from a cache its
	// own refreshes keep fresh without the topics the child creates: the
	// admin client is a separate one with a short metadata age.
	admCl, err := kgo.NewClient(kgo.SeedBrokers(br.Addrs()...), kgo.MetadataMinAge(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admCl.Close)
	stores, err := changelogStores(topo)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{
		t: t, bin: bin, brokers: br.Addrs(), cl: cl, adm: kadm.NewClient(admCl), stores: stores,
		topo: topo, guar: guarantee,
		stateDir: filepath.Join(t.TempDir(), "state"),
		logPath:  filepath.Join(t.TempDir(), "child.log"),
		instance: "crash-" + topo + "-1",
	}
	switch topo {
	case "count":
		e.app = countApp
		err = createTopics(ctx, e.adm, 6, countIn, countOut)
	case "orders":
		e.app = orders.AppID
		err = orders.CreateTopics(ctx, e.adm, 6)
	}
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// sourceTopics are the topics the app's group consumes (for WaitProcessed).
func (e *env) sourceTopics() []string {
	if e.topo == "orders" {
		return orders.SourceTopics(e.app)
	}
	return []string{countIn}
}

// start starts the child on the env's state dir, always with the same
// -instance (the state dir, and with it the id file, may be deleted).
func (e *env) start(extra ...string) *child {
	e.starts++
	args := []string{
		"-brokers", strings.Join(e.brokers, ","),
		"-state", e.stateDir,
		"-instance", e.instance,
		"-guarantee", e.guar,
		"-topology", e.topo,
		"-commit-interval", "100ms",
		"-session-timeout", flagSession.String(),
		"-log", *flagLog,
	}
	return startChild(e.t, fmt.Sprintf("child #%d", e.starts), e.bin, e.logPath, append(args, extra...)...)
}

// fail ends the test with the child's report.
func (e *env) fail(c *child, format string, args ...any) {
	e.t.Helper()
	e.t.Fatalf("%s\n%s", fmt.Sprintf(format, args...), c.report())
}

// waitProcessed waits until the group has processed all its input, failing
// the test if the child exits meanwhile.
func (e *env) waitProcessed(ctx context.Context, c *child, d time.Duration) {
	e.t.Helper()
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- orders.WaitProcessed(wctx, e.cl, e.app, e.sourceTopics()) }()
	select {
	case err := <-done:
		if err != nil {
			e.fail(c, "waiting until everything is processed: %v", err)
		}
	case <-c.exited:
		cancel()
		<-done
		e.fail(c, "%s exited before everything was processed", c.name)
	}
}

// restartStat describes one start of the child.
type restartStat struct {
	cold          bool // the state dir was empty (first start) or deleted
	toRunning     time.Duration
	reached       bool // the child reported RUNNING
	expected      int64
	restored      int64
	killedRestore bool // killed after a restore started and before RUNNING
}

func TestCrash(t *testing.T) {
	seed := *flagSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	kills, events := sizes()
	t.Logf("crash test: %d kills and %d input events per combination, seed %d (-crash.seed to repeat), race=%v",
		kills, events, seed, raceEnabled)
	for _, topo := range []string{"count", "orders"} {
		for _, g := range []string{"exactly-once", "at-least-once"} {
			t.Run(topo+"/"+g, func(t *testing.T) {
				runCrash(t, topo, g, kills, events, rand.New(rand.NewPCG(seed, uint64(len(topo)*10+len(g)))))
			})
		}
	}
}

func runCrash(t *testing.T, topo, guarantee string, kills, events int, rng *rand.Rand) {
	ctx := testContext(t)
	e := newEnv(ctx, t, topo, guarantee)
	began := time.Now()

	// The producer spreads the input over the kill phase (about 1.2 s per
	// kill), so records arrive while the child is killed and restarted.
	rate := float64(events) / (float64(kills) * 1.2)
	var produced atomic.Int64
	prodDone := make(chan error, 1)
	go func() {
		switch topo {
		case "count":
			prodDone <- produceSeq(ctx, e.cl, 0, events, rate, &produced)
		case "orders":
			prodDone <- orders.Produce(ctx, e.cl, ordersLoad(events, rate), func(n int) { produced.Store(int64(n)) })
		}
	}()

	var stats []restartStat
	runs := kills + 1 // the last run is the clean one
	for run := 0; run < runs; run++ {
		st := restartStat{cold: run == 0}
		// Before about one restart in four the state dir is deleted:
		// the full restore path (the id file goes with it: -instance is
		// passed explicitly).
		if run%4 == 2 {
			if err := os.RemoveAll(e.stateDir); err != nil {
				t.Fatal(err)
			}
			st.cold = true
		}
		// What the restart must replay, counted by the test itself.
		var (
			err    error
			cpDesc string
		)
		if st.expected, cpDesc, err = restoreTail(ctx, e.brokers, e.adm, e.stateDir, e.app, e.stores); err != nil {
			t.Fatalf("run %d: counting the changelog tail: %v", run, err)
		}
		c := e.start()
		last := run == runs-1
		duringRestore := !last && rng.IntN(map[bool]int{true: 2, false: 5}[st.cold]) == 0
		if duringRestore {
			err := c.waitFor(ctx, 3*time.Minute, "a restore or RUNNING", func(s snapshot) bool {
				return s.restoreStarts > 0 || !s.runningAt.IsZero()
			})
			if err != nil {
				e.fail(c, "run %d: %v", run, err)
			}
			if !c.snap().runningAt.IsZero() {
				duringRestore = false // nothing to restore: kill after RUNNING instead
			} else {
				time.Sleep(time.Duration(rng.IntN(15)) * time.Millisecond) // random kill moment
				c.kill()
				s := c.snap()
				st.killedRestore = s.runningAt.IsZero()
				st.restored = s.restored
				stats = append(stats, st)
				continue
			}
		}
		if err := c.waitFor(ctx, 3*time.Minute, "RUNNING", func(s snapshot) bool { return !s.runningAt.IsZero() }); err != nil {
			e.fail(c, "run %d: the child never became RUNNING: %v", run, err)
		}
		s := c.snap()
		st.reached, st.toRunning, st.restored = true, s.runningAt.Sub(c.started), s.restored
		if st.restored != st.expected {
			t.Errorf("run %d (%s): the child replayed %d changelog records; the test's own read-committed consumer counts %d committed records after the checkpoints\n%s\n%s",
				run, map[bool]string{true: "cold", false: "warm"}[st.cold], st.restored, st.expected, cpDesc, c.report())
		}
		if !last {
			time.Sleep(200*time.Millisecond + time.Duration(rng.Int64N(int64(1800*time.Millisecond)))) // random kill moment
			if c.snap().exited {
				e.fail(c, "run %d: the child exited before it was killed", run)
			}
			c.kill()
			stats = append(stats, st)
			continue
		}

		// The clean run: all input produced and processed, then SIGTERM.
		select {
		case err := <-prodDone:
			if err != nil {
				t.Fatalf("producer: %v", err)
			}
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
		e.waitProcessed(ctx, c, 5*time.Minute)
		stopAt := time.Now()
		if err := c.term(time.Minute); err != nil {
			e.fail(c, "clean stop: %v", err)
		}
		t.Logf("final run: RUNNING %v after start, clean stop (SIGTERM) took %v",
			st.toRunning.Round(time.Millisecond), time.Since(stopAt).Round(time.Millisecond))
		stats = append(stats, st)
	}
	elapsed := time.Since(began)

	var f figures
	switch topo {
	case "count":
		f = verifyCount(ctx, t, e, guarantee)
	case "orders":
		f = verifyOrders(ctx, t, e, guarantee)
	}
	f.kills, f.elapsed, f.stats = kills, elapsed, stats
	if f.inputs != events || produced.Load() != int64(events) {
		t.Errorf("%d input events read back, %d acknowledged to the producer, want %d", f.inputs, produced.Load(), events)
	}
	f.log(t)
	if t.Failed() {
		t.Logf("child log: %s", logTail(e.logPath, 40))
	}
}

// ordersLoad is the order scenario's load with events events, a few price
// changes and deletions, paced at rate.
func ordersLoad(events int, rate float64) orders.Options {
	o := orders.DefaultOptions(11)
	o.Lines, o.MaxEvents = orders.LinesFor(events), events
	o.PriceChanges, o.Deletes = 10, 2
	o.Rate = rate
	return o
}

// figures are what a combination prints.
type figures struct {
	kills            int
	inputs, outputs  int
	lost, duplicated int
	notes            []string
	elapsed          time.Duration
	stats            []restartStat
}

func (f figures) log(t *testing.T) {
	var restored, expected int64
	var killedRestore, colds, compared int
	var warm, cold []time.Duration
	for i, s := range f.stats {
		restored += s.restored
		if s.killedRestore {
			killedRestore++
		}
		if s.cold && i > 0 {
			colds++
		}
		if s.reached {
			expected += s.expected
			compared++
			if s.cold {
				cold = append(cold, s.toRunning)
			} else {
				warm = append(warm, s.toRunning)
			}
		}
	}
	slices.Sort(warm)
	slices.Sort(cold)
	t.Logf("kills %d (%d during a restore; state dir deleted before %d restarts); input records %d; output records %d; lost %d; duplicated %d; "+
		"restored records %d (runs that reached RUNNING replayed exactly the %d committed changelog records counted after their checkpoints: %d of %d runs); elapsed %v",
		f.kills, killedRestore, colds, f.inputs, f.outputs, f.lost, f.duplicated, restored, expected, compared, len(f.stats), f.elapsed.Round(time.Millisecond))
	t.Logf("start → RUNNING: warm %s; cold (empty state dir) %s", durStats(warm), durStats(cold))
	// Restarts must not wait out the session timeout (static membership
	// under the same -instance) or the transaction timeout (the same
	// transactional id fences the dead instance's transaction at once).
	// Warm restarts replay a short changelog tail, so a wait shows: the
	// median must stay below the session timeout, every one below the
	// runtime's 10 s transaction timeout.
	if len(warm) > 0 {
		if m := warm[len(warm)/2]; m >= *flagSession && !raceEnabled {
			t.Errorf("warm restarts took a median %v to reach RUNNING, not below the session timeout %v: waiting for the group?", m, *flagSession)
		}
		if m := warm[len(warm)-1]; m >= 10*time.Second {
			t.Errorf("a warm restart took %v to reach RUNNING: waiting out a session or transaction timeout?", m)
		}
	}
	for _, n := range f.notes {
		t.Log(n)
	}
}

// durStats describes sorted durations.
func durStats(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("n=%d min %v median %v max %v", len(ds), r(ds[0]), r(ds[len(ds)/2]), r(ds[len(ds)-1]))
}

// countOutput is one record of seq-out.
type countOutput struct {
	count, seq int64
}

// readCount reads seq-in (the sequence numbers of each key, in order) and
// seq-out (each key's outputs, in order), read committed.
func readCount(ctx context.Context, t *testing.T, e *env) (in map[string][]int64, out map[string][]countOutput, inputs, outputs int) {
	t.Helper()
	in, out = map[string][]int64{}, map[string][]countOutput{}
	var bad error
	err := readTopics(ctx, e.brokers, e.adm, func(r *kgo.Record) {
		seq, err := strconv.ParseInt(string(r.Value), 10, 64)
		if err != nil && bad == nil {
			bad = fmt.Errorf("seq-in %d/%d: %w", r.Partition, r.Offset, err)
		}
		in[string(r.Key)] = append(in[string(r.Key)], seq)
		inputs++
	}, countIn)
	if err != nil {
		t.Fatal(err)
	}
	err = readTopics(ctx, e.brokers, e.adm, func(r *kgo.Record) {
		o := countOutput{seq: -1}
		if len(r.Value) == 8 {
			for _, b := range r.Value {
				o.count = o.count<<8 | int64(b)
			}
		} else if bad == nil {
			bad = fmt.Errorf("seq-out %d/%d: value of %d bytes", r.Partition, r.Offset, len(r.Value))
		}
		for _, h := range r.Headers {
			if h.Key == seqHeader {
				if o.seq, err = strconv.ParseInt(string(h.Value), 10, 64); err != nil && bad == nil {
					bad = fmt.Errorf("seq-out %d/%d: header %q", r.Partition, r.Offset, h.Value)
				}
			}
		}
		if o.seq < 0 && bad == nil {
			bad = fmt.Errorf("seq-out %d/%d: no %q header", r.Partition, r.Offset, seqHeader)
		}
		out[string(r.Key)] = append(out[string(r.Key)], o)
		outputs++
	}, countOut)
	if err != nil {
		t.Fatal(err)
	}
	if bad != nil {
		t.Fatal(bad)
	}
	return in, out, inputs, outputs
}

func verifyCount(ctx context.Context, t *testing.T, e *env, guarantee string) figures {
	in, out, inputs, outputs := readCount(ctx, t, e)
	f := figures{inputs: inputs, outputs: outputs}
	seen := make(map[int64]int)
	for _, outs := range out {
		for _, o := range outs {
			seen[o.seq]++
		}
	}
	var lostSeqs []int64
	for _, seqs := range in {
		for _, s := range seqs {
			if seen[s] == 0 {
				lostSeqs = append(lostSeqs, s)
			}
		}
	}
	slices.Sort(lostSeqs)
	f.lost = len(lostSeqs)
	f.duplicated = outputs - (inputs - f.lost)
	if f.lost > 0 {
		t.Errorf("%d input records have no output (lost), e.g. seqs %v", f.lost, lostSeqs[:min(10, len(lostSeqs))])
	}
	keys := make([]string, 0, len(in))
	for k := range in {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var problems []string
	for _, k := range keys {
		ins, outs := in[k], out[k]
		switch guarantee {
		case "exactly-once":
			if p := exactSequence(k, ins, outs); p != "" {
				problems = append(problems, p)
			}
		case "at-least-once":
			if len(outs) == 0 || outs[len(outs)-1].count < int64(len(ins)) {
				final := int64(0)
				if len(outs) > 0 {
					final = outs[len(outs)-1].count
				}
				problems = append(problems, fmt.Sprintf("key %s: final count %d < %d inputs", k, final, len(ins)))
			}
		}
	}
	for k := range out {
		if _, ok := in[k]; !ok {
			problems = append(problems, fmt.Sprintf("output key %s has no input", k))
		}
	}
	if len(problems) > 0 {
		t.Errorf("%s: %d keys wrong:\n  %s", guarantee, len(problems), strings.Join(problems[:min(20, len(problems))], "\n  "))
	}
	if guarantee == "exactly-once" && f.duplicated != 0 {
		t.Errorf("exactly-once: %d duplicated outputs", f.duplicated)
	}
	if guarantee == "at-least-once" {
		f.notes = append(f.notes, fmt.Sprintf("at-least-once repeats: %d outputs for %d inputs (%d repeated)", outputs, inputs, f.duplicated))
	}
	return f
}

// exactSequence checks that outs are exactly the counts 1, 2, …, n
// carrying the key's input seqs ins in order; it describes the first
// difference ("" if none).
func exactSequence(k string, ins []int64, outs []countOutput) string {
	for i := 0; i < max(len(ins), len(outs)); i++ {
		switch {
		case i >= len(outs):
			return fmt.Sprintf("key %s: %d outputs for %d inputs (missing from count %d, seq %d)", k, len(outs), len(ins), i+1, ins[i])
		case i >= len(ins):
			return fmt.Sprintf("key %s: %d outputs for %d inputs (extra: count %d seq %d)", k, len(outs), len(ins), outs[i].count, outs[i].seq)
		case outs[i].count != int64(i+1) || outs[i].seq != ins[i]:
			return fmt.Sprintf("key %s: output %d is count %d seq %d, want count %d seq %d (before it: %v)",
				k, i, outs[i].count, outs[i].seq, i+1, ins[i], outs[max(0, i-2):i])
		}
	}
	return ""
}

// storeHeader is the timestamp in front of every table store value
// (runtime/doc.go).
const storeHeader = 8

// readLinesTable reads the final lines table from orders-lines-changelog:
// the latest record per key, [8-byte timestamp][msgpack PricedLine]; a
// tombstone deletes.
func readLinesTable(ctx context.Context, t *testing.T, e *env) map[string]orders.PricedLine {
	t.Helper()
	topic := e.app + "-" + orders.NameLines + "-changelog"
	latest := map[string]*orders.PricedLine{}
	var bad error
	err := readTopics(ctx, e.brokers, e.adm, func(r *kgo.Record) {
		if r.Value == nil {
			latest[string(r.Key)] = nil
			return
		}
		if len(r.Value) < storeHeader {
			if bad == nil {
				bad = fmt.Errorf("%s %d/%d: value of %d bytes", topic, r.Partition, r.Offset, len(r.Value))
			}
			return
		}
		l := new(orders.PricedLine)
		if err := msgpack.Unmarshal(r.Value[storeHeader:], l); err != nil && bad == nil {
			bad = fmt.Errorf("%s %d/%d: %w", topic, r.Partition, r.Offset, err)
		}
		latest[string(r.Key)] = l
	}, topic)
	if err == nil {
		err = bad
	}
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]orders.PricedLine, len(latest))
	for k, l := range latest {
		if l != nil {
			out[k] = *l
		}
	}
	return out
}

func verifyOrders(ctx context.Context, t *testing.T, e *env, guarantee string) figures {
	in, err := orders.ReadInputs(ctx, e.cl)
	if err != nil {
		t.Fatal(err)
	}
	want, st := orders.Evaluate(in)
	got, err := orders.ReadPortfolioTopic(ctx, e.cl)
	if err != nil {
		t.Fatal(err)
	}
	var outputs int
	if err := readTopics(ctx, e.brokers, e.adm, func(*kgo.Record) { outputs++ }, orders.TopicPortfolio); err != nil {
		t.Fatal(err)
	}
	f := figures{inputs: st.Events, outputs: outputs}
	if in.Undecodable != 0 {
		t.Errorf("%d undecodable input records", in.Undecodable)
	}
	lineDiff := orders.DiffLines(orders.EvaluateLines(in), readLinesTable(ctx, t, e))
	for _, d := range lineDiff {
		if strings.Contains(d, ": missing") {
			f.lost++
		}
	}
	if len(lineDiff) > 0 {
		t.Errorf("the lines table (%s-%s-changelog) differs from the model for %d of %d lines:\n  %s",
			e.app, orders.NameLines, len(lineDiff), st.Lines, strings.Join(lineDiff[:min(10, len(lineDiff))], "\n  "))
	}
	pDiff := orders.Diff(want, got)
	f.duplicated = len(pDiff) // customers whose portfolio is off (at-least-once double counting)
	switch {
	case len(pDiff) > 0 && guarantee == "exactly-once":
		t.Errorf("exactly-once: the final portfolio (%s) differs from the model for %d of %d customers:\n  %s",
			orders.TopicPortfolio, len(pDiff), len(want), strings.Join(pDiff[:min(10, len(pDiff))], "\n  "))
	case len(pDiff) > 0:
		f.notes = append(f.notes, fmt.Sprintf("at-least-once: the final portfolio differs from the model for %d of %d customers (double counting after crashes), e.g.\n  %s",
			len(pDiff), len(want), strings.Join(pDiff[:min(5, len(pDiff))], "\n  ")))
	}
	f.notes = append(f.notes, fmt.Sprintf("orders: %d events (%d dropped by the join), %d lines, %d customers; portfolio diffs %d, lines diffs %d (\"lost\" = lines missing, \"duplicated\" = customers whose portfolio differs)",
		st.Events, st.Dropped, st.Lines, len(want), len(pDiff), len(lineDiff)))
	return f
}
