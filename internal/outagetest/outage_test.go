package outagetest

// Outage tests on the real runtime: a keyed count runs while input flows at
// ~200 records/s; a broker outage happens; afterwards the same App (same
// Run call) must still be running, must have reported not-ready during the
// outage and ready after it, and every input record must be counted (0
// lost; at-least-once allows duplicates, which are reported).
//
// Each input record carries its sequence number in a "seq" header (and as
// its value); the count's output records carry the header of the input
// that changed them, so every input can be traced to an output.
//
// CHOREO_TEST_LOG=1 writes the app's logs (debug, franz-go included) to
// stderr, CHOREO_TEST_LOG=info only info and above; otherwise they are kept
// (info and above) and printed when a scenario fails.
// -outage.long runs the network cut for 5 minutes instead of 30 s.
//
// The eos-* scenarios run the broker restart and a network cut under
// ExactlyOnce (TransactionTimeout 5 s; the cut lasts 8 s, longer than it, so
// the broker aborts the open transaction and fences the producer epoch). The
// outage begins while a commit is in flight: the test waits for the app to
// write the first request of a transaction commit (AddOffsetsToTxn,
// TxnOffsetCommit or EndTxn) and breaks the brokers right then. The output is
// read read-committed and each input seq must appear in exactly one output
// (0 lost, 0 duplicated).

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/choreo-go/choreo/internal/apptest"
	"github.com/choreo-go/choreo/internal/faultproxy"
	"github.com/choreo-go/choreo/internal/testbroker"
	"github.com/choreo-go/choreo/runtime"
)

var long = flag.Bool("outage.long", false, "run the long outage scenarios (network cut of 5 min instead of 30 s)")

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	RemoveBrokerBinary()
	os.Exit(code)
}

const (
	appID      = "outage-app"
	keys       = 20
	inputRate  = 200 // records per second
	partitions = 4
	// restartOutage is how long a restarted broker stays down. Readiness
	// tolerates max(5 s, 2×heartbeat) without a broker round trip, so an
	// outage must last longer than 5 s to be visible in Ready.
	restartOutage = 7 * time.Second
	faultOutage   = 8 * time.Second
	// eosTxnTimeout is the EOS scenarios' TransactionTimeout and eosCut
	// their network cut: longer than the transaction timeout, so the
	// broker aborts the open transaction and fences the producer.
	eosTxnTimeout = 5 * time.Second
	eosCut        = 8 * time.Second
)

// testerIP is the loopback address the test's own clients dial from, so a
// filtered network cut can leave them connected while the app is cut off.
var testerIP = net.ParseIP("127.0.0.2")

type scenario struct {
	name string
	// setup starts the broker and returns the seed addresses, options for
	// the test's clients, and the outage: it breaks the brokers, holds the
	// outage and returns when they are back (healed).
	setup func(t *testing.T) (addrs []string, clientOpts []kgo.Opt, outage func(t *testing.T))
	// readinessDefect, if set, is the diagnosis of a known runtime defect
	// that keeps Ready true through this outage: the scenario is skipped
	// with it (after every other check ran) while Ready does not drop.
	readinessDefect string
	// eos runs the app under ExactlyOnce, breaks the brokers while a
	// transaction commit is in flight and requires 0 duplicates.
	eos bool
}

