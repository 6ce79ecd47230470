package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"time"

	"github.com/choreo-go/choreo/examples/orders/orders"
)

// Row is one measured workload or baseline.
type Row struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Kind      string `json:"kind"` // "baseline" or "choreo"
	Guarantee string `json:"guarantee,omitempty"`
	// Records is the input records the throughput counts.
	Records    int64   `json:"records"`
	Seconds    float64 `json:"seconds"`
	Throughput float64 `json:"records_per_s"`
	// Baseline is the ID of the row the ratios compare with.
	Baseline string  `json:"baseline,omitempty"`
	Ratio    float64 `json:"ratio,omitempty"`
	// Moved is every record fetched or produced by the code under test.
	Moved       int64   `json:"moved"`
	MovedPerSec float64 `json:"moved_per_s"`
	// MovedBaseline makes the moved ratio the headline (topologies with
	// repartitions, W4).
	MovedBaseline bool    `json:"moved_is_headline,omitempty"`
	MovedRatio    float64 `json:"moved_ratio,omitempty"`
	// CPUPerM is this process's CPU seconds per million input records.
	CPUPerM float64 `json:"cpu_s_per_m"`
	// BrokerCPUPerM is the broker process's CPU seconds per million; nil
	// on an external cluster, whose CPU the harness cannot see.
	BrokerCPUPerM *float64 `json:"broker_cpu_s_per_m,omitempty"`
	// PeakRSS is the highest RSS of this process during the phase.
	PeakRSS int64 `json:"peak_rss_bytes"`
	// PeakGoMem is the memory the Go runtime held (mapped minus released
	// to the OS), and PeakHeap
	// its live heap objects, when the RSS peaked; the rest of the RSS is
	// outside Go (Pebble's block cache and memtables, allocated with cgo).
	PeakGoMem int64 `json:"peak_go_mem_bytes"`
	PeakHeap  int64 `json:"peak_heap_objects_bytes"`
	// OtherCores is the CPU other processes used during the window, in
	// cores: how noisy the machine was.
	OtherCores float64 `json:"other_cores"`
	// Topics counts the records fetched and produced per topic.
	Topics map[string]TopicCount `json:"topics,omitempty"`
	// Attempts are the throughputs of every attempt when the row is the
	// best of several.
	Attempts []float64 `json:"attempts,omitempty"`
	// Events and RealTime (W4): order-line events, and how many times
	// faster than real time the peak hour is processed.
	Events   int64   `json:"events,omitempty"`
	RealTime float64 `json:"real_time_factor,omitempty"`
	// Startup (W5): seconds from Run to the Running state.
	Startup float64 `json:"startup_s,omitempty"`
	Note    string  `json:"note,omitempty"`
}

// TopicCount is what the code under test fetched from and produced to a topic.
type TopicCount struct {
	Fetched  int64 `json:"fetched,omitempty"`
	Produced int64 `json:"produced,omitempty"`
}

// LatencyRow is one W4 latency run.
type LatencyRow struct {
	Guarantee     Guarantee `json:"guarantee"`
	Multiple      float64   `json:"multiple_of_peak"`
	Rate          float64   `json:"events_per_s"`
	GeneratorRate float64   `json:"generator_rate"`
	Duration      float64   `json:"duration_s"`
	Events        int64     `json:"events"`
	Outputs       int64     `json:"outputs"`
	NoHeader      int64     `json:"outputs_without_header,omitempty"`
	P50           float64   `json:"p50_ms"`
	P99           float64   `json:"p99_ms"`
	Max           float64   `json:"max_ms"`
	Drained       bool      `json:"drained"`
}

// Goal is one goal of issue 6 with its verdict.
type Goal struct {
	Goal     string `json:"goal"`
	Target   string `json:"target"`
	Measured string `json:"measured"`
	Status   string `json:"status"` // met, missed, not measured
}

