package replay_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/internal/testbroker"
	"github.com/choreo-go/choreo/runtime"
	"github.com/choreo-go/choreo/runtime/choreotest"
	"github.com/choreo-go/choreo/runtime/replay"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// wordCount is version 1; lower makes version 2, which lower-cases words
// before counting: a deliberate change of behaviour.
func wordCount(t *testing.T, lower bool) *runtime.Topology {
	t.Helper()
	b := runtime.NewBuilder()
	lines := runtime.StreamOf(b, "lines", runtime.String(), runtime.String())
	words := runtime.FlatMapValues(lines, func(_ string, line string) []string {
		if lower {
			line = strings.ToLower(line)
		}
		return strings.Fields(line)
	})
	byWord := runtime.SelectKey(words, func(_ string, w string) string { return w })
	runtime.Count(byWord.GroupByKey(runtime.Named("by-word")), runtime.Named("counts")).ToStream().To("counts")
	topo, err := b.Build()
	must(t, err)
	return topo
}

var cfg = runtime.Config{ApplicationID: "wc"}

func TestRecordingFileRoundTrip(t *testing.T) {
	rec := &replay.Recording{
		Partitions: map[string]int32{"a": 2},
		Records: []replay.Record{
			{Topic: "a", Partition: 1, Offset: 7, Timestamp: 1234, Key: []byte("k"), Value: []byte{0, 1, 0xff},
				Headers: []replay.Header{{Key: "h", Value: []byte("v")}, {Key: "nil"}}},
			{Topic: "a", Partition: 0, Offset: 0, Key: nil, Value: []byte{}},
			{Topic: "a", Partition: 0, Offset: 1, Key: []byte{}, Value: nil},
		},
	}
	path := filepath.Join(t.TempDir(), "rec.jsonl")
	must(t, rec.Save(path))
	got, err := replay.Load(path)
	must(t, err)
	if len(got.Records) != 3 || got.Partitions["a"] != 2 {
		t.Fatalf("loaded %+v", got)
	}
	r0, r1, r2 := got.Records[0], got.Records[1], got.Records[2]
	if r0.Offset != 7 || r0.Timestamp != 1234 || !bytes.Equal(r0.Value, []byte{0, 1, 0xff}) || len(r0.Headers) != 2 || string(r0.Headers[0].Value) != "v" || r0.Headers[1].Value != nil {
		t.Errorf("record 0: %+v", r0)
	}
	// nil and empty survive as they are: a nil value is a tombstone.
	if r1.Key != nil || r1.Value == nil || r2.Key == nil || r2.Value != nil {
		t.Errorf("nil/empty not kept: %+v %+v", r1, r2)
	}

	var buf bytes.Buffer
	_, err = rec.WriteTo(&buf)
	must(t, err)
	lines := strings.SplitAfter(buf.String(), "\n")
	truncated := strings.Join(lines[:len(lines)-2], "")
	if _, err := replay.Read(strings.NewReader(truncated)); !errors.Is(err, replay.ErrFormat) {
		t.Errorf("truncated recording: %v", err)
	}
	if _, err := replay.Read(strings.NewReader(`{"hello":1}` + "\n")); !errors.Is(err, replay.ErrFormat) {
		t.Errorf("not a recording: %v", err)
	}
}

// record runs version 1 on lines with the test driver and records its
// input topic.
func record(t *testing.T, lines ...string) *replay.Recording {
	t.Helper()
	d, err := choreotest.New(wordCount(t, false), cfg, choreotest.WithPartitions("lines", 2))
	must(t, err)
	defer d.Close()
	in := choreotest.Input(d, "lines", runtime.String(), runtime.String()).AutoAdvance(time.Millisecond)
	for i, l := range lines {
		must(t, in.Pipe(string(rune('a'+i)), l))
	}
	return replay.FromDriver(d, "lines")
}