func TestOutages(t *testing.T) {
	cut := 30 * time.Second
	if *long {
		cut = 5 * time.Minute
	}
	scenarios := []scenario{
		{name: "broker-restart", setup: brokerRestart},
		{"broker-process-kill9", func(t *testing.T) ([]string, []kgo.Opt, func(*testing.T)) {
			p := StartBroker(t, BrokerOptions{})
			return p.Addrs(), nil, func(t *testing.T) {
				if err := p.Kill(); err != nil {
					t.Fatalf("kill: %v", err)
				}
				time.Sleep(restartOutage) // hold the outage
				if err := p.Restart(); err != nil {
					t.Fatalf("restart: %v", err)
				}
			}
		}, "", false},
		{name: "network-cut-" + cut.String(), setup: networkCut(cut)},
		{"retriable-errors", func(t *testing.T) ([]string, []kgo.Opt, func(*testing.T)) {
			b, err := testbroker.Start(testbroker.Options{DataDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(b.Close)
			return b.Addrs(), nil, func(t *testing.T) {
				// Only the app's requests: the test produces to "in" and
				// fetches "out". First its produces fail (and, once one
				// did, its fetches); then, produce healed so that its
				// blocked commit proceeds, its offset commits fail too.
				c := b.Cluster()
				begin := time.Now()
				hit := func(h *kfake.FaultHandle, what string) {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					if err := h.Wait(ctx, 1); err != nil {
						t.Errorf("no %s request hit its fault within 5 s", what)
					}
				}
				produce := c.Fault(
					kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: "out", Err: kerr.NotLeaderForPartition, Count: -1},
					kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: appID + "-counts-changelog", Err: kerr.RequestTimedOut, Count: -1},
				)
				hit(produce, "produce")
				fetch := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Topic: "in", Err: kerr.NotLeaderForPartition, Count: -1})
				time.Sleep(time.Until(begin.Add(faultOutage / 2))) // hold the outage
				commit := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Group: appID, Err: kerr.CoordinatorLoadInProgress, Count: -1})
				produce.Remove()
				hit(commit, "offset commit")
				time.Sleep(time.Until(begin.Add(faultOutage))) // hold the outage
				commit.Remove()
				fetch.Remove()
				t.Logf("faulted requests: produce %d, fetch %d, offset commit %d", produce.Hits(), fetch.Hits(), commit.Hits())
			}
		}, "", false},
		// Exactly-once, with the outage beginning during a commit.
		{name: "eos-broker-restart", setup: brokerRestart, eos: true},
		{name: "eos-network-cut-" + eosCut.String(), setup: networkCut(eosCut), eos: true},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) { runScenario(t, sc) })
	}
}

// brokerRestart stops the kfake broker and starts it again on the same
// ports with the same DataDir after restartOutage.
func brokerRestart(t *testing.T) ([]string, []kgo.Opt, func(*testing.T)) {
	b, err := testbroker.Start(testbroker.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b.Addrs(), nil, func(t *testing.T) {
		b.Stop()
		time.Sleep(restartOutage) // hold the outage
		if err := b.Restart(); err != nil {
			t.Fatalf("restart: %v", err)
		}
	}
}

// networkCut blackholes the app's connections to a live broker for cut.
func networkCut(cut time.Duration) func(t *testing.T) ([]string, []kgo.Opt, func(*testing.T)) {
	return func(t *testing.T) ([]string, []kgo.Opt, func(*testing.T)) {
		n := faultproxy.NewNetwork()
		t.Cleanup(n.Close)
		b, err := testbroker.Start(testbroker.Options{DataDir: t.TempDir(), Extra: []kfake.Opt{kfake.ListenFn(n.Listen)}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Close)
		// Cut the app off; the test's producer and watcher (dialing
		// from testerIP) stay connected, so input keeps arriving.
		n.Filter(func(a net.Addr) bool {
			ta, ok := a.(*net.TCPAddr)
			return !ok || !ta.IP.Equal(testerIP)
		})
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: testerIP}, Timeout: 5 * time.Second}
		return b.Addrs(), []kgo.Opt{kgo.Dialer(d.DialContext)}, func(*testing.T) {
			n.Blackhole()
			time.Sleep(cut) // hold the outage
			n.Heal()
		}
	}
}

// readyEvent is a change of Ready or State seen by the sampler.
type readyEvent struct {
	at    time.Time
	ready bool
	state runtime.State
}

type outRec struct {
	key   string
	seq   int64
	count int64
	part  int32
	off   int64
	at    time.Time
}

type harness struct {
	t          *testing.T
	addrs      []string
	clientOpts []kgo.Opt
	logs       *apptest.Buffer

	mu        sync.Mutex
	sentAt    map[int64]time.Time
	acked     map[int64]bool
	prodErrs  map[string]int
	outs      []outRec
	firstOut  map[int64]time.Time
	events    []readyEvent
	appStates []string
	trips     []roundTrip // the app's clients' broker round trips

	// commitArmed makes the next transaction-commit request the app writes
	// signal commitHit with its key.
	commitArmed atomic.Bool
	commitHit   chan int16
}

