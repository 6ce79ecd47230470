package runtime_test

// Bad-input tests on the real app (kfake broker): a record whose value
// does not match the schema, and a record with a nil key fed to a keyed
// aggregation. Each topology runs twice in one app: on "in" (with the bad
// record between good ones) and on "ctrl-in" (the same good records, no
// bad one); the outputs of the good records must be identical.

import (
	"bytes"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/runtime"
)

// badInputLog is a bytes.Buffer safe for concurrent writers (the app's log).
type badInputLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *badInputLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *badInputLog) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// badInputRec is a record to produce to both "in" and "ctrl-in" (bad:
// only to "in").
type badInputRec struct {
	key   []byte // nil: a nil key
	value string
	bad   bool
}

// produceBoth produces recs to "in" and the good ones to "ctrl-in", with
// the same timestamps and headers.
func produceBoth(c *cluster, base time.Time, recs ...badInputRec) {
	c.t.Helper()
	var in, ctrl []*kgo.Record
	for i, r := range recs {
		mk := func() *kgo.Record {
			return &kgo.Record{Key: r.key, Value: []byte(r.value), Timestamp: base.Add(time.Duration(i) * time.Millisecond),
				Headers: []kgo.RecordHeader{{Key: "i", Value: []byte(fmt.Sprint(i))}}}
		}
		in = append(in, mk())
		if !r.bad {
			ctrl = append(ctrl, mk())
		}
	}
	c.produce("in", in...)
	c.produce("ctrl-in", ctrl...)
}

// outputsOf is a comparable rendering of a topic's records, in order.
func outputsOf(c *cluster, topic string, valueOf func([]byte) string) []string {
	var out []string
	for _, r := range c.readAll(topic) {
		var hs []string
		for _, h := range r.Headers {
			hs = append(hs, h.Key+"="+string(h.Value))
		}
		out = append(out, fmt.Sprintf("%s=%s@%d%v", r.Key, valueOf(r.Value), r.Timestamp.UnixMilli(), hs))
	}
	return out
}

func int64Value(b []byte) string {
	v, err := runtime.Int64().Deserialize(b)
	if err != nil {
		return fmt.Sprintf("bad int64 %q", b)
	}
	return fmt.Sprint(v)
}

func stringValue(b []byte) string { return string(b) }

func headerOf(r *kgo.Record, k string) string {
	for _, h := range r.Headers {
		if h.Key == k {
			return string(h.Value)
		}
	}
	return ""
}

type nValue struct {
	N int64 `json:"n"`
}

// TestBadInputWrongSchema: a JSON value whose field has the wrong type
// fails to decode; under DeadLetterOnError it goes to <app>-dlq with kind
// deserialization and its original bytes, and the good records around it
// (a stateless map and a count of the same keys) come out exactly as
// without it.
func TestBadInputWrongSchema(t *testing.T) {
	c := newCluster(t)
	for _, topic := range []string{"in", "ctrl-in", "out", "ctrl-out", "counts", "ctrl-counts"} {
		c.createTopic(topic, 1)
	}
	b := runtime.NewBuilder()
	for _, p := range []string{"", "ctrl-"} {
		s := runtime.StreamOf(b, p+"in", runtime.String(), runtime.JSON[nValue]())
		runtime.MapValues(s, func(_ string, v nValue) string { return fmt.Sprint(v.N * 10) }, runtime.Named(p+"times10")).To(p + "out")
		runtime.Count(s.GroupByKey(), runtime.Named(p+"counts")).ToStream().To(p + "counts")
	}
	const badValue = `{"n":"text"}`
	produceBoth(c, time.UnixMilli(1_700_000_000_000),
		badInputRec{key: []byte("a"), value: `{"n":1}`},
		badInputRec{key: []byte("b"), value: `{"n":2}`},
		badInputRec{key: []byte("a"), value: badValue, bad: true}, // same key as good ones: no partial count
		badInputRec{key: []byte("a"), value: `{"n":3}`},
		badInputRec{key: []byte("b"), value: `{"n":4}`},
	)
	cfg := c.config(t.TempDir(), "i1")
	cfg.DeserializationErrors = runtime.DeadLetterOnError
	cfg.ProcessingErrors = runtime.DeadLetterOnError
	app, err := runtime.New(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := running(t, app)
	eventually(t, 30*time.Second, "4 good outputs on both sides and 1 dead letter", func() (bool, string) {
		out, ctrl, dlq := c.readAll("out"), c.readAll("ctrl-out"), c.readAll("count-app-dlq")
		return len(out) == 4 && len(ctrl) == 4 && len(dlq) == 1, fmt.Sprintf("out %d, ctrl-out %d, dlq %d", len(out), len(ctrl), len(dlq))
	})
	if s := app.State(); s != runtime.Running || !app.Alive() {
		t.Errorf("after the bad record: state %v alive %v, want RUNNING and alive", s, app.Alive())
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	out, ctrl := outputsOf(c, "out", stringValue), outputsOf(c, "ctrl-out", stringValue)
	if !slices.Equal(out, ctrl) {
		t.Errorf("map outputs differ from the run without the bad record:\n got  %v\n want %v", out, ctrl)
	}
	counts, ctrlCounts := outputsOf(c, "counts", int64Value), outputsOf(c, "ctrl-counts", int64Value)
	if !slices.Equal(counts, ctrlCounts) {
		t.Errorf("count outputs differ from the run without the bad record:\n got  %v\n want %v", counts, ctrlCounts)
	}
	t.Logf("outputs: %v; counts: %v", out, counts)
	if got := c.latestInt64("counts"); got["a"] != 2 || got["b"] != 2 {
		t.Errorf("final counts %v, want a=2 b=2", got)
	}
	dlq := c.readAll("count-app-dlq")
	if len(dlq) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dlq))
	}
	d := dlq[0]
	if kind := headerOf(d, "__choreo.errors.kind"); kind != "deserialization" {
		t.Errorf("dead letter kind %q, want deserialization (headers %v)", kind, d.Headers)
	}
	if string(d.Key) != "a" || string(d.Value) != badValue || headerOf(d, "i") != "2" {
		t.Errorf("dead letter does not keep the original record: key %q value %q headers %v", d.Key, d.Value, d.Headers)
	}
	if headerOf(d, "__streams.errors.topic") != "in" || headerOf(d, "__streams.errors.offset") != "2" ||
		headerOf(d, "__streams.errors.exception") == "" || headerOf(d, "__streams.errors.message") == "" {
		t.Errorf("dead letter error headers: %v", d.Headers)
	}
	t.Logf("dead letter message: %s", headerOf(d, "__streams.errors.message"))
	if n := app.DeadLetteredRecords(); n != 1 {
		t.Errorf("DeadLetteredRecords = %d, want 1", n)
	}
}