func TestReplayShowsADeliberateChangeAsADiff(t *testing.T) {
	rec := record(t, "Go go GO", "stream go", "Stream")
	path := filepath.Join(t.TempDir(), "rec.jsonl")
	must(t, rec.Save(path))
	rec, err := replay.Load(path)
	must(t, err)
	if len(rec.Records) != 3 || rec.Partitions["lines"] != 2 {
		t.Fatalf("recording %d records, partitions %v", len(rec.Records), rec.Partitions)
	}

	v1a, err := replay.Run(wordCount(t, false), cfg, rec)
	must(t, err)
	v1b, err := replay.Run(wordCount(t, false), cfg, rec)
	must(t, err)
	if rep := replay.Diff(v1a, v1b); !rep.Equal() || rep.Compared == 0 {
		t.Fatalf("the same topology replayed twice differs:\n%s", rep.Format(nil, 0))
	}
	if v1a.Piped != 3 || len(v1a.Outputs["counts"]) != 6 {
		t.Fatalf("v1: piped %d, %d outputs", v1a.Piped, len(v1a.Outputs["counts"]))
	}

	v2, err := replay.Run(wordCount(t, true), cfg, rec)
	must(t, err)
	rep := replay.Diff(v1a, v2)
	if rep.Equal() {
		t.Fatal("lower-casing the words shows no difference")
	}
	int64s := func(vs [][]byte) string {
		var out []string
		for _, v := range vs {
			n, err := runtime.Int64().Deserialize(v)
			must(t, err)
			out = append(out, strconv.FormatInt(n, 10))
		}
		return strings.Join(out, ",")
	}
	got := map[string]string{}
	for _, d := range rep.Differences {
		got[d.Kind+" "+d.Where+" "+string(d.Key)] = int64s(d.A) + " | " + int64s(d.B)
	}
	want := map[string]string{
		// v1 counts Go, go, GO, Stream, stream apart; v2 counts go and stream.
		"output counts GO":     "1 | ",
		"output counts Go":     "1 | ",
		"output counts Stream": "1 | ",
		"output counts go":     "1,2 | 1,2,3,4",
		"output counts stream": "1 | 1,2",
		"store counts GO":      "1 | ",
		"store counts Go":      "1 | ",
		"store counts Stream":  "1 | ",
		"store counts go":      "2 | 4",
		"store counts stream":  "1 | 2",
	}
	if len(got) != len(want) {
		t.Errorf("differences:\n%s", rep.Format(nil, 0))
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: got %q, want %q", k, got[k], w)
		}
	}
	text := rep.Format(func(_ string, v []byte) string {
		n, _ := runtime.Int64().Deserialize(v)
		return "#" + strconv.FormatInt(n, 10)
	}, 3)
	if !strings.Contains(text, "10 differences") || !strings.Contains(text, "… 7 more") || !strings.Contains(text, `output counts key "GO"`) {
		t.Errorf("report text:\n%s", text)
	}
}

func TestReplayRecordsFailuresAndIgnoresOtherTopics(t *testing.T) {
	rec := record(t, "a b")
	rec.Records = append(rec.Records,
		replay.Record{Topic: "lines", Partition: 0, Offset: 100, Key: []byte("x"), Value: []byte("boom")},
		replay.Record{Topic: "unrelated", Partition: 0, Offset: 0, Value: []byte("?")})
	b := runtime.NewBuilder()
	runtime.MapValuesE(runtime.StreamOf(b, "lines", runtime.String(), runtime.String()), func(_ string, v string) (string, error) {
		if v == "boom" {
			return "", errors.New("exploded")
		}
		return v, nil
	}).To("out")
	topo, err := b.Build()
	must(t, err)
	res, err := replay.Run(topo, cfg, rec)
	must(t, err)
	if res.Piped != 2 || res.Ignored != 1 || len(res.Errors) != 1 || !strings.Contains(res.Errors[0].Err, "exploded") || len(res.Outputs["out"]) != 1 {
		t.Fatalf("result %+v", res)
	}
	skip := cfg
	skip.ProcessingErrors = runtime.SkipOnError
	res2, err := replay.Run(topo, skip, rec)
	must(t, err)
	rep := replay.Diff(res, res2)
	if len(rep.Differences) != 1 || rep.Differences[0].Kind != "error" {
		t.Errorf("policy change:\n%s", rep.Format(nil, 0))
	}
}

