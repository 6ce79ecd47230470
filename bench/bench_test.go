package bench

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/internal/apptest"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestHarnessTiny runs the whole suite end to end on tiny sizes (the same
// code as -quick and the full run, with a few thousand records), so the
// harness cannot rot: broker child process, load generator child process,
// baselines, W1–W5, report, plot and README update.
func TestHarnessTiny(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	out := t.TempDir()
	var progress apptest.Buffer
	rep, err := Run(ctx, Options{Scale: Tiny, Out: out, Progress: &progress})
	if err != nil {
		t.Fatalf("Run: %v\nprogress:\n%s", err, progress.String())
	}
	for _, id := range []string{
		basePass, baseState, baseStateBig, basePebble,
		"w1-alos", "w2-small-alos", "w2-big-alos", "w3-load-alos", "w3-alos", "w4-alos",
		"w5-raw-alos", "w5-cold-alos", "w5-warm-alos",
	} {
		r, ok := rep.Row(id)
		if !ok {
			t.Errorf("no row %s", id)
			continue
		}
		if r.Records <= 0 || r.Throughput <= 0 || r.Seconds <= 0 {
			t.Errorf("%s: records %d, throughput %v, seconds %v", id, r.Records, r.Throughput, r.Seconds)
		}
		if r.PeakRSS <= 0 {
			t.Errorf("%s: no peak RSS", id)
		}
		if r.Kind == "choreo" && r.Ratio <= 0 {
			t.Errorf("%s: no ratio to baseline %q", id, r.Baseline)
		}
	}
	sz, _ := sizesFor(Tiny)
	if r, ok := rep.Row("w5-warm-alos"); ok && r.Records != int64(sz.RestoreTail) {
		t.Errorf("warm restore replayed %d records, want the %d-record tail", r.Records, sz.RestoreTail)
	}
	if r, ok := rep.Row("w4-alos"); ok && (r.MovedRatio <= 0 || r.RealTime <= 0) {
		t.Errorf("W4: moved ratio %v, real-time factor %v", r.MovedRatio, r.RealTime)
	}
	if len(rep.Latency) != len(sz.Latency) {
		t.Fatalf("%d latency rows, want %d", len(rep.Latency), len(sz.Latency))
	}
	for _, l := range rep.Latency {
		// Every event yields one portfolio update carrying the event's
		// creation header through three repartitions and two stores.
		if l.Outputs != l.Events || l.NoHeader != 0 || !l.Drained || l.P50 <= 0 || l.P99 < l.P50 {
			t.Errorf("latency run %+v", l)
		}
	}

	// The files.
	md, err := os.ReadFile(filepath.Join(rep.Dir, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| workload |", "`w2-small-alos`", "Goals of issue 6", "p99"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("results.md lacks %q", want)
		}
	}
	js, err := os.ReadFile(filepath.Join(rep.Dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js, &back); err != nil || len(back.Rows) != len(rep.Rows) {
		t.Errorf("results.json: %v, %d rows", err, len(back.Rows))
	}
	checkSVG(t, filepath.Join(rep.Dir, "plot.svg"))

	readme := filepath.Join(t.TempDir(), "README.md")
	if err := os.WriteFile(readme, []byte("# x\n\n<!-- results:start -->\nold\n<!-- results:end -->\n\ntail\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := UpdateReadme(readme, rep, "go run ./bench/cmd/bench -scale tiny", rep.Dir); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(readme)
	if s := string(b); strings.Contains(s, "\nold\n") || !strings.HasPrefix(s, "# x\n\n<!-- results:start -->") || !strings.Contains(s, "`w1-alos`") || !strings.HasSuffix(s, "<!-- results:end -->\n\ntail\n") {
		t.Errorf("README not updated as expected:\n%s", s)
	}
}

// checkSVG checks that path is well-formed XML with an svg root.
func checkSVG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := xml.NewDecoder(f)
	root := ""
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
	if root != "svg" {
		t.Errorf("%s: root element %q", path, root)
	}
}

func TestReportEmptyAndHelpers(t *testing.T) {
	r := &Report{Scale: Quick}
	sz, _ := sizesFor(Quick)
	r.evaluate(sz)
	for _, g := range r.Goals {
		if g.Status == "met" && !strings.HasPrefix(g.Goal, "Suite duration") {
			t.Errorf("goal %q met without measurements", g.Goal)
		}
	}
	checkSVGString(t, r.SVG())
	if got := pct([]time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0.5); got != 5 {
		t.Errorf("p50 = %v", got)
	}
	if got := pct([]time.Duration{1, 2, 3}, 0.99); got != 3 {
		t.Errorf("p99 = %v", got)
	}
	for n, want := range map[int64]string{999: "999", 1500: "1.5k", 200_000: "200k", 1_000_000: "1.00M", 10_000_000: "10.0M"} {
		if got := fmtCount(n); got != want {
			t.Errorf("fmtCount(%d) = %q, want %q", n, got, want)
		}
	}
	if _, err := sizesFor("huge"); err == nil {
		t.Error("unknown scale accepted")
	}
	if _, err := Run(context.Background(), Options{Scale: Tiny, Guarantees: []Guarantee{"xa"}}); err == nil {
		t.Error("unknown guarantee accepted")
	}
	if _, err := Run(context.Background(), Options{Scale: Tiny, Workloads: []string{"w9"}}); err == nil {
		t.Error("unknown workload accepted")
	}
}

func checkSVGString(t *testing.T, s string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "p.svg")
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	checkSVG(t, p)
}

func TestMeterWindow(t *testing.T) {
	m := newMeter([]string{"in"}, []string{"out"}, 3)
	m.OnFetchBatchRead(kgoBroker, "other", 0, fetchMetrics(5))
	if w := m.window(); !w.Start.IsZero() {
		t.Fatal("a fetch from a non-input topic opened the window")
	}
	m.OnFetchBatchRead(kgoBroker, "in", 0, fetchMetrics(2))
	m.OnProduceBatchWritten(kgoBroker, "changelog", 0, produceMetrics(7))
	m.OnProduceBatchWritten(kgoBroker, "out", 0, produceMetrics(2))
	select {
	case <-m.done:
		t.Fatal("done before the wanted outputs")
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	waited := make(chan error, 1)
	go func() { waited <- m.waitOutputs(ctx, 3) }()
	m.OnProduceBatchWritten(kgoBroker, "out", 1, produceMetrics(1))
	<-m.done
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	w := m.window()
	if w.Fetched != 7 || w.Produced != 10 || w.Outputs != 3 || w.Moved() != 17 || w.End.Before(w.Start) {
		t.Errorf("window %+v", w)
	}
}

var kgoBroker kgo.BrokerMetadata

func fetchMetrics(n int) kgo.FetchBatchMetrics { return kgo.FetchBatchMetrics{NumRecords: n} }

func produceMetrics(n int) kgo.ProduceBatchMetrics { return kgo.ProduceBatchMetrics{NumRecords: n} }
