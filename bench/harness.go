package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/examples/orders/orders"
	"github.com/choreo-go/choreo/runtime"
)

// Workload ids accepted by Options.Workloads.
const (
	WBase = "base" // the baselines alone
	W1    = "w1"   // stateless map/filter/to
	W2    = "w2"   // keyed count, small and large key space
	W3    = "w3"   // stream–table join
	W4    = "w4"   // the order topology: throughput and latency
	W5    = "w5"   // changelog restore, cold and warm
	WRSS  = "rss"  // keyed count over RSSKeys keys: memory bound
)

// AllWorkloads lists every workload in run order.
var AllWorkloads = []string{WBase, W1, W2, W3, W4, W5, WRSS}

// Guarantee is a processing guarantee.
type Guarantee string

// Guarantees.
const (
	ALOS Guarantee = "alos"
	EOS  Guarantee = "eos"
)

// Options configures a Run.
type Options struct {
	// Scale selects the sizes (default Full).
	Scale Scale
	// Workloads to run (default all; WRSS only at Full scale). Baselines
	// that the chosen workloads are compared with always run.
	Workloads []string
	// Guarantees to run the choreo workloads under (default ALOS). W5
	// and the RSS workload run under the first only.
	Guarantees []Guarantee
	// Out is the folder that receives a <timestamp> folder with the
	// results (default bench/results under the module root).
	Out string
	// CPUProfile writes a CPU profile of every phase (and one of the
	// broker) into the results folder.
	CPUProfile bool
	// Trace writes a Go execution trace of every phase (trace-<id>.out)
	// into the results folder: where the code under test waits, which a
	// CPU profile does not show (go tool trace -pprof=sync|net|sched).
	Trace bool
	// NoLatency skips W4's latency runs (the burst alone, for quick
	// iterations on throughput).
	NoLatency bool
	// Progress receives the progress line (default os.Stderr).
	Progress io.Writer
	// Seed seeds every generated load.
	Seed uint64
	// AppLog, if not nil, receives the debug logs of every app under test
	// (instead of keeping their warnings to show when a phase fails).
	AppLog io.Writer
	// Repeat runs each baseline, W1 and W2 measurement this many times and
	// keeps the fastest, against the noise of a shared machine (default 3
	// at Full scale, 1 otherwise).
	Repeat int
	// Threads is Config.ProcessingThreads of every App under test
	// (default 1: one goroutine processes the tasks, like the baselines'
	// single loop).
	Threads int
	// Brokers, if set, are the seed brokers of an existing cluster to run
	// against instead of starting internal/testbroker/cmd/broker. Every topic, group and
	// application id the run creates there starts with
	// "bench-<timestamp>-" and is deleted after its workload, except W4's,
	// which uses the order example's topics (products, order-lines,
	// order-portfolio): W4 refuses to run when they exist. The broker's
	// CPU is not measured then.
	Brokers []string
	// Security (TLS, SASL) applies to every client of the run: the
	// harness's, the baselines', the apps' under test and the load
	// generator's. It needs Brokers: the harness's own broker is
	// plaintext. The load generator child process gets the settings as
	// flags and the password in its environment, so W4 cannot use a
	// TLSConfig or TokenSource, which only code can carry.
	Security runtime.Security
}