// TestCaptureFromCluster records two topics from a broker (an aborted
// transaction is left out) and checks that replaying the recording gives
// the same result as piping the same records directly.
func TestCaptureFromCluster(t *testing.T) {
	br, err := testbroker.Start(testbroker.Options{})
	must(t, err)
	defer br.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := []kgo.Opt{kgo.SeedBrokers(br.Addrs()...)}
	cl, err := kgo.NewClient(opts...)
	must(t, err)
	defer cl.Close()
	adm := kadm.NewClient(cl)
	_, err = adm.CreateTopic(ctx, 3, 1, nil, "lines")
	must(t, err)
	_, err = adm.CreateTopic(ctx, 1, 1, nil, "other")
	must(t, err)

	lines := []string{"x y", "y z", "z z z", "x", "w"}
	for i, l := range lines {
		r := &kgo.Record{Topic: "lines", Key: []byte{byte('a' + i)}, Value: []byte(l), Timestamp: time.UnixMilli(int64(1000 + i))}
		must(t, cl.ProduceSync(ctx, r).FirstErr())
	}
	must(t, cl.ProduceSync(ctx, &kgo.Record{Topic: "other", Value: []byte("o")}).FirstErr())
	// An aborted transaction: a read-committed capture must not see it.
	tx, err := kgo.NewClient(append(opts, kgo.TransactionalID("capture-test"))...)
	must(t, err)
	defer tx.Close()
	must(t, tx.BeginTransaction())
	must(t, tx.ProduceSync(ctx, &kgo.Record{Topic: "lines", Key: []byte("zz"), Value: []byte("aborted words")}).FirstErr())
	must(t, tx.EndTransaction(ctx, kgo.TryAbort))

	rec, err := replay.Capture(ctx, opts, "lines", "other")
	must(t, err)
	if rec.Partitions["lines"] != 3 || rec.Partitions["other"] != 1 {
		t.Errorf("partitions %v", rec.Partitions)
	}
	n := map[string]int{}
	for _, r := range rec.Records {
		n[r.Topic]++
		if strings.Contains(string(r.Value), "aborted") {
			t.Errorf("captured an aborted record: %+v", r)
		}
	}
	if n["lines"] != len(lines) || n["other"] != 1 {
		t.Fatalf("captured %v", n)
	}

	got, err := replay.Run(wordCount(t, false), cfg, rec)
	must(t, err)
	if got.Ignored != 1 || got.Piped != len(lines) {
		t.Errorf("piped %d, ignored %d", got.Piped, got.Ignored)
	}
	d, err := choreotest.New(wordCount(t, false), cfg, choreotest.WithPartitions("lines", 3))
	must(t, err)
	defer d.Close()
	for _, r := range rec.Records {
		if r.Topic == "lines" {
			must(t, d.PipeRecord(r.Kafka()))
		}
	}
	counts, err := choreotest.ReadTable(choreotest.Output(d, "counts", runtime.String(), runtime.Int64()))
	must(t, err)
	final := map[string]int64{}
	for _, r := range got.Outputs["counts"] {
		v, err := runtime.Int64().Deserialize(r.Value)
		must(t, err)
		final[string(r.Key)] = v
	}
	if len(final) != 4 || final["z"] != 4 || final["x"] != 2 {
		t.Errorf("replayed counts %v", final)
	}
	for k, v := range counts {
		if final[k] != v {
			t.Errorf("count %s: replay %d, direct %d", k, final[k], v)
		}
	}
}