// TestBadInputNilKey: a record with a nil key fed to GroupByKey().Count is
// a processing error (ErrNullKey): under DeadLetterOnError it goes to the
// dead-letter topic, the app keeps running, and the good records are
// counted exactly as without it.
func TestBadInputNilKey(t *testing.T) {
	c := newCluster(t)
	for _, topic := range []string{"in", "ctrl-in", "out", "ctrl-out"} {
		c.createTopic(topic, 1)
	}
	b := runtime.NewBuilder()
	for _, p := range []string{"", "ctrl-"} {
		runtime.Count(runtime.StreamOf(b, p+"in", runtime.String(), runtime.String()).GroupByKey(), runtime.Named(p+"counts")).
			ToStream().To(p + "out")
	}
	logs := &badInputLog{}
	cfg := c.config(t.TempDir(), "i1")
	cfg.DeserializationErrors = runtime.DeadLetterOnError
	cfg.ProcessingErrors = runtime.DeadLetterOnError
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	app, err := runtime.New(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := running(t, app)
	base := time.UnixMilli(1_700_000_000_000)
	produceBoth(c, base,
		badInputRec{key: []byte("a"), value: "1"},
		badInputRec{key: []byte("b"), value: "2"},
		badInputRec{key: nil, value: "nil-key", bad: true},
		badInputRec{key: []byte("a"), value: "3"},
	)
	eventually(t, 30*time.Second, "3 good records counted on both sides", func() (bool, string) {
		out, ctrl := c.readAll("out"), c.readAll("ctrl-out")
		return len(out) == 3 && len(ctrl) == 3, fmt.Sprintf("out %d, ctrl-out %d", len(out), len(ctrl))
	})
	// The app still runs: a second batch, after the nil key, is counted too.
	produceBoth(c, base.Add(time.Second),
		badInputRec{key: []byte("b"), value: "4"},
		badInputRec{key: nil, value: "nil-key-2", bad: true},
		badInputRec{key: []byte("a"), value: "5"},
	)
	eventually(t, 30*time.Second, "5 good records counted on both sides", func() (bool, string) {
		out, ctrl := c.readAll("out"), c.readAll("ctrl-out")
		return len(out) == 5 && len(ctrl) == 5, fmt.Sprintf("out %d, ctrl-out %d", len(out), len(ctrl))
	})
	if s := app.State(); s != runtime.Running || !app.Alive() {
		t.Errorf("after the nil keys: state %v alive %v, want RUNNING and alive", s, app.Alive())
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	out, ctrl := outputsOf(c, "out", int64Value), outputsOf(c, "ctrl-out", int64Value)
	if !slices.Equal(out, ctrl) {
		t.Errorf("count outputs differ from the run without the nil keys:\n got  %v\n want %v", out, ctrl)
	}
	t.Logf("outputs: %v", out)
	if got := c.latestInt64("out"); got["a"] != 3 || got["b"] != 2 || len(got) != 2 {
		t.Errorf("final counts %v, want a=3 b=2 (and no count for a nil or empty key)", got)
	}
	dlq := c.readAll("count-app-dlq")
	if len(dlq) != 2 {
		t.Fatalf("%d dead letters, want 2 (one per nil key)", len(dlq))
	}
	for _, r := range dlq {
		var kind, msg string
		for _, h := range r.Headers {
			switch h.Key {
			case "__choreo.errors.kind":
				kind = string(h.Value)
			case "__streams.errors.message":
				msg = string(h.Value)
			}
		}
		if r.Key != nil || kind != "processing" || !strings.Contains(msg, "null key") {
			t.Errorf("dead letter key %q kind %q message %q, want a nil key, processing, \"null key\"", r.Key, kind, msg)
		}
	}
	if n := app.DeadLetteredRecords(); n != 2 {
		t.Errorf("DeadLetteredRecords = %d, want 2", n)
	}
	_ = logs
}
