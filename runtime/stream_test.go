package runtime_test

import (
	"encoding/binary"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/internal/graph"
	"github.com/choreo-go/choreo/runtime"
)

func bs(s string) []byte { return []byte(s) }

func i64(n int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(n)) }

// kv renders sent records as "key=value" ("key=<nil>" for a tombstone,
// "<nil>=value" for a nil key).
func kv(recs []sent) []string {
	out := []string{}
	for _, r := range recs {
		out = append(out, render(r.Key)+"="+render(r.Value))
	}
	return out
}

func render(b []byte) string {
	if b == nil {
		return "<nil>"
	}
	return string(b)
}

// kvInt renders records with string keys and int64 values.
func kvInt(t *testing.T, recs []sent) []string {
	t.Helper()
	out := []string{}
	for _, r := range recs {
		if r.Value == nil {
			out = append(out, string(r.Key)+"=<nil>")
			continue
		}
		n, err := runtime.Int64().Deserialize(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(r.Key)+"="+strconv.FormatInt(n, 10))
	}
	return out
}

func eq[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got  %#v\n want %#v", what, got, want)
	}
}

func TestStatelessOperators(t *testing.T) {
	b := runtime.NewBuilder()
	in := runtime.StreamOf(b, "in", runtime.String(), runtime.String())
	var peeked []string
	in.Filter(func(k, v string) bool { return strings.HasPrefix(v, "keep") }).
		Peek(func(k, v string) { peeked = append(peeked, k+":"+v) }).
		To("filtered")
	in.FilterNot(func(k, v string) bool { return strings.HasPrefix(v, "keep") }).To("rejected")
	runtime.Map(in, func(k, v string) (string, int64) { return strings.ToUpper(k), int64(len(v)) }).To("mapped")
	runtime.MapValues(in, func(k, v string) string { return k + "/" + v }).To("mapvalues")
	runtime.FlatMap(in, func(k, v string) []runtime.KeyValue[string, string] {
		var out []runtime.KeyValue[string, string]
		for _, w := range strings.Fields(v) {
			out = append(out, runtime.KeyValue[string, string]{Key: w, Value: k})
		}
		return out
	}).To("flatmap")
	runtime.FlatMapValues(in, func(k, v string) []string { return strings.Split(v, " ") }).To("flatmapvalues")
	runtime.SelectKey(in, func(k, v string) string { return v }).To("selectkey")
	h := newHarness(t, b, 1)

	hdr := []kgo.RecordHeader{{Key: "correlation-id", Value: bs("c-1")}}
	h.mustPipe("in", bs("a"), bs("keep me"), 100, hdr...)
	h.mustPipe("in", bs("b"), bs("drop"), 200)

	eq(t, "filtered", kv(h.sent["filtered"]), []string{"a=keep me"})
	eq(t, "peeked", peeked, []string{"a:keep me"})
	eq(t, "rejected", kv(h.sent["rejected"]), []string{"b=drop"})
	eq(t, "mapvalues", kv(h.sent["mapvalues"]), []string{"a=a/keep me", "b=b/drop"})
	eq(t, "flatmap", kv(h.sent["flatmap"]), []string{"keep=a", "me=a", "drop=b"})
	eq(t, "flatmapvalues", kv(h.sent["flatmapvalues"]), []string{"a=keep", "a=me", "b=drop"})
	eq(t, "selectkey", kv(h.sent["selectkey"]), []string{"keep me=keep me", "drop=drop"})
	mapped := h.sent["mapped"]
	if len(mapped) != 2 || string(mapped[0].Key) != "A" || !reflect.DeepEqual(mapped[0].Value, i64(7)) {
		t.Errorf("mapped: %+v", mapped)
	}

	// Headers and timestamps pass through every operator unchanged.
	for topic, recs := range h.sent {
		for _, r := range recs {
			switch string(r.Key) {
			case "a", "A", "keep", "me", "keep me":
				if r.Timestamp != 100 || !reflect.DeepEqual(r.Headers, hdr) {
					t.Errorf("%s: record %q has timestamp %d headers %v", topic, r.Key, r.Timestamp, r.Headers)
				}
			default:
				if r.Timestamp != 200 || len(r.Headers) != 0 {
					t.Errorf("%s: record %q has timestamp %d headers %v", topic, r.Key, r.Timestamp, r.Headers)
				}
			}
		}
	}
}

func TestMergeAndSplit(t *testing.T) {
	b := runtime.NewBuilder()
	a := runtime.StreamOf(b, "a", runtime.String(), runtime.Int64())
	c := runtime.StreamOf(b, "c", runtime.String(), runtime.Int64())
	merged := a.Merge(c)
	merged.To("merged")
	br := merged.Split(runtime.Named("n-")).
		Branch("neg", func(_ string, v int64) bool { return v < 0 }).
		Branch("big", func(_ string, v int64) bool { return v > 100 }).
		Default("rest").
		Branches()
	if len(br) != 3 {
		t.Fatalf("branches: %v", br)
	}
	br["neg"].To("neg")
	br["big"].To("big")
	br["rest"].To("rest")
	h := newHarness(t, b, 1)
	if len(h.topo.Subtopologies) != 1 {
		t.Fatalf("merge must join both sources in one sub-topology, got %d", len(h.topo.Subtopologies))
	}
	h.mustPipe("a", bs("x"), i64(-5), 1)
	h.mustPipe("c", bs("y"), i64(500), 2)
	h.mustPipe("a", bs("z"), i64(7), 3)
	h.mustPipe("c", bs("w"), i64(-1000), 4) // first matching branch wins
	eq(t, "merged", len(h.sent["merged"]), 4)
	eq(t, "neg", keys(h.sent["neg"]), []string{"x", "w"})
	eq(t, "big", keys(h.sent["big"]), []string{"y"})
	eq(t, "rest", keys(h.sent["rest"]), []string{"z"})
	for _, name := range []string{"n-", "n-neg", "n-big", "n-rest"} {
		if !strings.Contains(h.topo.Describe(), "Processor: "+name+" ") {
			t.Errorf("Describe lacks %q:\n%s", name, h.topo.Describe())
		}
	}
}