// Run runs the benchmark suite and writes results.md, results.json and
// plot.svg into a new folder under Options.Out; the report says where.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Scale == "" {
		o.Scale = Full
	}
	sz, err := sizesFor(o.Scale)
	if err != nil {
		return nil, err
	}
	if len(o.Guarantees) == 0 {
		o.Guarantees = []Guarantee{ALOS}
	}
	for _, g := range o.Guarantees {
		switch g {
		case ALOS:
		case EOS:
		default:
			return nil, fmt.Errorf("bench: unknown guarantee %q (alos, eos)", g)
		}
	}
	if len(o.Workloads) == 0 {
		for _, w := range AllWorkloads {
			if w != WRSS || sz.RSSKeys > 0 {
				o.Workloads = append(o.Workloads, w)
			}
		}
	}
	for _, w := range o.Workloads {
		if !slices.Contains(AllWorkloads, w) {
			return nil, fmt.Errorf("bench: unknown workload %q (have %s)", w, strings.Join(AllWorkloads, ","))
		}
		if w == WRSS && sz.RSSKeys == 0 {
			return nil, fmt.Errorf("bench: workload %s runs at full scale only", WRSS)
		}
	}
	if o.Security.Enabled() && len(o.Brokers) == 0 {
		return nil, errors.New("bench: TLS and SASL settings need Brokers: the harness's own broker is plaintext")
	}
	if slices.Contains(o.Workloads, W4) && (o.Security.TLSConfig != nil || o.Security.TokenSource != nil) {
		return nil, errors.New("bench: W4's load generator process cannot take Security.TLSConfig or TokenSource: use the CA, certificate and key files and a password")
	}
	secOpts, err := o.Security.ClientOpts()
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if o.Progress == nil {
		o.Progress = os.Stderr
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Repeat <= 0 {
		o.Repeat = 1
		if o.Scale == Full {
			o.Repeat = 3
		}
	}
	if o.Out == "" {
		o.Out = "bench/results"
	}
	start := time.Now()
	outDir := filepath.Join(o.Out, start.UTC().Format("20060102T150405Z"))
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, err
	}
	if o.Threads <= 0 {
		o.Threads = 1
	}
	h := &harness{o: o, sz: sz, outDir: outDir, prog: newProgress(o.Progress), secOpts: secOpts}
	rep := &Report{Scale: o.Scale, Started: start, Machine: describeMachine(), Workloads: o.Workloads, Dir: outDir,
		Repeat: o.Repeat, Threads: o.Threads, LoadBefore: loadAverage()}
	if len(o.Brokers) > 0 {
		h.ns = "bench-" + start.UTC().Format("20060102T150405Z") + "-"
		rep.Brokers = o.Brokers
		rep.Security = o.Security.String()
	}
	h.rep = rep
	runErr := h.run(ctx)
	rep.Took = time.Since(start)
	rep.LoadAfter = loadAverage()
	rep.MaxRSS = maxRSS()
	rep.evaluate(sz)
	if err := rep.write(outDir); err != nil {
		return rep, errors.Join(runErr, err)
	}
	return rep, runErr
}

// harness holds what the phases of one run share.
type harness struct {
	o  Options
	sz sizes
	// guarantee is the one the current workload runs under.
	guarantee Guarantee
	outDir    string
	prog      *progress
	rep       *Report

	tmp    string
	broker *brokerProc // nil on an external cluster (Options.Brokers)
	tools  *tools
	// brokers are the seed brokers; secOpts are Options.Security's
	// client options, added to every client of the run.
	brokers []string
	secOpts []kgo.Opt
	// ns prefixes every topic, group and application id: empty on the
	// harness's own broker, "bench-<timestamp>-" on an external cluster.
	ns   string
	cl   *kgo.Client // preloads, topic admin, lag checks (not metered)
	adm  *kadm.Client
	logs *tailBuffer // warnings of the apps under test

	profiled map[string]bool
	traced   map[string]bool
}

func (h *harness) run(ctx context.Context) (err error) {
	if h.tmp, err = os.MkdirTemp("", "choreo-bench-"); err != nil {
		return err
	}
	defer os.RemoveAll(h.tmp)
	h.prog.linef("building the broker and load programs ...")
	if h.tools, err = buildTools(ctx, filepath.Join(h.tmp, "bin")); err != nil {
		return err
	}
	if len(h.o.Brokers) > 0 {
		h.brokers = h.o.Brokers
		h.prog.linef("external cluster %s (%s); names prefixed %q", strings.Join(h.brokers, ","), h.o.Security, h.ns)
	} else {
		var prof string
		if h.o.CPUProfile {
			prof = filepath.Join(h.outDir, "cpu-broker.pprof")
		}
		if h.broker, err = startBroker(ctx, h.tools, filepath.Join(h.tmp, "broker"), prof); err != nil {
			return err
		}
		defer func() {
			if serr := h.broker.stop(); serr != nil && err == nil {
				err = serr
			}
		}()
		h.brokers = h.broker.addrs
		h.prog.linef("broker pid %d on %s", h.broker.pid, strings.Join(h.brokers, ","))
	}
	h.cl, err = h.newClient(append(orders.ProducerOpts(), kgo.MetadataMinAge(100*time.Millisecond))...)
	if err != nil {
		return err
	}
	defer h.cl.Close()
	h.adm = kadm.NewClient(h.cl)
	h.logs = &tailBuffer{max: 64 << 10}

	want := func(w string) bool { return slices.Contains(h.o.Workloads, w) }
	needPass := want(WBase) || want(W1)
	needState := want(WBase) || want(W2) || want(W4)
	needStateBig := want(WBase) || want(W2) || want(W3)
	var errs []error
	step := func(name string, fn func(context.Context) error) {
		if ctx.Err() != nil {
			return
		}
		if err := fn(ctx); err != nil {
			h.prog.linef("%s failed: %v", name, err)
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			if logs := h.logs.String(); logs != "" {
				h.prog.linef("app log tail:\n%s", logs)
			}
		}
		h.logs = &tailBuffer{max: 64 << 10}
	}
	if needPass {
		step("passthrough", h.runPassthrough)
	}
	if needState {
		step("stateful ceiling", func(ctx context.Context) error { return h.runStateful(ctx, "small", h.sz.Keys) })
	}
	if needStateBig {
		step("stateful ceiling (large key space)", func(ctx context.Context) error { return h.runStateful(ctx, "big", h.sz.BigKeys) })
	}
	if want(WBase) || want(W5) {
		step("pebble writes", h.runPebble)
	}
	for _, g := range h.o.Guarantees {
		h.guarantee = g // the apps the workloads start run under it
		if want(W1) {
			step("W1", func(ctx context.Context) error { return h.runW1(ctx, g) })
		}
		if want(W2) {
			step("W2 small", func(ctx context.Context) error { return h.runW2(ctx, g, "small", h.sz.Keys, h.sz.Records, false) })
			step("W2 large", func(ctx context.Context) error { return h.runW2(ctx, g, "big", h.sz.BigKeys, h.sz.Records, false) })
		}
		if want(W3) {
			step("W3", func(ctx context.Context) error { return h.runW3(ctx, g) })
		}
		if want(W4) {
			step("W4", func(ctx context.Context) error { return h.runW4(ctx, g) })
		}
		// A restore reads committed changelog records and the memory
		// bound is about state, under either guarantee: they run once,
		// under the first.
		once := g == h.o.Guarantees[0]
		if want(W5) && once {
			step("W5", func(ctx context.Context) error { return h.runW5(ctx, g) })
		}
		if want(WRSS) && once {
			step("RSS", func(ctx context.Context) error {
				return h.runW2(ctx, g, "rss", h.sz.RSSKeys, int64(h.sz.RSSKeys), true)
			})
		}
	}
	h.prog.done()
	if ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	return errors.Join(errs...)
}