// Machine describes where the run happened.
type Machine struct {
	CPU        string `json:"cpu"`
	NProc      int    `json:"nproc"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	GoVersion  string `json:"go_version"`
	OS         string `json:"os"`
	Race       bool   `json:"race,omitempty"`
}

// Report is the outcome of a Run.
type Report struct {
	Scale     Scale         `json:"scale"`
	Started   time.Time     `json:"started"`
	Took      time.Duration `json:"took_ns"`
	Machine   Machine       `json:"machine"`
	Workloads []string      `json:"workloads"`
	Dir       string        `json:"-"`
	Rows      []Row         `json:"rows"`
	Latency   []LatencyRow  `json:"latency,omitempty"`
	Goals     []Goal        `json:"goals"`
	// MaxRSS is the process's peak RSS over the whole run.
	MaxRSS int64 `json:"max_rss_bytes"`
	// Repeat is the number of attempts of the repeated measurements.
	Repeat int `json:"repeat"`
	// Threads is the ProcessingThreads of the apps under test.
	Threads int `json:"threads"`
	// Brokers are the seed brokers of the external cluster the run used
	// (Options.Brokers); empty when the harness ran its own broker.
	Brokers []string `json:"brokers,omitempty"`
	// Security describes the TLS and SASL settings of an external
	// cluster's clients (Security.String: no secrets).
	Security string `json:"security,omitempty"`
	// LoadBefore and LoadAfter are the machine's 1-minute load average.
	LoadBefore float64 `json:"load_before"`
	LoadAfter  float64 `json:"load_after"`
}

func (r *Report) add(row Row)             { r.Rows = append(r.Rows, row) }
func (r *Report) addLatency(l LatencyRow) { r.Latency = append(r.Latency, l) }

// Row returns the row with the given id.
func (r *Report) Row(id string) (Row, bool) {
	for _, x := range r.Rows {
		if x.ID == id {
			return x, true
		}
	}
	return Row{}, false
}

func describeMachine() Machine {
	m := Machine{
		NProc:      goruntime.NumCPU(),
		GOMAXPROCS: goruntime.GOMAXPROCS(0),
		GoVersion:  goruntime.Version(),
		OS:         goruntime.GOOS + "/" + goruntime.GOARCH,
		Race:       raceEnabled,
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if out, err := exec.Command("nproc").Output(); err == nil {
		fmt.Sscan(string(out), &m.NProc)
	}
	return m
}

// evaluate computes the ratios and the goals.
func (r *Report) evaluate(sz sizes) {
	for i := range r.Rows {
		row := &r.Rows[i]
		base, ok := r.Row(row.Baseline)
		if !ok {
			continue
		}
		if base.Throughput > 0 {
			row.Ratio = row.Throughput / base.Throughput
		}
		if base.MovedPerSec > 0 {
			row.MovedRatio = row.MovedPerSec / base.MovedPerSec
		}
	}
	if pb, ok := r.Row(basePebble); ok && pb.Throughput > 0 {
		for i := range r.Rows {
			if strings.HasPrefix(r.Rows[i].ID, "w5-cold") && !strings.Contains(r.Rows[i].Note, "Pebble") {
				r.Rows[i].Note += fmt.Sprintf("; %.2f× the raw Pebble batch-write rate", r.Rows[i].Throughput/pb.Throughput)
			}
		}
	}
	r.Goals = nil
	goal := func(name, target string, measured string, status string) {
		r.Goals = append(r.Goals, Goal{Goal: name, Target: target, Measured: measured, Status: status})
	}
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "missed"
	}
	const nm = "not measured"
	if w, ok := r.Row("w2-small-alos"); ok && w.Ratio > 0 {
		goal("W2 keyed count, at-least-once", "≥ 0.80 of the stateful ceiling (≈ 10,000× the 39/s peak)",
			fmt.Sprintf("%.2f× (%s rec/s = %.0f× peak)", w.Ratio, fmtRate(w.Throughput), w.Throughput/orders.PeakRate), verdict(w.Ratio >= 0.8))
	} else {
		goal("W2 keyed count, at-least-once", "≥ 0.80 of the stateful ceiling", "–", nm)
	}
	if w, ok := r.Row("w4-alos"); ok && w.MovedRatio > 0 {
		goal("W4 order topology: records moved/s", "≥ 0.50 of the stateful ceiling's",
			fmt.Sprintf("%.2f× (%s moved/s)", w.MovedRatio, fmtRate(w.MovedPerSec)), verdict(w.MovedRatio >= 0.5))
		goal("W4 peak hour vs real time", "≥ 1,000× faster",
			fmt.Sprintf("%.0f×", w.RealTime), verdict(w.RealTime >= 1000))
	} else {
		goal("W4 order topology: records moved/s", "≥ 0.50 of the stateful ceiling's", "–", nm)
		goal("W4 peak hour vs real time", "≥ 1,000× faster", "–", nm)
	}
	if a, ok := r.Row("w2-small-alos"); ok && a.Throughput > 0 {
		if e, ok := r.Row("w2-small-eos"); ok {
			ratio := e.Throughput / a.Throughput
			goal("Exactly-once vs at-least-once", "≥ 0.70 of ALOS throughput",
				fmt.Sprintf("%.2f× (W2 10k keys: %s vs %s rec/s, same commit interval)", ratio, fmtRate(e.Throughput), fmtRate(a.Throughput)), verdict(ratio >= 0.7))
		} else {
			goal("Exactly-once vs at-least-once", "≥ 0.70 of ALOS throughput", "run with -guarantees alos,eos", nm)
		}
	} else {
		goal("Exactly-once vs at-least-once", "≥ 0.70 of ALOS throughput", "–", nm)
	}
	if w, ok := r.Row("w5-cold-alos"); ok && w.Ratio > 0 {
		goal("Cold restore", "≥ 0.50 of the raw consume rate of the changelog",
			fmt.Sprintf("%.2f× (%s rec/s)", w.Ratio, fmtRate(w.Throughput)), verdict(w.Ratio >= 0.5))
	} else {
		goal("Cold restore", "≥ 0.50 of the raw consume rate", "–", nm)
	}
	if w, ok := r.Row("w5-warm-alos"); ok {
		tail := int64(sz.RestoreTail)
		goal("Warm restore", "proportional to the tail only",
			fmt.Sprintf("replayed %s records for a %s-record tail (changelog %s)", fmtCount(w.Records), fmtCount(tail), fmtCount(int64(sz.RestoreKeys)+tail)),
			verdict(w.Records > 0 && w.Records <= tail))
	} else {
		goal("Warm restore", "proportional to the tail only", "–", nm)
	}
	if w, ok := r.Row("rss-alos"); ok {
		goal(fmt.Sprintf("RSS with %s keys of state", fmtCount(int64(sz.RSSKeys))), "≤ 300 MiB",
			fmt.Sprintf("%.0f MiB peak (process-wide): Go runtime %.0f MiB (live heap %.0f), outside Go (Pebble cache and memtables) %.0f MiB",
				mib(w.PeakRSS), mib(w.PeakGoMem), mib(w.PeakHeap), mib(w.PeakRSS-w.PeakGoMem)), verdict(w.PeakRSS <= 300<<20))
	} else {
		goal("RSS with 10M keys of state", "≤ 300 MiB", "full scale only", nm)
	}
	all := len(r.Rows) > 0
	for _, w := range r.Rows {
		if w.Records > 0 && w.CPUPerM <= 0 {
			all = false
		}
	}
	goal("CPU seconds per million records", "reported for every workload", fmt.Sprintf("%d rows", len(r.Rows)), verdict(all))
	limit := 15 * time.Minute
	if r.Scale == Quick {
		limit = 2 * time.Minute
	}
	if r.Scale != Tiny {
		goal(fmt.Sprintf("Suite duration (%s)", r.Scale), fmt.Sprintf("≤ %s on 2 cores", limit),
			r.Took.Round(time.Second).String(), verdict(r.Took <= limit))
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// fmtRate prints a rate as 1.23M, 456k.
func fmtRate(f float64) string {
	switch {
	case f >= 1e6:
		return fmt.Sprintf("%.2fM", f/1e6)
	case f >= 1e3:
		return fmt.Sprintf("%.0fk", f/1e3)
	}
	return fmt.Sprintf("%.0f", f)
}

// Markdown renders the results table, the latency table and the goals.
func (r *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Run %s, scale **%s**, took %s. Machine: %s, %d CPUs (GOMAXPROCS %d), %s, %s%s.\n\n",
		r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Scale, r.Took.Round(time.Second),
		r.Machine.CPU, r.Machine.NProc, r.Machine.GOMAXPROCS, r.Machine.GoVersion, r.Machine.OS,
		map[bool]string{true: ", **race detector on**", false: ""}[r.Machine.Race])
	fmt.Fprintf(&b, "Load average %.1f before, %.1f after; baselines, W1 and W2 are the best of %d attempts. "+
		"\"other cores\" is the CPU that other processes of the machine used during the measurement. "+
		"The apps under test process their tasks on %d goroutine(s) (`Config.ProcessingThreads`); each baseline is one loop.\n\n",
		r.LoadBefore, r.LoadAfter, r.Repeat, max(r.Threads, 1))
	if len(r.Brokers) > 0 {
		fmt.Fprintf(&b, "Run against an **external cluster** (%s, %s), not the harness's own broker process: "+
			"the broker's CPU is not measured (\"–\"), and the figures include the network and the cluster's own load.\n\n",
			strings.Join(r.Brokers, ","), r.Security)
	}
	b.WriteString("| workload | guarantee | input records | records/s | ratio (baseline) | moved/s | moved ratio | CPU s / M rec | broker CPU s / M rec | peak RSS | other cores |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, w := range r.Rows {
		g := w.Guarantee
		if g == "" {
			g = "–"
		} else {
			g = strings.ToUpper(g)
		}
		ratio, mratio := "–", "–"
		if w.Baseline != "" && w.Ratio > 0 {
			ratio = fmt.Sprintf("%.2f× (%s)", w.Ratio, w.Baseline)
			if w.MovedBaseline {
				ratio = fmt.Sprintf("%.2f× (%s)", w.Ratio, w.Baseline)
			}
		}
		if w.Baseline != "" && w.MovedRatio > 0 {
			mratio = fmt.Sprintf("%.2f×", w.MovedRatio)
			if w.MovedBaseline {
				mratio = "**" + mratio + "**"
			}
		}
		brokerCPU := "–"
		if w.BrokerCPUPerM != nil {
			brokerCPU = fmt.Sprintf("%.2f", *w.BrokerCPUPerM)
		}
		fmt.Fprintf(&b, "| %s `%s` | %s | %s | %s | %s | %s | %s | %.2f | %s | %.0f MiB | %.1f |\n",
			w.Name, w.ID, g, fmtCount(w.Records), fmtRate(w.Throughput), ratio, fmtRate(w.MovedPerSec), mratio,
			w.CPUPerM, brokerCPU, mib(w.PeakRSS), w.OtherCores)
	}
	var notes []string
	for _, w := range r.Rows {
		note := w.Note
		if len(w.Attempts) > 1 {
			var at []string
			for _, a := range w.Attempts {
				at = append(at, fmtRate(a))
			}
			if note != "" {
				note += "; "
			}
			note += "attempts: " + strings.Join(at, ", ") + " rec/s"
		}
		if note != "" {
			notes = append(notes, fmt.Sprintf("- `%s`: %s", w.ID, note))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\n" + strings.Join(notes, "\n") + "\n")
	}
	if len(r.Latency) > 0 {
		b.WriteString("\nW4 end-to-end latency (creation header → portfolio update received), same app, load from a separate process. " +
			"Under exactly-once a record is read downstream only once its transaction commits, so each of W4's three repartition hops adds up to a commit interval (1 s here; choreo's exactly-once default is 100 ms):\n\n")
		b.WriteString("| guarantee | rate | events/s | duration | events | outputs | p50 | p99 | max | backlog drained |\n")
		b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|---|\n")
		for _, l := range r.Latency {
			fmt.Fprintf(&b, "| %s | %g× peak | %.0f | %.0fs | %s | %s | %.1f ms | %.1f ms | %.1f ms | %s |\n",
				strings.ToUpper(string(l.Guarantee)), l.Multiple, l.Rate, l.Duration, fmtCount(l.Events), fmtCount(l.Outputs), l.P50, l.P99, l.Max,
				map[bool]string{true: "yes", false: "no"}[l.Drained])
		}
	}
	b.WriteString("\nGoals of issue 6:\n\n| goal | target | measured | status |\n|---|---|---|---|\n")
	for _, g := range r.Goals {
		st := g.Status
		switch st {
		case "met":
			st = "✅ met"
		case "missed":
			st = "❌ missed"
		default:
			st = "– " + st
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", g.Goal, g.Target, g.Measured, st)
	}
	fmt.Fprintf(&b, "\nPeak RSS of the measuring process over the whole run: %.0f MiB.\n", mib(r.MaxRSS))
	return b.String()
}

// write puts results.md, results.json and plot.svg into dir.
func (r *Report) write(dir string) error {
	md := "# choreo benchmark results\n\n" + r.Markdown()
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(md), 0o644); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), js, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "plot.svg"), []byte(r.SVG()), 0o644)
}

// Markers of the results section in a README.
const (
	readmeStart = "<!-- results:start -->"
	readmeEnd   = "<!-- results:end -->"
)

// UpdateReadme replaces the text between the results markers of the README
// at path with the report's tables, the command that produced them and a
// link to the plot in dir (relative to the README when possible).
func UpdateReadme(path string, r *Report, command, dir string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i, j := strings.Index(s, readmeStart), strings.Index(s, readmeEnd)
	if i < 0 || j < i {
		return fmt.Errorf("bench: %s has no %s … %s section", path, readmeStart, readmeEnd)
	}
	if rel, err := filepath.Rel(filepath.Dir(path), dir); err == nil {
		dir = filepath.ToSlash(rel)
	}
	section := fmt.Sprintf("%s\n\nReproduce with `%s` from the repository root (results and plot: `%s/`).\n\n%s\n![results](%s/plot.svg)\n\n",
		readmeStart, command, dir, r.Markdown(), dir)
	s = s[:i] + section + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}