// txnCommitKeys are the requests of a transaction commit, in order.
var txnCommitKeys = []int16{int16(kmsg.AddOffsetsToTxn), int16(kmsg.TxnOffsetCommit), int16(kmsg.EndTxn)}

type roundTrip struct {
	at  time.Time
	key int16
	ok  bool
}

// tripHook observes the app's franz-go clients (via Config.ClientOpts).
type tripHook struct{ h *harness }

func (k tripHook) OnBrokerE2E(_ kgo.BrokerMetadata, key int16, e2e kgo.BrokerE2E) {
	k.h.mu.Lock()
	k.h.trips = append(k.h.trips, roundTrip{at: time.Now(), key: key, ok: e2e.Err() == nil})
	k.h.mu.Unlock()
}

// OnBrokerWrite signals the first transaction-commit request written once
// armed.
func (k tripHook) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if err == nil && slices.Contains(txnCommitKeys, key) && k.h.commitArmed.CompareAndSwap(true, false) {
		k.h.commitHit <- key
	}
}

// awaitCommit blocks until the app writes a transaction-commit request and
// returns its name.
func (h *harness) awaitCommit(t *testing.T) string {
	h.commitArmed.Store(true)
	select {
	case key := <-h.commitHit:
		return kmsg.NameForKey(key)
	case <-time.After(5 * time.Second):
		h.commitArmed.Store(false)
		t.Fatal("the app wrote no transaction commit request within 5 s")
		return ""
	}
}

func (h *harness) opts(extra ...kgo.Opt) []kgo.Opt {
	o := []kgo.Opt{
		kgo.SeedBrokers(h.addrs...),
		kgo.RetryBackoffFn(func(int) time.Duration { return 200 * time.Millisecond }),
		kgo.RequestRetries(1 << 30),
		kgo.RetryTimeout(0),
		// Recover quickly after an outage: the default 5 s minimum age
		// between metadata refreshes would delay the watcher's figures.
		kgo.MetadataMinAge(250 * time.Millisecond),
	}
	o = append(o, h.clientOpts...)
	return append(o, extra...)
}