// newClient opens a client of the cluster under test: the seed brokers,
// the security settings, then opts.
func (h *harness) newClient(opts ...kgo.Opt) (*kgo.Client, error) {
	return kgo.NewClient(h.clientOpts(opts...)...)
}

// clientOpts are the seed brokers and security settings followed by opts.
func (h *harness) clientOpts(opts ...kgo.Opt) []kgo.Opt {
	return append(append([]kgo.Opt{kgo.SeedBrokers(h.brokers...)}, h.secOpts...), opts...)
}

// phaseCtx bounds a phase with the scale's safety timeout.
func (h *harness) phaseCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, h.sz.PhaseTimeout)
}

// measurement tracks one measured phase: progress, CPU profile, RSS and
// broker CPU samples.
type measurement struct {
	h       *harness
	title   string
	prof    *os.File
	trace   *os.File
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	peakRSS int64
	// peakGo and peakHeap are the Go runtime's resident memory and its
	// live heap objects when the RSS peaked.
	peakGo, peakHeap int64
	samples          []cpuSample
	// heapFile receives a heap profile near the phase's peak RSS.
	heapFile string
}

type cpuSample struct {
	t      time.Time
	broker time.Duration // the broker's CPU
	self   time.Duration // this process's CPU
	system time.Duration // every process's CPU
}

// begin starts a measured phase: it collects garbage and returns free
// memory first, so the phase's peak RSS is its own, then samples RSS and
// the broker's CPU every 20 ms and shows progress (count of total).
func (h *harness) begin(id, title string, total int64, count func() int64) *measurement {
	goruntime.GC()
	debug.FreeOSMemory()
	trimCHeap()
	m := &measurement{h: h, title: title, stop: make(chan struct{})}
	if h.o.CPUProfile && !h.profiled[id] {
		if h.profiled == nil {
			h.profiled = make(map[string]bool)
		}
		h.profiled[id] = true
		f, err := os.Create(filepath.Join(h.outDir, "cpu-"+id+".pprof"))
		if err == nil {
			if err := pprof.StartCPUProfile(f); err != nil {
				f.Close()
			} else {
				m.prof = f
				m.heapFile = filepath.Join(h.outDir, "heap-"+id+".pprof")
			}
		}
	}
	if h.o.Trace && !h.traced[id] {
		if h.traced == nil {
			h.traced = make(map[string]bool)
		}
		h.traced[id] = true
		if f, err := os.Create(filepath.Join(h.outDir, "trace-"+id+".out")); err == nil {
			if err := trace.Start(f); err != nil {
				f.Close()
			} else {
				m.trace = f
			}
		}
	}
	h.prog.start(title, total, count)
	m.wg.Go(func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		mem := []metrics.Sample{
			{Name: "/memory/classes/total:bytes"},
			{Name: "/memory/classes/heap/released:bytes"},
			{Name: "/memory/classes/heap/objects:bytes"},
		}
		var heapAt int64       // RSS when the heap profile was last written
		var heapWhen time.Time // and when
		for {
			rss := currentRSS()
			s := cpuSample{time.Now(), h.broker.cpu(), processCPU(), systemBusy()}
			m.mu.Lock()
			if rss > m.peakRSS {
				metrics.Read(mem)
				m.peakRSS = rss
				// Go's share of the RSS: what it mapped minus what it
				// returned to the OS.
				m.peakGo = int64(mem[0].Value.Uint64()) - int64(mem[1].Value.Uint64())
				m.peakHeap = int64(mem[2].Value.Uint64())
			}
			if m.heapFile != "" && rss > heapAt+heapAt/10 && time.Since(heapWhen) > 2*time.Second {
				heapAt, heapWhen = rss, time.Now()
				writeHeapProfile(m.heapFile)
			}
			m.samples = append(m.samples, s)
			m.mu.Unlock()
			select {
			case <-m.stop:
				return
			case <-t.C:
			}
		}
	})
	return m
}

