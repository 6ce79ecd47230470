package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/bench/load"
	"github.com/choreo-go/choreo/examples/orders/orders"
	"github.com/choreo-go/choreo/runtime"
)

// peakHourEvents is the size of the peak hour the real-time factor refers to.
const peakHourEvents = orders.DefaultEvents

// runW4 measures the order topology: the peak hour as a burst (records
// moved per second against the stateful ceiling's, and how much faster
// than real time), then, on the same running app, end-to-end latency at
// multiples of the peak rate with the load coming from a child process.
func (h *harness) runW4(ctx context.Context, g Guarantee) error {
	ctx, cancel := h.phaseCtx(ctx)
	defer cancel()
	prefix := h.ns + "w4-" + string(g) + "-"
	appID := prefix + "orders"
	if h.broker == nil {
		// The order topology's topics have fixed names: on an external
		// cluster they may hold someone's data, which W4 would count and
		// then delete.
		if err := h.refuseExisting(ctx, orders.TopicProducts, orders.TopicOrderLines, orders.TopicPortfolio); err != nil {
			return err
		}
	}
	defer h.dropTopics(orders.TopicProducts, orders.TopicOrderLines, orders.TopicPortfolio, prefix)
	if err := orders.CreateTopics(ctx, h.adm, partitions); err != nil {
		return err
	}
	events := h.sz.OrderEvents
	o := orders.DefaultOptions(h.o.Seed)
	if events != orders.DefaultEvents {
		o.Lines, o.MaxEvents = orders.LinesFor(events), events
	}
	var produced atomic.Int64
	h.prog.start("preload W4 order events", int64(events), produced.Load)
	// A client of its own: the shared one caches the topic ids of an
	// earlier W4 run's topics, which were deleted and created again.
	pcl, err := h.newClient(orders.ProducerOpts()...)
	if err != nil {
		h.prog.stop()
		return err
	}
	_, err = load.ProduceOrders(ctx, pcl, o, func(n int) { produced.Store(int64(n)) })
	pcl.Close()
	h.prog.stop()
	if err != nil {
		return err
	}
	records := int64(o.Records())

	b := runtime.NewBuilder()
	orders.Topology(b)
	m := newMeter([]string{orders.TopicProducts, orders.TopicOrderLines}, []string{orders.TopicPortfolio}, 0)
	id := "w4-" + string(g)
	title := fmt.Sprintf("W4 order topology, %s-event burst", fmtCount(int64(events)))
	ms := h.begin(id, title, int64(events), m.outN.Load)
	a, err := h.startApp(ctx, b, appID, filepath.Join(h.tmp, appID), m, nil)
	if err != nil {
		ms.end()
		return err
	}
	werr := waitProcessed(ctx, h.cl, a, appID, orders.SourceTopics(appID))
	ms.end()
	if werr != nil {
		a.close()
		return werr
	}
	w := m.window()
	r := ms.row(id, fmt.Sprintf("W4 order topology (join + aggregation), %s events + %s products", fmtCount(int64(events)), fmtCount(int64(o.Products))), "choreo", g, records, w)
	r.Baseline = baseState
	r.MovedBaseline = true
	r.Events = int64(events)
	if secs := w.Seconds(); secs > 0 {
		r.RealTime = 3600 * float64(events) / peakHourEvents / secs
	}
	r.Note = fmt.Sprintf("%s portfolio updates for %s events; %s records moved (inputs, 3 repartition topics both ways, changelogs of 4 stores, output); peak hour processed %.0f× faster than real time",
		fmtCount(w.Outputs), fmtCount(int64(events)), fmtCount(w.Moved()), r.RealTime)
	h.addRow(r)

	var lerr error
	if !h.o.NoLatency {
		lerr = h.latencyRuns(ctx, g, appID, events)
	}
	if cerr := a.close(); cerr != nil && lerr == nil {
		lerr = fmt.Errorf("app: %w", cerr)
	}
	return lerr
}

// waitProcessed waits until the app's group has processed everything in
// topics (orders.WaitProcessed), failing early if the app stops.
func waitProcessed(ctx context.Context, cl *kgo.Client, a *app, group string, topics []string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- orders.WaitProcessed(ctx, cl, group, topics) }()
	select {
	case err := <-done:
		return err
	case err := <-a.errc:
		a.errc <- err
		return fmt.Errorf("app stopped while processing: %v", err)
	}
}

// latencyBucket collects the latencies of one run.
type latencyBucket struct {
	mu       sync.Mutex
	d        []time.Duration
	noHeader int64
	n        atomic.Int64
}

func (b *latencyBucket) add(d time.Duration, ok bool) {
	b.mu.Lock()
	if ok {
		b.d = append(b.d, d)
	} else {
		b.noHeader++
	}
	b.mu.Unlock()
	b.n.Add(1)
}

