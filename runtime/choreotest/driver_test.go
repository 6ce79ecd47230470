package choreotest_test

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/partition"
	"github.com/choreo-go/choreo/runtime"
	"github.com/choreo-go/choreo/runtime/choreotest"
)

func build(t *testing.T, b *runtime.Builder) *runtime.Topology {
	t.Helper()
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

func newDriver(t *testing.T, topo *runtime.Topology, cfg runtime.Config, opts ...choreotest.Option) *choreotest.Driver {
	t.Helper()
	if cfg.ApplicationID == "" {
		cfg.ApplicationID = "test"
	}
	d, err := choreotest.New(topo, cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	return d
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// wordCount splits lines into words, regroups by word (a repartition
// topic) and counts.
func wordCount() (*runtime.Builder, runtime.Table[string, int64]) {
	b := runtime.NewBuilder()
	lines := runtime.StreamOf(b, "lines", runtime.String(), runtime.String())
	words := runtime.FlatMap(lines, func(_ string, line string) []runtime.KeyValue[string, string] {
		var out []runtime.KeyValue[string, string]
		for _, w := range strings.Fields(line) {
			out = append(out, runtime.KeyValue[string, string]{Key: w, Value: w})
		}
		return out
	})
	counts := runtime.Count(words.GroupByKey(runtime.Named("by-word")), runtime.Named("counts"))
	counts.ToStream().To("word-counts")
	return b, counts
}

func TestDriverWordCountThroughRepartition(t *testing.T) {
	b, counts := wordCount()
	d := newDriver(t, build(t, b), runtime.Config{ApplicationID: "wc"}, choreotest.WithPartitions("lines", 3))
	in := choreotest.Input(d, "lines", runtime.String(), runtime.String()).AutoAdvance(time.Second)
	out := choreotest.Output(d, "word-counts", runtime.String(), runtime.Int64())

	must(t, in.Pipe("l1", "a b a"))
	// Each piped record is processed to the end, through the repartition
	// topic, before Pipe returns.
	got, err := out.ReadAll()
	must(t, err)
	var seq []string
	for _, r := range got {
		seq = append(seq, fmt.Sprintf("%s=%d", r.Key, r.Value))
	}
	if want := []string{"a=1", "b=1", "a=2"}; !slices.Equal(seq, want) {
		t.Errorf("outputs %v, want %v", seq, want)
	}
	must(t, in.Pipe("l2", "b c"))
	must(t, in.Pipe("l3", "a"))
	table, err := choreotest.ReadTable(out)
	must(t, err)
	if fmt.Sprint(table) != "map[a:3 b:2 c:1]" {
		t.Errorf("latest outputs %v", table)
	}
	store, err := choreotest.Map(choreotest.Table(d, counts))
	must(t, err)
	if fmt.Sprint(store) != "map[a:3 b:2 c:1]" {
		t.Errorf("store %v", store)
	}
	e, ok, err := choreotest.Table(d, counts).GetEntry("c")
	must(t, err)
	// The count of c was set by the second line, piped at start + 1 s.
	if !ok || e.Value != 1 || !e.Timestamp.Equal(time.Unix(1, 0)) {
		t.Errorf("entry c = %+v, %v", e, ok)
	}
	if _, ok, err := choreotest.Table(d, counts).Get("zzz"); ok || err != nil {
		t.Errorf("missing key: ok %v err %v", ok, err)
	}

	// The internal topics carry what a cluster would see: the repartition
	// topic (three partitions, derived from "lines") has every word, the
	// changelog the latest count per key and commit.
	rep := "wc-by-word-repartition"
	if n, _ := d.Partitions(rep); n != 3 {
		t.Errorf("repartition partitions %d", n)
	}
	if n := len(d.Records(rep)); n != 6 {
		t.Errorf("repartition records %d, want 6", n)
	}
	changelog := "wc-counts-changelog"
	if n := len(d.Records(changelog)); n != 5 { // a, b | b, c | a
		t.Errorf("changelog records %d, want 5 (one per key and piped record)", n)
	}
	for _, r := range d.Records(rep) {
		if want := partition.ForKey(r.Key, 3); r.Partition != want {
			t.Errorf("repartition record %s in partition %d, want %d", r.Key, r.Partition, want)
		}
	}
}

func TestDriverDeterministic(t *testing.T) {
	run := func() []string {
		b, _ := wordCount()
		d := newDriver(t, build(t, b), runtime.Config{}, choreotest.WithPartitions("lines", 4))
		in := choreotest.Input(d, "lines", runtime.String(), runtime.String()).AutoAdvance(time.Millisecond)
		for i := range 200 {
			must(t, in.Pipe(strconv.Itoa(i), fmt.Sprintf("w%d w%d w%d", i%7, i%11, i%3)))
		}
		var out []string
		for _, topic := range d.Topics() {
			for _, r := range d.Records(topic) {
				out = append(out, fmt.Sprintf("%s/%d/%d %s=%x @%d", topic, r.Partition, r.Offset, r.Key, r.Value, r.Timestamp.UnixMilli()))
			}
		}
		return out
	}
	a, b := run(), run()
	if len(a) == 0 || !slices.Equal(a, b) {
		t.Fatalf("two runs differ (%d vs %d records)", len(a), len(b))
	}
}

func TestDriverStreamTableJoin(t *testing.T) {
	b := runtime.NewBuilder()
	customers := runtime.TableOf(b, "customers", runtime.String(), runtime.String(), runtime.Named("customers"))
	orders := runtime.StreamOf(b, "orders", runtime.String(), runtime.Int64())
	runtime.LeftJoin(orders, customers, func(_ string, amount int64, name string, found bool) string {
		if !found {
			return "unknown:" + strconv.FormatInt(amount, 10)
		}
		return name + ":" + strconv.FormatInt(amount, 10)
	}).To("enriched")
	d := newDriver(t, build(t, b), runtime.Config{},
		choreotest.WithPartitions("customers", 2), choreotest.WithPartitions("orders", 2), choreotest.WithPartitions("enriched", 2))
	cust := choreotest.Input(d, "customers", runtime.String(), runtime.String())
	ord := choreotest.Input(d, "orders", runtime.String(), runtime.Int64())
	out := choreotest.Output(d, "enriched", runtime.String(), runtime.String())

	must(t, ord.Pipe("c1", 5))
	must(t, cust.Pipe("c1", "Ada"))
	must(t, cust.Pipe("c2", "Bob"))
	must(t, ord.Pipe("c1", 7))
	must(t, ord.Pipe("c2", 9))
	must(t, cust.PipeTombstone("c1"))
	must(t, ord.Pipe("c1", 11))
	got, err := out.ReadAll()
	must(t, err)
	var vals []string
	for _, r := range got {
		vals = append(vals, r.Key+"→"+r.Value)
		if want := partition.ForKey([]byte(r.Key), 2); r.Partition != want {
			t.Errorf("%s in partition %d, want %d", r.Key, r.Partition, want)
		}
	}
	want := []string{"c1→unknown:5", "c1→Ada:7", "c2→Bob:9", "c1→unknown:11"}
	if !slices.Equal(vals, want) {
		t.Errorf("joined %v, want %v", vals, want)
	}
	entries, err := choreotest.Table(d, customers).All()
	must(t, err)
	if len(entries) != 1 || entries[0].Key != "c2" || entries[0].Value != "Bob" || entries[0].Partition != partition.ForKey([]byte("c2"), 2) {
		t.Errorf("customers table %+v", entries)
	}
	if !out.Empty() {
		t.Error("output not empty after ReadAll")
	}
	if _, err := out.Read(); !errors.Is(err, choreotest.ErrNoRecord) {
		t.Errorf("Read on empty output: %v", err)
	}
}

// ticker counts records per key in a store and emits the counts on a
// wall-clock punctuator and a stream-time one.
type ticker struct {
	ref   runtime.StoreRef[string, int64]
	ctx   runtime.ProcessorContext[string, string]
	store *runtime.KVStore[string, int64]
}

func (p *ticker) Init(ctx runtime.ProcessorContext[string, string]) error {
	p.ctx = ctx
	st, err := runtime.OpenStore(ctx, p.ref)
	if err != nil {
		return err
	}
	p.store = st
	ctx.Schedule(time.Minute, runtime.WallClockTime, func(ts int64) error { return p.emit("wall", ts) })
	ctx.Schedule(10*time.Second, runtime.StreamTime, func(ts int64) error { return p.emit("stream", ts) })
	return nil
}

func (p *ticker) emit(kind string, ts int64) error {
	var lines []string
	if err := p.store.Range(nil, nil, func(k string, n int64) bool {
		lines = append(lines, fmt.Sprintf("%s=%d", k, n))
		return true
	}); err != nil {
		return err
	}
	return p.ctx.Forward(runtime.Record[string, string]{Key: kind, Value: strings.Join(lines, ","), Timestamp: ts})
}

func (p *ticker) Process(r runtime.Record[string, string]) error {
	n, _, err := p.store.Get(r.Key)
	if err != nil {
		return err
	}
	return p.store.Put(r.Key, n+1)
}

func (p *ticker) Close() error { return nil }

func TestDriverPunctuators(t *testing.T) {
	b := runtime.NewBuilder()
	ref := runtime.AddStore(b, "seen", runtime.String(), runtime.Int64())
	in := runtime.StreamOf(b, "events", runtime.String(), runtime.String())
	runtime.Process(in, func() runtime.Processor[string, string, string, string] { return &ticker{ref: ref} },
		[]string{ref.Name()}, runtime.WithKeySerde(runtime.String()), runtime.WithValueSerde(runtime.String())).To("ticks")
	start := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	d := newDriver(t, build(t, b), runtime.Config{}, choreotest.WithStartTime(start))
	ev := choreotest.Input(d, "events", runtime.String(), runtime.String())
	out := choreotest.Output(d, "ticks", runtime.String(), runtime.String())

	must(t, ev.PipeAt("a", "x", start))
	must(t, ev.PipeAt("b", "x", start.Add(5*time.Second)))
	if !out.Empty() {
		t.Fatalf("punctuation before any interval passed: %d records", out.Len())
	}
	must(t, ev.PipeAt("a", "x", start.Add(10*time.Second))) // stream time reaches start+10 s
	r, err := out.Read()
	must(t, err)
	if r.Key != "stream" || r.Value != "a=2,b=1" || !r.Timestamp.Equal(start.Add(10*time.Second)) {
		t.Errorf("stream-time punctuation %+v", r)
	}
	// The wall clock moves only when told.
	must(t, d.AdvanceWallClock(59*time.Second))
	if !out.Empty() {
		t.Fatal("wall-clock punctuation before its interval")
	}
	must(t, d.AdvanceWallClock(time.Second))
	r, err = out.Read()
	must(t, err)
	if r.Key != "wall" || r.Value != "a=2,b=1" || !r.Timestamp.Equal(start.Add(time.Minute)) {
		t.Errorf("wall-clock punctuation %+v", r)
	}
	// Three intervals at once fire once, at the new time.
	must(t, d.AdvanceWallClock(3*time.Minute))
	if out.Len() != 1 {
		t.Errorf("%d punctuations after a 3-interval jump, want 1", out.Len())
	}
	if !d.Now().Equal(start.Add(4 * time.Minute)) {
		t.Errorf("Now %v", d.Now())
	}
	if err := d.AdvanceWallClock(-time.Second); err == nil {
		t.Error("the clock went back")
	}
	n, ok, err := choreotest.Store(d, ref).Get("a")
	must(t, err)
	if !ok || n != 2 {
		t.Errorf("store a = %d, %v", n, ok)
	}
}

func TestDriverErrorPolicies(t *testing.T) {
	topo := func() *runtime.Topology {
		b := runtime.NewBuilder()
		in := runtime.StreamOf(b, "in", runtime.String(), runtime.Int64())
		runtime.MapValuesE(in, func(_ string, v int64) (int64, error) {
			if v < 0 {
				return 0, fmt.Errorf("negative amount %d", v)
			}
			return v * 2, nil
		}, runtime.Named("double")).To("out")
		return build(t, b)
	}
	corrupt := &kgo.Record{Topic: "in", Partition: -1, Key: []byte("k"), Value: []byte("not 8 bytes")}

	t.Run("fail", func(t *testing.T) {
		d := newDriver(t, topo(), runtime.Config{})
		in := choreotest.Input(d, "in", runtime.String(), runtime.Int64())
		out := choreotest.Output(d, "out", runtime.String(), runtime.Int64())
		if err := in.Pipe("k", -1); err == nil || !strings.Contains(err.Error(), "negative amount -1") {
			t.Fatalf("processing error not returned: %v", err)
		}
		if err := d.PipeRecord(corrupt); err == nil {
			t.Fatal("deserialization error not returned")
		}
		// The driver stays usable, as a test wants.
		must(t, in.Pipe("k", 4))
		r, err := out.Read()
		must(t, err)
		if r.Value != 8 || !out.Empty() {
			t.Errorf("output %+v, %d more", r, out.Len())
		}
	})
	t.Run("dead letter", func(t *testing.T) {
		d := newDriver(t, topo(), runtime.Config{
			ProcessingErrors: runtime.DeadLetterOnError, DeserializationErrors: runtime.DeadLetterOnError,
		})
		in := choreotest.Input(d, "in", runtime.String(), runtime.Int64())
		must(t, in.Pipe("a", 1))
		must(t, in.Pipe("b", -3))
		must(t, d.PipeRecord(corrupt))
		must(t, in.Pipe("c", 2))
		got, err := choreotest.Output(d, "out", runtime.String(), runtime.Int64()).ReadAll()
		must(t, err)
		if len(got) != 2 || got[0].Value != 2 || got[1].Value != 4 {
			t.Errorf("good records' outputs %+v", got)
		}
		dlq := d.Records("test-dlq")
		if len(dlq) != 2 || d.DeadLettered() != 2 {
			t.Fatalf("%d dead letters (counted %d), want 2", len(dlq), d.DeadLettered())
		}
		headers := func(r *kgo.Record) map[string]string {
			m := map[string]string{}
			for _, h := range r.Headers {
				m[h.Key] = string(h.Value)
			}
			return m
		}
		if h := headers(dlq[0]); h["__choreo.errors.kind"] != "processing" || !strings.Contains(h["__streams.errors.message"], "negative amount -3") || h["__choreo.errors.processor"] != "double" {
			t.Errorf("processing dead letter headers %v", h)
		}
		if h := headers(dlq[1]); h["__choreo.errors.kind"] != "deserialization" || string(dlq[1].Value) != "not 8 bytes" {
			t.Errorf("deserialization dead letter %q headers %v", dlq[1].Value, h)
		}
	})
	t.Run("skip", func(t *testing.T) {
		d := newDriver(t, topo(), runtime.Config{ProcessingErrors: runtime.SkipOnError})
		in := choreotest.Input(d, "in", runtime.String(), runtime.Int64())
		must(t, in.Pipe("b", -3))
		must(t, in.Pipe("c", 2))
		if d.Skipped() != 1 || len(d.Records("out")) != 1 {
			t.Errorf("skipped %d, outputs %d", d.Skipped(), len(d.Records("out")))
		}
	})
}

func TestDriverMisuse(t *testing.T) {
	b, _ := wordCount()
	topo := build(t, b)
	d, err := choreotest.New(topo, runtime.Config{ApplicationID: "x"})
	must(t, err)
	if err := d.PipeRecord(&kgo.Record{Topic: "nope", Partition: -1}); !errors.Is(err, choreotest.ErrUnknownTopic) {
		t.Errorf("unknown topic: %v", err)
	}
	if err := d.PipeRecord(&kgo.Record{Topic: "lines", Partition: 5, Value: []byte("x")}); !errors.Is(err, choreotest.ErrUnknownTopic) {
		t.Errorf("partition out of range: %v", err)
	}
	if _, err := choreotest.Table(d, runtime.Table[string, int64]{}).All(); !errors.Is(err, choreotest.ErrUnknownStore) {
		t.Errorf("unknown store: %v", err)
	}
	must(t, d.Close())
	if err := d.PipeRecord(&kgo.Record{Topic: "lines", Partition: -1}); !errors.Is(err, choreotest.ErrClosed) {
		t.Errorf("after close: %v", err)
	}
	if _, err := choreotest.New(topo, runtime.Config{}); !errors.Is(err, runtime.ErrInvalidConfig) {
		t.Errorf("missing application id: %v", err)
	}
}