// writeHeapProfile writes the heap profile (as of the last GC) to path.
func writeHeapProfile(path string) {
	f, err := os.Create(path)
	if err != nil {
		return
	}
	_ = pprof.Lookup("heap").WriteTo(f, 0)
	f.Close()
}

// end stops the sampling and the profile.
func (m *measurement) end() {
	close(m.stop)
	m.wg.Wait()
	if m.prof != nil {
		pprof.StopCPUProfile()
		m.prof.Close()
	}
	if m.trace != nil {
		trace.Stop()
		m.trace.Close()
	}
	m.h.prog.stop()
}

// between returns the samples nearest before t0 and after t1.
func (m *measurement) between(t0, t1 time.Time) (a, b cpuSample, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.samples) == 0 {
		return a, b, false
	}
	a, b = m.samples[0], m.samples[len(m.samples)-1]
	for _, s := range m.samples {
		if !s.t.After(t0) {
			a = s
		}
	}
	for i := len(m.samples) - 1; i >= 0; i-- {
		if !m.samples[i].t.Before(t1) {
			b = m.samples[i]
		}
	}
	return a, b, true
}

// brokerCPU is the broker's CPU time between t0 and t1.
func (m *measurement) brokerCPU(t0, t1 time.Time) time.Duration {
	a, b, ok := m.between(t0, t1)
	if !ok {
		return 0
	}
	return b.broker - a.broker
}

// otherCores is how many cores other processes than this one and the
// broker kept busy on average between t0 and t1: noise from a shared
// machine.
func (m *measurement) otherCores(t0, t1 time.Time) float64 {
	a, b, ok := m.between(t0, t1)
	if !ok || !b.t.After(a.t) {
		return 0
	}
	other := (b.system - a.system) - (b.self - a.self) - (b.broker - a.broker)
	return max(0, other.Seconds()/b.t.Sub(a.t).Seconds())
}

func (m *measurement) rss() (rss, goMem, heap int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.peakRSS, m.peakGo, m.peakHeap
}

// row turns a window into a result row; records are the input records the
// throughput counts.
func (m *measurement) row(id, name, kind string, g Guarantee, records int64, w window) Row {
	secs := w.Seconds()
	r := Row{
		ID: id, Name: name, Kind: kind, Guarantee: string(g),
		Records: records, Seconds: secs, Moved: w.Moved(),
	}
	r.PeakRSS, r.PeakGoMem, r.PeakHeap = m.rss()
	if secs > 0 {
		r.Throughput = float64(records) / secs
		r.MovedPerSec = float64(r.Moved) / secs
	}
	if records > 0 {
		r.CPUPerM = w.CPU.Seconds() / (float64(records) / 1e6)
		if m.h.broker != nil {
			b := m.brokerCPU(w.Start, w.End).Seconds() / (float64(records) / 1e6)
			r.BrokerCPUPerM = &b
		}
	}
	r.OtherCores = m.otherCores(w.Start, w.End)
	r.Topics = make(map[string]TopicCount)
	for t, n := range w.PerTopicIn {
		c := r.Topics[t]
		c.Fetched = n
		r.Topics[t] = c
	}
	for t, n := range w.PerTopicOut {
		c := r.Topics[t]
		c.Produced = n
		r.Topics[t] = c
	}
	return r
}