func keys(recs []sent) []string {
	out := []string{}
	for _, r := range recs {
		out = append(out, render(r.Key))
	}
	return out
}

func TestStreamTombstonesAndNullKeys(t *testing.T) {
	b := runtime.NewBuilder()
	in := runtime.StreamOf(b, "in", runtime.String(), runtime.JSON[map[string]int]())
	var seen []string
	in.Filter(func(k string, v map[string]int) bool {
		seen = append(seen, k+" "+strconv.FormatBool(v == nil))
		return true
	}).To("out")
	runtime.MapValues(in, func(k string, v map[string]int) int64 { return int64(v["n"]) }).To("mapped")
	h := newHarness(t, b, 1)
	h.mustPipe("in", bs("k"), nil, 1)            // tombstone
	h.mustPipe("in", nil, bs(`{"n":3}`), 2)      // nil key
	h.mustPipe("in", bs("k2"), bs(`{"n":4}`), 3) // regular
	eq(t, "out", kv(h.sent["out"]), []string{"k=<nil>", `<nil>={"n":3}`, `k2={"n":4}`})
	eq(t, "seen", seen, []string{"k true", " false", "k2 false"})
	m := h.sent["mapped"]
	if len(m) != 3 || m[0].Value != nil || m[1].Key != nil || !reflect.DeepEqual(m[2].Value, i64(4)) {
		t.Errorf("mapped: %+v", m)
	}
}

func TestSourceDeserializationError(t *testing.T) {
	b := runtime.NewBuilder()
	runtime.StreamOf(b, "in", runtime.String(), runtime.Int64(), runtime.Named("orders-in")).To("out")
	h := newHarness(t, b, 1)
	err := h.pipe("in", bs("k"), bs("not eight bytes"), 1)
	if !errors.Is(err, runtime.ErrSerde) {
		t.Fatalf("error %v does not wrap ErrSerde", err)
	}
	var ge *graph.Error
	if !errors.As(err, &ge) || ge.Node != "orders-in" {
		t.Fatalf("error %v does not name the source node", err)
	}
	// A user serde that does not wrap ErrSerde is wrapped by the source.
	b = runtime.NewBuilder()
	runtime.StreamOf(b, "in", runtime.String(), failingSerde{}).To("out")
	h = newHarness(t, b, 1)
	if err := h.pipe("in", bs("k"), bs("v"), 1); !errors.Is(err, runtime.ErrSerde) || !errors.Is(err, errBoom) {
		t.Fatalf("error %v", err)
	}
}

var errBoom = errors.New("boom")

type failingSerde struct{}

func (failingSerde) Serialize(string) ([]byte, error)   { return nil, errBoom }
func (failingSerde) Deserialize([]byte) (string, error) { return "", errBoom }

func TestMapValuesE(t *testing.T) {
	b := runtime.NewBuilder()
	in := runtime.StreamOf(b, "in", runtime.String(), runtime.String())
	runtime.MapValuesE(in, func(k, v string) (int64, error) {
		return strconv.ParseInt(v, 10, 64)
	}, runtime.Named("parse")).To("out")
	h := newHarness(t, b, 1)
	h.mustPipe("in", bs("a"), bs("12"), 1)
	err := h.pipe("in", bs("b"), bs("x"), 2)
	var ge *graph.Error
	if !errors.As(err, &ge) || ge.Node != "parse" {
		t.Fatalf("error %v does not name the node", err)
	}
	eq(t, "out", len(h.sent["out"]), 1)
}

func TestRepartitionStream(t *testing.T) {
	b := runtime.NewBuilder()
	in := runtime.StreamOf(b, "in", runtime.String(), runtime.String())
	runtime.SelectKey(in, func(_, v string) string { return v }).
		Repartition(runtime.Named("by-value"), runtime.WithPartitions(4)).
		To("out")
	h := newHarness(t, b, 4)
	if got := h.topo.Repartitions["by-value"].Partitions; got != 4 {
		t.Errorf("partitions %d", got)
	}
	hdr := kgo.RecordHeader{Key: "h", Value: bs("1")}
	h.mustPipe("in", bs("k1"), bs("v1"), 10, hdr)
	rp := h.sent[graph.Repartition(appID, "by-value")]
	if len(rp) != 1 || string(rp[0].Key) != "v1" || rp[0].Timestamp != 10 || len(rp[0].Headers) != 1 {
		t.Fatalf("repartition records %+v", rp)
	}
	out := h.sent["out"]
	if len(out) != 1 || string(out[0].Key) != "v1" || out[0].Timestamp != 10 || !reflect.DeepEqual(out[0].Headers, []kgo.RecordHeader{hdr}) {
		t.Fatalf("out %+v", out)
	}
}
