package runtime_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/runtime"
)

// scrape fetches /metrics over HTTP and parses the text exposition format.
func scrape(t *testing.T, srv *httptest.Server) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, srv, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d: %s", code, body)
	}
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, body)
	}
	return fams
}

// series returns the value of every series of name whose labels include
// want, keyed by its full label set.
func series(fams map[string]*dto.MetricFamily, name string, want ...string) map[string]float64 {
	out := map[string]float64{}
	f := fams[name]
	if f == nil {
		return out
	}
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		var key []string
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
			key = append(key, l.GetName()+"="+l.GetValue())
		}
		for i := 0; i+1 < len(want); i += 2 {
			if labels[want[i]] != want[i+1] {
				continue next
			}
		}
		var v float64
		switch {
		case m.Counter != nil:
			v = m.GetCounter().GetValue()
		case m.Gauge != nil:
			v = m.GetGauge().GetValue()
		case m.Histogram != nil:
			v = float64(m.GetHistogram().GetSampleCount())
		case m.Untyped != nil:
			v = m.GetUntyped().GetValue()
		}
		out[strings.Join(key, ",")] = v
	}
	return out
}

func sum(s map[string]float64) float64 {
	total := 0.0
	for _, v := range s {
		total += v
	}
	return total
}

// gateListener blocks the first restore at its start until released, so a
// test can look at a restore in progress.
type gateListener struct {
	once    sync.Once
	started chan struct{}
	release chan struct{}
}

func (g *gateListener) OnRestoreStart(string, string, string, int32, int64, int64) {
	first := false
	g.once.Do(func() { first = true; close(g.started) })
	if first {
		<-g.release
	}
}
func (g *gateListener) OnBatchRestored(string, string, string, int32, int64, int64) {}
func (g *gateListener) OnRestoreEnd(string, string, string, int32, int64)           {}
func (g *gateListener) OnRestoreSuspended(string, string, string, int32, int64)     {}

// TestMetricsCountsLagAndRestore scrapes /metrics of an app running on kfake:
// the record counters equal the records sent and produced, the lag drops to
// 0, and a cold restart's restore shows records remaining, then none, with
// every changelog record counted as restored.
func TestMetricsCountsLagAndRestore(t *testing.T) {
	for _, g := range []runtime.Guarantee{runtime.AtLeastOnce, runtime.ExactlyOnce} {
		t.Run(g.String(), func(t *testing.T) { testMetricsCountsLagAndRestore(t, g) })
	}
}