// addRow adds a result row and prints a line about it.
func (h *harness) addRow(r Row) {
	h.rep.add(r)
	h.prog.linef("%-58s %9s rec/s  %6.2f CPU s/M  %4.0f MiB  (%.1f other cores)",
		r.ID+": "+truncate(r.Name, 40), fmtRate(r.Throughput), r.CPUPerM, mib(r.PeakRSS), r.OtherCores)
}

// truncate cuts s to at most n runes.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// best runs a measurement n times (run gets the attempt number) and keeps
// the fastest row, noting the others.
func best(n int, run func(i int) (Row, error)) (Row, error) {
	var b Row
	var all []float64
	for i := range n {
		r, err := run(i)
		if err != nil {
			return r, err
		}
		all = append(all, r.Throughput)
		if i == 0 || r.Throughput > b.Throughput {
			b = r
		}
	}
	if n > 1 {
		b.Attempts = all
	}
	return b, nil
}

// createTopics creates topics with 6 partitions.
func (h *harness) createTopics(ctx context.Context, compact bool, topics ...string) error {
	for _, t := range topics {
		if err := createTopic(ctx, h.adm, t, compact); err != nil {
			return err
		}
	}
	return nil
}

// dropTopics deletes every topic whose name starts with one of prefixes,
// so the broker's memory and disk do not grow from workload to workload;
// on an external cluster it also deletes the run's groups with those
// prefixes.
func (h *harness) dropTopics(prefixes ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	td, err := h.adm.ListTopics(ctx)
	if err != nil {
		return
	}
	var del []string
	for _, t := range td.Names() {
		for _, p := range prefixes {
			if strings.HasPrefix(t, p) {
				del = append(del, t)
				break
			}
		}
	}
	if len(del) > 0 {
		_, _ = h.adm.DeleteTopics(ctx, del...)
	}
	if h.broker != nil {
		return
	}
	groups, err := h.adm.ListGroups(ctx)
	if err != nil {
		return
	}
	var delGroups []string
	for _, g := range groups.Groups() {
		for _, p := range prefixes {
			if strings.HasPrefix(g, p) && strings.HasPrefix(g, h.ns) {
				delGroups = append(delGroups, g)
				break
			}
		}
	}
	if len(delGroups) > 0 {
		_, _ = h.adm.DeleteGroups(ctx, delGroups...)
	}
}

// appLogger logs warnings and errors of the apps under test into h.logs,
// shown when a phase fails.
func (h *harness) appLogger() *slog.Logger {
	if h.o.AppLog != nil {
		return slog.New(slog.NewTextHandler(h.o.AppLog, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// app is a choreo App running in this process.
type app struct {
	app     *runtime.App
	errc    chan error
	running chan struct{}
}

// startApp builds and starts an App with the harness's settings (choreo's
// defaults, commit every second) and the meter's hooks on every client.
func (h *harness) startApp(ctx context.Context, b *runtime.Builder, appID, stateDir string, m *meter, rl runtime.RestoreListener) (*app, error) {
	a := &app{errc: make(chan error, 1), running: make(chan struct{})}
	var once sync.Once
	cfg := runtime.Config{
		Brokers:        h.brokers,
		ApplicationID:  appID,
		StateDir:       stateDir,
		CommitInterval: time.Second,
		Guarantee:      runtime.AtLeastOnce,
		Logger:         h.appLogger(),
		Security:       h.o.Security,
		// The apps' processing goroutines (the baselines use one loop).
		ProcessingThreads: h.o.Threads,
		RestoreListener:   rl,
		StateListener: func(_, to runtime.State) {
			if to == runtime.Running {
				once.Do(func() { close(a.running) })
			}
		},
	}
	if h.guarantee == EOS {
		// Same commit interval as at-least-once, so the ratio compares
		// the transaction cost, not the commit frequency.
		cfg.Guarantee = runtime.ExactlyOnce
	}
	if m != nil {
		cfg.ClientOpts = []kgo.Opt{kgo.WithHooks(m)}
	}
	var err error
	if a.app, err = runtime.New(b, cfg); err != nil {
		return nil, err
	}
	go func() { a.errc <- a.app.Run(context.WithoutCancel(ctx)) }()
	return a, nil
}

// wait returns when done closes, or fails when the app stops on its own or
// ctx ends.
func (a *app) wait(ctx context.Context, done <-chan struct{}, what string) error {
	select {
	case <-done:
		return nil
	case err := <-a.errc:
		a.errc <- err
		return fmt.Errorf("app stopped while waiting for %s: %v", what, err)
	case <-ctx.Done():
		return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
	}
}

// close stops the app gracefully and returns Run's error.
func (a *app) close() error {
	a.app.Close()
	return <-a.errc
}