func (h *harness) logger() *slog.Logger {
	switch os.Getenv("CHOREO_TEST_LOG") {
	case "":
	case "info":
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	default:
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// eventually polls cond every 50 ms until it holds or d passes.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	return true
}

func runScenario(t *testing.T, sc scenario) {
	addrs, clientOpts, outage := sc.setup(t)
	h := &harness{
		t: t, addrs: addrs, clientOpts: clientOpts, logs: &apptest.Buffer{},
		sentAt: map[int64]time.Time{}, acked: map[int64]bool{}, prodErrs: map[string]int{}, firstOut: map[int64]time.Time{},
		commitHit: make(chan int16, 1),
	}
	t.Cleanup(func() {
		if t.Failed() {
			lines := strings.Split(strings.TrimSpace(h.logs.String()), "\n")
			t.Logf("app log (last %d of %d lines):\n%s", min(len(lines), 150), len(lines), strings.Join(lines[max(0, len(lines)-150):], "\n"))
		}
	})

	adminCl, err := kgo.NewClient(h.opts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer adminCl.Close()
	adm := kadm.NewClient(adminCl)
	for _, topic := range []string{"in", "out"} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		resp, err := adm.CreateTopic(ctx, partitions, 1, nil, topic)
		cancel()
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			t.Fatalf("create %s: %v", topic, err)
		}
	}

	// The watcher reads "out" and notes when each output arrives.
	// Under exactly-once it reads committed: aborted outputs are not output.
	watcher, err := kgo.NewClient(h.opts(kgo.ConsumeTopics("out"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100*time.Millisecond), kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		t.Fatal(err)
	}
	bg, stopBG := context.WithCancel(context.Background())
	var bgWG sync.WaitGroup
	defer func() { stopBG(); bgWG.Wait(); watcher.Close() }()
	bgWG.Go(func() { h.watch(bg, watcher) })

	// The app.
	cfg := runtime.Config{
		Brokers:        addrs,
		ApplicationID:  appID,
		InstanceID:     "i1",
		StateDir:       t.TempDir(),
		CommitInterval: 200 * time.Millisecond,
		SessionTimeout: 2 * time.Second,
		Logger:         h.logger(),
		ClientOpts:     []kgo.Opt{kgo.WithHooks(tripHook{h})},
		StateListener: func(from, to runtime.State) {
			h.mu.Lock()
			h.appStates = append(h.appStates, fmt.Sprintf("%s %v→%v", time.Now().Format("15:04:05.000"), from, to))
			h.mu.Unlock()
		},
	}
	if sc.eos {
		cfg.Guarantee = runtime.ExactlyOnce
		cfg.TransactionTimeout = eosTxnTimeout
	}
	b := runtime.NewBuilder()
	runtime.Count(runtime.StreamOf(b, "in", runtime.String(), runtime.String()).GroupByKey(), runtime.Named("counts")).ToStream().To("out")
	app, err := runtime.New(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	appCtx, stopApp := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- app.Run(appCtx) }()
	appStopped := false
	defer func() {
		if !appStopped {
			stopApp()
			select {
			case <-runErr:
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not return within 30 s of cancel; goroutines:\n%s", goroutines())
			}
		}
	}()
	bgWG.Go(func() { h.sampleReadiness(bg, app) })

	// The input producer rides out outages itself: unlimited retries.
	producer, err := kgo.NewClient(h.opts(kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(1<<20),
		kgo.RecordRetries(1<<30), kgo.UnknownTopicRetries(-1))...)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	prodCtx, stopProducing := context.WithCancel(context.Background())
	var prodWG sync.WaitGroup
	prodWG.Go(func() { h.produce(prodCtx, producer) })
	defer func() { stopProducing(); prodWG.Wait() }()

	// Warm up: ready and counting.
	if !eventually(30*time.Second, func() bool { return app.Ready() && h.counted() >= inputRate }) {
		t.Fatalf("app not ready and counting after 30 s: ready=%v state=%v counted=%d", app.Ready(), app.State(), h.counted())
	}
	t.Logf("warmed up: %d inputs counted", h.counted())

	// Under exactly-once the outage begins during a commit.
	var inFlight string
	if sc.eos {
		inFlight = h.awaitCommit(t)
	}
	start := time.Now()
	outage(t)
	healed := time.Now()
	if t.Failed() {
		return
	}
	time.Sleep(2 * time.Second) // input keeps flowing after the outage
	stopProducing()
	prodWG.Wait()
	fctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	if err := producer.Flush(fctx); err != nil {
		t.Errorf("input producer did not flush within 60 s of the end of the outage: %v", err)
	}
	cancel()

	// Every acknowledged input counted, within a minute.
	h.mu.Lock()
	ackedSeqs := make([]int64, 0, len(h.acked))
	for s := range h.acked {
		ackedSeqs = append(ackedSeqs, s)
	}
	h.mu.Unlock()
	allCounted := func(seqs []int64) func() bool {
		return func() bool {
			h.mu.Lock()
			defer h.mu.Unlock()
			for _, s := range seqs {
				if _, ok := h.firstOut[s]; !ok {
					return false
				}
			}
			return true
		}
	}
	eventually(60*time.Second, allCounted(ackedSeqs))
	// The truth is what the input topic holds.
	inputs := readInputs(t, h, adm)
	eventually(15*time.Second, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		counts := map[int64]map[int64]bool{}
		for _, o := range h.outs {
			if counts[o.seq] == nil {
				counts[o.seq] = map[int64]bool{}
			}
			counts[o.seq][o.count] = true
		}
		for seq, in := range inputs {
			if len(counts[seq]) < in.copies {
				return false
			}
		}
		return true
	})
	eventually(15*time.Second, app.Ready)

	// Still the same Run, running and ready.
	select {
	case err := <-runErr:
		appStopped = true
		t.Fatalf("Run returned during/after the outage: %v", err)
	default:
	}
	ready, state, alive := app.Ready(), app.State(), app.Alive()

	stopApp()
	select {
	case err := <-runErr:
		appStopped = true
		if err != nil {
			t.Errorf("Run after the outage returned %v on a clean stop", err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("Run did not return within 30 s of cancel; goroutines:\n%s", goroutines())
	}

	h.report(t, sc, reportIn{inFlight: inFlight, start: start, healed: healed, inputs: inputs, ackedSeqs: ackedSeqs, ready: ready, state: state, alive: alive})
}

type reportIn struct {
	inFlight      string // the commit request just written when the outage began (EOS)
	start, healed time.Time
	inputs        map[int64]*input // by seq, as read from "in"
	ackedSeqs     []int64
	ready, alive  bool
	state         runtime.State
}

// report checks and prints the figures of a scenario.
func (h *harness) report(t *testing.T, sc scenario, in reportIn) {
	if skip := h.analyze(t, sc, in); skip != "" {
		t.Skip(skip)
	}
}

// analyze returns the scenario's known-defect diagnosis when that defect
// showed, after every other check.
func (h *harness) analyze(t *testing.T, sc scenario, in reportIn) (skip string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !in.ready || !in.alive || in.state != runtime.Running {
		t.Errorf("after the outage: ready=%v alive=%v state=%v; want ready, alive, RUNNING", in.ready, in.alive, in.state)
	}

	// Inputs acknowledged to the producer but missing from "in" were lost
	// by the broker, not by the app.
	brokerLost := 0
	for _, s := range in.ackedSeqs {
		if _, ok := in.inputs[s]; !ok {
			brokerLost++
		}
	}
	if brokerLost > 0 {
		t.Errorf("the broker lost %d acknowledged input records", brokerLost)
	}
	// An input record is identified by its seq; the broker may hold a seq
	// twice (kfake forgets idempotent-producer state on kill -9), and each
	// copy is an input of its own. Each copy counted yields an output with
	// its own count; an input processed again under at-least-once yields
	// an output repeating a count (a duplicate output) or, if its store
	// update was applied twice, a new count (double counting).
	perKey := map[string]int64{}
	totalInputs, brokerDups := 0, 0
	for _, inp := range in.inputs {
		perKey[inp.key] += int64(inp.copies)
		totalInputs += inp.copies
		brokerDups += inp.copies - 1
	}
	outputs := map[int64]int{}
	counts := map[int64]map[int64]bool{}
	type last struct {
		off, count, max int64
	}
	finals := map[string]*last{}
	for _, o := range h.outs {
		outputs[o.seq]++
		if counts[o.seq] == nil {
			counts[o.seq] = map[int64]bool{}
		}
		counts[o.seq][o.count] = true
		// The final count of a key is its output with the highest offset
		// (a key always goes to the same partition).
		f := finals[o.key]
		if f == nil {
			f = &last{off: -1}
			finals[o.key] = f
		}
		if o.off > f.off {
			f.off, f.count = o.off, o.count
		}
		f.max = max(f.max, o.count)
	}
	var lost []int64
	lostN, dupOutputs, recounted := 0, 0, 0
	for seq, inp := range in.inputs {
		distinct := len(counts[seq])
		if distinct < inp.copies {
			lost = append(lost, seq)
			lostN += inp.copies - distinct
		} else {
			recounted += distinct - inp.copies
		}
		dupOutputs += outputs[seq] - distinct
	}
	slices.Sort(lost)
	var sumFinal int64
	var short []string
	for k, n := range perKey {
		var c int64
		if f := finals[k]; f != nil {
			c = f.count
			if f.count < f.max {
				short = append(short, fmt.Sprintf("%s: count went back from %d to %d", k, f.max, f.count))
			}
		}
		sumFinal += c
		if c < n {
			short = append(short, fmt.Sprintf("%s: final count %d < %d inputs", k, c, n))
		}
	}

	// Figures.
	var firstAfter, caughtUp time.Time
	for _, o := range h.outs {
		if o.at.After(in.healed) && (firstAfter.IsZero() || o.at.Before(firstAfter)) {
			firstAfter = o.at
		}
	}
	for s, at := range h.sentAt {
		if at.Before(in.healed) {
			if out, ok := h.firstOut[s]; ok && out.After(caughtUp) {
				caughtUp = out
			}
		}
	}
	var dropAt, backAt time.Time
	for _, e := range h.events {
		if dropAt.IsZero() {
			if !e.ready && !e.at.Before(in.start) {
				dropAt = e.at
			}
			continue
		}
		if e.ready {
			backAt = e.at
			break
		}
	}
	since := func(a, b time.Time) string {
		if a.IsZero() {
			return "never"
		}
		return a.Sub(b).Round(10 * time.Millisecond).String()
	}
	prodErrs := 0
	for _, n := range h.prodErrs {
		prodErrs += n
	}
	t.Logf("outage %v; ready false %s after it began, true again %s after it ended; first new output %s after it ended, backlog caught up %s after; inputs %d, lost %d, double-counted %d (sum of final counts − inputs), duplicate outputs %d, input produce errors %d",
		in.healed.Sub(in.start).Round(10*time.Millisecond), since(dropAt, in.start), since(backAt, in.healed),
		since(firstAfter, in.healed), since(caughtUp, in.healed), totalInputs, lostN, sumFinal-int64(totalInputs), dupOutputs, prodErrs)
	if brokerDups > 0 {
		t.Logf("the broker stored %d input records twice (idempotent producer retries after the crash; kfake saves its producer sequence windows only on a clean Close), each counted as an input", brokerDups)
	}
	if recounted > 0 {
		t.Logf("%d inputs were counted twice (their outputs carry different counts): at-least-once", recounted)
	}
	if len(h.prodErrs) > 0 {
		t.Logf("input produce errors: %v", h.prodErrs)
	}
	if testing.Verbose() {
		t.Logf("states: %s", strings.Join(h.appStates, ", "))
		var ev []string
		for _, e := range h.events {
			ev = append(ev, fmt.Sprintf("%s ready=%v %v", e.at.Format("15:04:05.000"), e.ready, e.state))
		}
		t.Logf("readiness: %s", strings.Join(ev, ", "))
	}

	// What the app's clients still completed during the outage.
	trips := map[string]int{}
	completed, failed := 0, 0
	for _, rt := range h.trips {
		if rt.at.Before(in.start) || rt.at.After(in.healed) {
			continue
		}
		if !rt.ok {
			failed++
			continue
		}
		trips[kmsg.NameForKey(rt.key)]++
		completed++
	}
	t.Logf("the app's broker round trips during the outage: %d completed %v, %d failed", completed, trips, failed)

	if sc.eos {
		// The commit in flight at the cut: its requests that failed, and
		// the runtime's recoveries (logged at warn).
		failedTxn := map[string]int{}
		for _, rt := range h.trips {
			if !rt.ok && !rt.at.Before(in.start) && slices.Contains(txnCommitKeys, rt.key) {
				failedTxn[kmsg.NameForKey(rt.key)]++
			}
		}
		var recoveries []string
		for _, l := range strings.Split(h.logs.String(), "\n") {
			if strings.Contains(l, `msg="transaction failed`) {
				_, cause, _ := strings.Cut(l, "err=")
				recoveries = append(recoveries, cause)
			}
		}
		t.Logf("exactly-once: the outage began right after the app wrote %s (1 transaction commit in flight); failed transaction-commit requests since: %v; transactions failed and recovered with a new producer session: %d %q",
			in.inFlight, failedTxn, len(recoveries), recoveries)
		var dups []int64
		for seq, inp := range in.inputs {
			if outputs[seq] > inp.copies {
				dups = append(dups, seq)
			}
		}
		slices.Sort(dups)
		if len(dups) > 0 || dupOutputs > 0 || recounted > 0 || sumFinal != int64(totalInputs) {
			t.Errorf("exactly-once: %d seqs with more outputs than inputs (first: %v), %d duplicate outputs, %d inputs counted twice, sum of final counts %d for %d inputs",
				len(dups), dups[:min(len(dups), 10)], dupOutputs, recounted, sumFinal, totalInputs)
		}
		if brokerDups > 0 {
			t.Errorf("exactly-once: the broker stored %d input records twice", brokerDups)
		}
	}
	if lostN > 0 {
		t.Errorf("%d inputs never counted (first seqs: %v)", lostN, lost[:min(len(lost), 10)])
	}
	if len(short) > 0 {
		slices.Sort(short)
		t.Errorf("counts: %s", strings.Join(short, "; "))
	}
	if dropAt.IsZero() {
		if sc.readinessDefect != "" {
			return sc.readinessDefect
		}
		t.Errorf("Ready never went false during the outage (%v)", in.healed.Sub(in.start).Round(time.Millisecond))
	} else if backAt.IsZero() {
		t.Errorf("Ready went false at +%v and never came back", dropAt.Sub(in.start))
	}
	return ""
}

func (h *harness) counted() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.firstOut)
}