func testMetricsCountsLagAndRestore(t *testing.T, guarantee runtime.Guarantee) {
	const n = 3000
	const changelog = "count-app-counts-changelog"
	c := newCluster(t)
	c.createTopic("in", 2)
	c.createTopic("out", 2)
	// One key per record: every count is 1, so the changelog holds exactly
	// one record per input record, however the commits fall.
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{Key: []byte("k" + strconv.Itoa(i)), Value: []byte("v")})
	}
	c.produce("in", recs...)

	cfg := c.config(t.TempDir(), "i1")
	cfg.Guarantee = guarantee
	app, err := runtime.New(countTopology(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(app.Handler())
	defer srv.Close()
	stop := running(t, app)

	app1 := []string{"application_id", "count-app"}
	eventually(t, 60*time.Second, "counters equal the records sent, lag 0", func() (bool, string) {
		m := scrape(t, srv)
		consumed := sum(series(m, "choreo_records_consumed_total", append(app1, "topic", "in")...))
		processed := sum(series(m, "choreo_records_processed_total", append(app1, "topic", "in")...))
		sent := sum(series(m, "choreo_records_sent_total", append(app1, "topic", "out")...))
		out := sum(series(m, "choreo_records_produced_total", append(app1, "topic", "out")...))
		cl := sum(series(m, "choreo_records_produced_total", append(app1, "topic", changelog)...))
		lags := series(m, "choreo_consumer_lag_records", append(app1, "topic", "in")...)
		running := sum(series(m, "choreo_app_state", append(app1, "state", "RUNNING")...))
		state := fmt.Sprintf("consumed %v processed %v sent out %v produced out %v changelog %v lag %v running %v", consumed, processed, sent, out, cl, lags, running)
		return consumed == n && processed == n && sent == n && out == n && cl == n && len(lags) == 2 && sum(lags) == 0 && running == 1, state
	})
	m := scrape(t, srv)
	if got := sum(series(m, "choreo_commit_latency_seconds", append(app1, "result", "committed")...)); got < 1 {
		t.Errorf("commit latency histogram counts %v commits, want some", got)
	}
	if got := sum(series(m, "choreo_process_latency_seconds", app1...)); got < 1 {
		t.Errorf("process latency histogram has %v observations, want some", got)
	}
	if sizes := series(m, "choreo_state_size_bytes", app1...); len(sizes) != 2 || sum(sizes) <= 0 {
		t.Errorf("state sizes %v, want 2 tasks with bytes on disk", sizes)
	}
	if got := sum(series(m, "choreo_tasks", append(app1, "phase", "active")...)); got != 2 {
		t.Errorf("active tasks %v, want 2", got)
	}
	if got := sum(series(m, "choreo_rebalances_total", app1...)); got < 1 {
		t.Errorf("rebalances %v, want at least the first assignment", got)
	}
	if got := sum(series(m, "choreo_task_changes_total", append(app1, "change", "assigned")...)); got != 2 {
		t.Errorf("tasks assigned %v, want 2", got)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := sum(series(scrape(t, srv), "choreo_app_state", append(app1, "state", "NOT_RUNNING")...)); got != 1 {
		t.Errorf("app_state NOT_RUNNING = %v after Run returned, want 1", got)
	}

	// A second instance with empty state restores both tasks from the
	// changelog; the first restore waits at its start until scraped.
	clRecords := len(c.readAll(changelog))
	if clRecords < n {
		t.Fatalf("changelog has %d records, want at least %d", clRecords, n)
	}
	gate := &gateListener{started: make(chan struct{}), release: make(chan struct{})}
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(gate.release) }) }
	t.Cleanup(release)
	cfg = c.config(t.TempDir(), "i2")
	cfg.Guarantee = guarantee
	cfg.RestoreListener = gate
	app2, err := runtime.New(countTopology(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv2 := httptest.NewServer(app2.Handler())
	defer srv2.Close()
	running(t, app2)
	select {
	case <-gate.started:
	case <-time.After(60 * time.Second):
		t.Fatal("no restore started within 60s")
	}
	m = scrape(t, srv2)
	remaining := series(m, "choreo_restore_remaining_records", append(app1, "store", "counts", "topic", changelog)...)
	if len(remaining) != 1 || sum(remaining) <= 0 {
		t.Fatalf("restore remaining during the first restore = %v, want one store with records left", remaining)
	}
	if got := sum(series(m, "choreo_restored_records_total", app1...)); got != 0 {
		t.Fatalf("restored records before the first batch = %v, want 0", got)
	}
	// Task phases are published by the loop after each poll.
	eventually(t, 10*time.Second, "2 tasks restoring", func() (bool, string) {
		got := sum(series(scrape(t, srv2), "choreo_tasks", append(app1, "phase", "restoring")...))
		return got == 2, fmt.Sprint(got)
	})
	release()
	eventually(t, 60*time.Second, "restore done", func() (bool, string) {
		m := scrape(t, srv2)
		remaining := series(m, "choreo_restore_remaining_records", app1...)
		restored := sum(series(m, "choreo_restored_records_total", append(app1, "store", "counts")...))
		lags := series(m, "choreo_consumer_lag_records", app1...)
		running := sum(series(m, "choreo_app_state", append(app1, "state", "RUNNING")...))
		state := fmt.Sprintf("remaining %v restored %v (changelog %d) lag %v running %v", remaining, restored, clRecords, lags, running)
		return len(remaining) == 2 && sum(remaining) == 0 && restored == float64(clRecords) &&
			len(lags) == 2 && sum(lags) == 0 && running == 1, state
	})
}

// TestMetricsRegistries: each App has a registry of its own by default, so
// two Apps of one application in one process do not collide; a registry in
// Config gets the metrics and /metrics serves it.
func TestMetricsRegistries(t *testing.T) {
	cfg := func(app string) runtime.Config {
		return runtime.Config{Brokers: []string{"127.0.0.1:1"}, ApplicationID: app, InMemoryState: true}
	}
	newApp := func(c runtime.Config) *runtime.App {
		t.Helper()
		a, err := runtime.New(countTopology(), c)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return a
	}
	created := func(g prometheus.Gatherer, app string) float64 {
		t.Helper()
		fams, err := g.Gather()
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]*dto.MetricFamily{}
		for _, f := range fams {
			m[f.GetName()] = f
		}
		return sum(series(m, "choreo_app_state", "application_id", app, "state", "CREATED"))
	}

	a1, a2 := newApp(cfg("dup")), newApp(cfg("dup"))
	if a1.MetricsGatherer() == a2.MetricsGatherer() {
		t.Fatal("two Apps share the default registry")
	}
	for _, a := range []*runtime.App{a1, a2} {
		srv := httptest.NewServer(a.Handler())
		m := scrape(t, srv)
		srv.Close()
		if got := sum(series(m, "choreo_app_state", "application_id", "dup", "state", "CREATED")); got != 1 {
			t.Fatalf("/metrics app_state CREATED = %v, want 1", got)
		}
		if len(series(m, "go_goroutines")) != 1 {
			t.Fatal("the default registry has no Go runtime metrics")
		}
	}

	reg := prometheus.NewRegistry()
	c := cfg("shared")
	c.MetricsRegisterer = reg
	a3 := newApp(c)
	if got := created(reg, "shared"); got != 1 {
		t.Fatalf("user registry: app_state CREATED = %v, want 1", got)
	}
	if a3.MetricsGatherer() != prometheus.Gatherer(reg) {
		t.Fatal("/metrics does not serve the user's registry")
	}
	// Another application on the same registry is fine ...
	c = cfg("other")
	c.MetricsRegisterer = reg
	newApp(c)
	if created(reg, "other") != 1 || created(reg, "shared") != 1 {
		t.Fatal("two applications on one registry: metrics missing")
	}
	// ... a second instance of the same one needs a distinguishing label.
	c = cfg("shared")
	c.MetricsRegisterer = reg
	if _, err := runtime.New(countTopology(), c); !errors.Is(err, runtime.ErrInvalidConfig) {
		t.Fatalf("second App of one application on one registry: err %v, want ErrInvalidConfig", err)
	}
	// Wrapped with an instance label each, both fit on one registry.
	wreg := prometheus.NewRegistry()
	var a5 *runtime.App
	for _, inst := range []string{"a", "b"} {
		c.MetricsRegisterer = prometheus.WrapRegistererWith(prometheus.Labels{"instance": inst}, wreg)
		a5 = newApp(c)
	}
	if got := created(wreg, "shared"); got != 2 {
		t.Fatalf("app_state CREATED series of the wrapped instances = %v, want 2", got)
	}
	// A registerer that cannot gather: /metrics serves the app's own metrics.
	if got := created(a5.MetricsGatherer(), "shared"); got != 1 {
		t.Fatalf("gatherer of an App with a wrapped registerer: CREATED = %v, want 1", got)
	}
	// MetricsCollector registers anywhere.
	own := prometheus.NewRegistry()
	own.MustRegister(a5.MetricsCollector())
	if got := created(own, "shared"); got != 1 {
		t.Fatalf("MetricsCollector on a new registry: CREATED = %v, want 1", got)
	}
}

