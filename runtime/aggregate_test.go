package runtime_test

import (
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/internal/graph"
	"github.com/choreo-go/choreo/runtime"
)

func TestCountReduceAggregate(t *testing.T) {
	b := runtime.NewBuilder()
	in := runtime.StreamOf(b, "in", runtime.String(), runtime.Int64())
	g := in.GroupByKey()
	counts := runtime.Count(g, runtime.Named("counts"))
	counts.ToStream().To("counts-out")
	runtime.Reduce(g, func(agg, v int64) int64 { return agg + v }, runtime.Named("sums")).ToStream().To("sums-out")
	runtime.Aggregate(g, func() string { return "" }, func(k string, v int64, agg string) string {
		return agg + string(rune('a'+v))
	}, runtime.Named("letters"), runtime.WithValueSerde(runtime.String())).ToStream().To("letters-out")
	h := newHarness(t, b, 1)
	if len(h.topo.Subtopologies) != 1 || len(h.topo.Repartitions) != 0 {
		t.Fatalf("GroupByKey of an unchanged key must not repartition: %s", h.topo.Describe())
	}
	hdr := kgo.RecordHeader{Key: "cid", Value: bs("7")}
	h.mustPipe("in", bs("x"), i64(1), 10, hdr)
	h.mustPipe("in", bs("y"), i64(2), 20)
	h.mustPipe("in", bs("x"), i64(3), 30)
	h.mustPipe("in", bs("x"), nil, 40) // tombstone: ignored by stream aggregations

	eq(t, "counts", kvInt(t, h.sent["counts-out"]), []string{"x=1", "y=1", "x=2"})
	eq(t, "sums", kvInt(t, h.sent["sums-out"]), []string{"x=1", "y=2", "x=4"})
	eq(t, "letters", kv(h.sent["letters-out"]), []string{"x=b", "y=c", "x=bd"})
	out := h.sent["counts-out"]
	if out[0].Timestamp != 10 || out[2].Timestamp != 30 || len(out[0].Headers) != 1 {
		t.Errorf("output timestamps/headers: %+v", out)
	}
	ts, v := h.stored("counts", bs("x"))
	if ts != 30 || string(v) != string(i64(2)) {
		t.Errorf("counts[x] = ts %d value %x", ts, v)
	}
	ts, v = h.stored("letters", bs("y"))
	if ts != 20 || string(v) != "c" {
		t.Errorf("letters[y] = ts %d value %q", ts, v)
	}
	for _, name := range []string{"counts", "sums", "letters"} {
		spec := h.topo.Graph.Stores[name]
		if spec == nil || !spec.Logged || !spec.Table {
			t.Errorf("store %s: %+v", name, spec)
		}
	}
	if counts.StoreName() != "counts" {
		t.Errorf("StoreName %q", counts.StoreName())
	}
}

func TestGroupByRepartitions(t *testing.T) {
	b := runtime.NewBuilder()
	in := runtime.StreamOf(b, "orders", runtime.String(), runtime.String())
	// value = "customer:amount"
	g := runtime.GroupBy(in, func(_, v string) string { return strings.Split(v, ":")[0] }, runtime.Named("by-customer"))
	runtime.Count(g, runtime.Named("orders-per-customer")).ToStream().To("out")
	h := newHarness(t, b, 3)
	if len(h.topo.Subtopologies) != 2 {
		t.Fatalf("want 2 sub-topologies:\n%s", h.topo.Describe())
	}
	h.mustPipe("orders", bs("o1"), bs("alice:5"), 1)
	h.mustPipe("orders", bs("o2"), bs("bob:7"), 2)
	h.mustPipe("orders", bs("o3"), bs("alice:1"), 3)
	rp := h.sent[graph.Repartition(appID, "by-customer")]
	eq(t, "repartition keys", keys(rp), []string{"alice", "bob", "alice"})
	eq(t, "counts", kvInt(t, h.sent["out"]), []string{"alice=1", "bob=1", "alice=2"})
	// all of alice's records met in one task
	if rp[0].Partition != rp[2].Partition {
		t.Errorf("alice in partitions %d and %d", rp[0].Partition, rp[2].Partition)
	}
}

func TestGroupByKeyAfterSelectKeyRepartitions(t *testing.T) {
	b := runtime.NewBuilder()
	in := runtime.StreamOf(b, "in", runtime.String(), runtime.String())
	rekeyed := runtime.SelectKey(in, func(_, v string) string { return v })
	runtime.Count(rekeyed.GroupByKey(), runtime.Named("c")).ToStream().To("out")
	h := newHarness(t, b, 1)
	// unnamed grouping: the repartition topic is named after the store
	if _, ok := h.topo.Repartitions["c"]; !ok {
		t.Fatalf("repartitions %v", h.topo.Repartitions)
	}
	h.mustPipe("in", bs("1"), bs("a"), 1)
	h.mustPipe("in", bs("2"), bs("a"), 2)
	eq(t, "out", kvInt(t, h.sent["out"]), []string{"a=1", "a=2"})
	eq(t, "repartition", len(h.sent["app-c-repartition"]), 2)
}

func TestAggregationsShareTheGroupingsRepartition(t *testing.T) {
	b := runtime.NewBuilder()
	in := runtime.StreamOf(b, "in", runtime.String(), runtime.Int64())
	g := runtime.GroupBy(in, func(k string, _ int64) string { return k[:1] }, runtime.Named("by-prefix"))
	runtime.Count(g, runtime.Named("n")).ToStream().To("counts")
	runtime.Reduce(g, func(a, v int64) int64 { return a + v }, runtime.Named("sum")).ToStream().To("sums")
	h := newHarness(t, b, 1)
	if len(h.topo.Repartitions) != 1 || len(h.topo.Subtopologies) != 2 {
		t.Fatalf("want one shared repartition:\n%s", h.topo.Describe())
	}
	h.mustPipe("in", bs("a1"), i64(2), 1)
	h.mustPipe("in", bs("a2"), i64(3), 2)
	eq(t, "counts", kvInt(t, h.output("counts")), []string{"a=1", "a=2"})
	eq(t, "sums", kvInt(t, h.output("sums")), []string{"a=2", "a=5"})
}