func (h *harness) produce(ctx context.Context, cl *kgo.Client) {
	tick := time.NewTicker(time.Second / inputRate)
	defer tick.Stop()
	for seq := int64(0); ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s := strconv.FormatInt(seq, 10)
		r := &kgo.Record{
			Topic:   "in",
			Key:     []byte("k" + strconv.FormatInt(seq%keys, 10)),
			Value:   []byte(s),
			Headers: []kgo.RecordHeader{{Key: "seq", Value: []byte(s)}},
		}
		h.mu.Lock()
		h.sentAt[seq] = time.Now()
		h.mu.Unlock()
		cl.Produce(context.Background(), r, func(_ *kgo.Record, err error) {
			h.mu.Lock()
			defer h.mu.Unlock()
			if err != nil {
				h.prodErrs[err.Error()]++
				return
			}
			h.acked[seq] = true
		})
	}
}

func seqOf(r *kgo.Record) (int64, bool) {
	for _, hd := range r.Headers {
		if hd.Key == "seq" {
			s, err := strconv.ParseInt(string(hd.Value), 10, 64)
			return s, err == nil
		}
	}
	return 0, false
}

func (h *harness) watch(ctx context.Context, cl *kgo.Client) {
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		now := time.Now()
		fs.EachRecord(func(r *kgo.Record) {
			seq, ok := seqOf(r)
			if !ok {
				h.t.Errorf("output %s/%d@%d has no seq header: %v", r.Topic, r.Partition, r.Offset, r.Headers)
				return
			}
			count, err := runtime.Int64().Deserialize(r.Value)
			if err != nil {
				h.t.Errorf("output %s/%d@%d: bad count: %v", r.Topic, r.Partition, r.Offset, err)
				return
			}
			h.mu.Lock()
			h.outs = append(h.outs, outRec{key: string(r.Key), seq: seq, count: count, part: r.Partition, off: r.Offset, at: now})
			if _, ok := h.firstOut[seq]; !ok {
				h.firstOut[seq] = now
			}
			h.mu.Unlock()
		})
	}
}