// TestMetricsBadRecords: records that fail are counted by kind and policy in
// /metrics, and their dead-letter copies as produced records.
func TestMetricsBadRecords(t *testing.T) {
	c := newCluster(t)
	c.createTopic("in", 1)
	c.createTopic("out", 1)
	b := runtime.NewBuilder()
	runtime.StreamOf(b, "in", runtime.String(), runtime.Int64()).
		Filter(func(_ string, v int64) bool {
			if v == 13 {
				panic("unlucky")
			}
			return true
		}).To("out")
	cfg := c.config(t.TempDir(), "i1")
	cfg.DeserializationErrors = runtime.DeadLetterOnError
	cfg.ProcessingErrors = runtime.SkipOnError
	app, err := runtime.New(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(app.Handler())
	defer srv.Close()
	running(t, app)

	i64 := func(v int64) []byte { b, _ := runtime.Int64().Serialize(v); return b }
	c.produce("in",
		&kgo.Record{Key: []byte("a"), Value: i64(1)},
		&kgo.Record{Key: []byte("b"), Value: []byte("not an int64")},
		&kgo.Record{Key: []byte("c"), Value: i64(13)},
		&kgo.Record{Key: []byte("d"), Value: []byte("nope")},
		&kgo.Record{Key: []byte("e"), Value: i64(2)},
	)
	app1 := []string{"application_id", "count-app"}
	eventually(t, 60*time.Second, "bad records counted", func() (bool, string) {
		m := scrape(t, srv)
		dlq := sum(series(m, "choreo_records_dead_lettered_total", append(app1, "kind", "deserialization")...))
		dlqAll := sum(series(m, "choreo_records_dead_lettered_total", app1...))
		skipped := sum(series(m, "choreo_records_skipped_total", append(app1, "kind", "processing")...))
		skippedAll := sum(series(m, "choreo_records_skipped_total", app1...))
		processed := sum(series(m, "choreo_records_processed_total", app1...))
		out := sum(series(m, "choreo_records_produced_total", append(app1, "topic", "out")...))
		dlqOut := sum(series(m, "choreo_records_produced_total", append(app1, "topic", "count-app-dlq")...))
		dlqSent := sum(series(m, "choreo_records_sent_total", append(app1, "topic", "count-app-dlq")...))
		state := fmt.Sprintf("dead-lettered %v (all kinds %v) skipped %v (all kinds %v) processed %v out %v dlq topic %v (sent %v)",
			dlq, dlqAll, skipped, skippedAll, processed, out, dlqOut, dlqSent)
		return dlq == 2 && dlqAll == 2 && skipped == 1 && skippedAll == 1 && processed == 5 && out == 2 && dlqOut == 2 && dlqSent == 2, state
	})
	if got := app.DeadLetteredRecords(); got != 2 {
		t.Errorf("DeadLetteredRecords = %d, want 2 like the metric", got)
	}
}