// latencyRuns produces order events at each multiple of the peak rate from
// a cmd/load child process, and measures the time from each event's
// creation header to the reception of the portfolio update it causes.
func (h *harness) latencyRuns(ctx context.Context, g Guarantee, appID string, idBase int) error {
	ends, err := h.adm.ListEndOffsets(ctx, orders.TopicPortfolio)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return err
	}
	from := map[string]map[int32]kgo.Offset{orders.TopicPortfolio: {}}
	ends.Each(func(o kadm.ListedOffset) { from[o.Topic][o.Partition] = kgo.NewOffset().At(o.Offset) })
	lc, err := h.newClient(kgo.ConsumePartitions(from))
	if err != nil {
		return err
	}
	defer lc.Close()
	var cur atomic.Pointer[latencyBucket]
	cur.Store(&latencyBucket{})
	cctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for cctx.Err() == nil {
			fs := lc.PollFetches(cctx)
			now := time.Now()
			b := cur.Load()
			fs.EachRecord(func(r *kgo.Record) {
				c, ok := load.Created(r)
				b.add(now.Sub(c), ok)
			})
		}
	})
	defer func() {
		stop()
		wg.Wait()
	}()

	for _, st := range h.sz.Latency {
		rate := st.Multiple * orders.PeakRate
		events := max(1, int(rate*st.Duration.Seconds()))
		b := &latencyBucket{}
		cur.Store(b)
		title := fmt.Sprintf("W4 latency at %g× peak (%.0f events/s, %s)", st.Multiple, rate, st.Duration)
		h.prog.start(title, int64(events), b.n.Load)
		cmd := exec.CommandContext(ctx, h.tools.load, append([]string{"-orders",
			"-brokers", strings.Join(h.brokers, ","),
			"-rate", strconv.FormatFloat(rate, 'f', -1, 64),
			"-events", strconv.Itoa(events),
			"-idbase", strconv.Itoa(idBase),
			"-seed", strconv.FormatUint(h.o.Seed, 10)},
			securityArgs(h.o.Security)...)...)
		cmd.Env = securityEnv(os.Environ(), h.o.Security)
		dieWithParent(cmd)
		var stderr tailBuffer
		stderr.max = 8 << 10
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			h.prog.stop()
			return fmt.Errorf("load generator: %w: %s", err, stderr.String())
		}
		var gs struct {
			load.Stats
			RatePerSec float64 `json:"rate_per_s"`
		}
		_ = json.Unmarshal(out, &gs)
		idBase += events
		dctx, dcancel := context.WithTimeout(ctx, h.sz.DrainTimeout)
		derr := orders.WaitProcessed(dctx, h.cl, appID, orders.SourceTopics(appID))
		dcancel()
		h.prog.stop()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.mu.Lock()
		d := slices.Clone(b.d)
		noHeader := b.noHeader
		b.mu.Unlock()
		slices.Sort(d)
		lr := LatencyRow{
			Guarantee: g, Multiple: st.Multiple, Rate: rate, Duration: st.Duration.Seconds(),
			Events: int64(events), Outputs: int64(len(d)), NoHeader: noHeader,
			Drained: derr == nil, GeneratorRate: gs.RatePerSec,
		}
		if len(d) > 0 {
			lr.P50 = ms(pct(d, 0.50))
			lr.P99 = ms(pct(d, 0.99))
			lr.Max = ms(d[len(d)-1])
		}
		h.rep.addLatency(lr)
		h.prog.linef("  %s: p50 %.1f ms, p99 %.1f ms over %d outputs%s", title, lr.P50, lr.P99, len(d),
			map[bool]string{true: "", false: fmt.Sprintf(" (backlog not drained after %s)", h.sz.DrainTimeout)}[lr.Drained])
	}
	return nil
}

// refuseExisting fails if one of topics exists on the cluster.
func (h *harness) refuseExisting(ctx context.Context, topics ...string) error {
	td, err := h.adm.ListTopics(ctx, topics...)
	if err != nil {
		return err
	}
	var have []string
	for _, t := range topics {
		if d, ok := td[t]; ok && d.Err == nil {
			have = append(have, t)
		}
	}
	if len(have) > 0 {
		return fmt.Errorf("the cluster already has the topics %s, which W4 would read and then delete: delete them first or leave out %s",
			strings.Join(have, ", "), W4)
	}
	return nil
}

// securityArgs are the flags of bench/cmd/load that give it s (every
// one, so its environment cannot add settings s lacks); the password goes
// into the environment (securityEnv), never on the command line.
func securityArgs(s runtime.Security) []string {
	return []string{
		"-tls=" + strconv.FormatBool(s.TLS),
		"-tls-ca=" + s.CAFile,
		"-tls-cert=" + s.CertFile,
		"-tls-key=" + s.KeyFile,
		"-tls-server-name=" + s.ServerName,
		"-sasl-mechanism=" + s.SASLMechanism,
		"-sasl-user=" + s.User,
		"-sasl-password-file=" + s.PasswordFile,
	}
}

// securityEnv is env with CHOREO_SASL_PASSWORD set to s's password, or
// removed when s has none.
func securityEnv(env []string, s runtime.Security) []string {
	out := slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		return strings.HasPrefix(kv, runtime.EnvSASLPassword+"=")
	})
	if s.Password != "" {
		out = append(out, runtime.EnvSASLPassword+"="+s.Password.Reveal())
	}
	return out
}

// pct is the q-quantile of sorted d (nearest rank).
func pct(d []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(d))+0.5) - 1
	return d[min(max(i, 0), len(d)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