func (h *harness) sampleReadiness(ctx context.Context, app *runtime.App) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last *readyEvent
	for {
		e := readyEvent{at: time.Now(), ready: app.Ready(), state: app.State()}
		if last == nil || e.ready != last.ready || e.state != last.state {
			h.mu.Lock()
			h.events = append(h.events, e)
			h.mu.Unlock()
			last = &e
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// input is a seq found in the input topic.
type input struct {
	key    string
	copies int
}

// readInputs reads "in" to its end.
func readInputs(t *testing.T, h *harness, adm *kadm.Client) map[int64]*input {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, "in")
	if err != nil {
		t.Fatalf("list end offsets of in: %v", err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	cl, err := kgo.NewClient(h.opts(kgo.ConsumeTopics("in"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	out := map[int64]*input{}
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading in: %v (still waiting for %v)", ctx.Err(), want)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if seq, ok := seqOf(r); ok {
				if in := out[seq]; in != nil {
					in.copies++
				} else {
					out[seq] = &input{key: string(r.Key), copies: 1}
				}
			}
			if end, ok := want[r.Partition]; ok && r.Offset+1 >= end {
				delete(want, r.Partition)
			}
		})
	}
	return out
}

// goroutines dumps every goroutine's stack, to show where a hung Run waits.
func goroutines() string {
	var b strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&b, 2)
	return b.String()
}
