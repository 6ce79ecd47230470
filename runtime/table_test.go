package runtime_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/choreo-go/choreo/internal/graph"
	"github.com/choreo-go/choreo/runtime"
)

func TestTableOfTombstones(t *testing.T) {
	b := runtime.NewBuilder()
	tbl := runtime.TableOf(b, "customers", runtime.String(), runtime.String(), runtime.Named("customers"))
	tbl.ToStream().To("changes")
	h := newHarness(t, b, 1)
	h.mustPipe("customers", bs("c1"), bs("alice"), 5)
	h.mustPipe("customers", bs("c1"), bs("alice2"), 6)
	h.mustPipe("customers", bs("c2"), nil, 7) // deleting an absent key: nothing
	h.mustPipe("customers", bs("c1"), nil, 8) // delete
	h.mustPipe("customers", nil, bs("x"), 9)  // nil key: skipped
	eq(t, "changes", kv(h.sent["changes"]), []string{"c1=alice", "c1=alice2", "c1=<nil>"})
	if _, ok := h.storeGet("customers", bs("c1")); ok {
		t.Error("c1 still in store after tombstone")
	}
	h.mustPipe("customers", bs("c3"), bs("carol"), 11)
	ts, v := h.stored("customers", bs("c3"))
	if ts != 11 || string(v) != "carol" {
		t.Errorf("store c3 = %d %q", ts, v)
	}
	if spec := h.topo.Graph.Stores["customers"]; spec == nil || !spec.Logged || !spec.Table {
		t.Errorf("store spec %+v", spec)
	}
	if n := h.res.Changelogs["customers"]; n != "app-customers-changelog" {
		t.Errorf("changelog %q", n)
	}
}

func TestTableFilterMapValues(t *testing.T) {
	b := runtime.NewBuilder()
	tbl := runtime.TableOf(b, "stock", runtime.String(), runtime.Int64())
	inStock := tbl.Filter(func(_ string, n int64) bool { return n > 0 })
	labels := runtime.MapTableValues(inStock, func(k string, n int64) string { return k + "#" + strconv.FormatInt(n, 10) })
	labels.ToStream().To("labels")
	if inStock.StoreName() != "" || tbl.StoreName() != "stock-STATE-STORE-0000000000" {
		t.Errorf("store names %q %q", inStock.StoreName(), tbl.StoreName())
	}
	h := newHarness(t, b, 1)
	h.mustPipe("stock", bs("a"), i64(0), 1) // filtered out, never present: nothing
	h.mustPipe("stock", bs("a"), i64(3), 2) // appears
	h.mustPipe("stock", bs("a"), i64(5), 3) // update
	h.mustPipe("stock", bs("a"), i64(0), 4) // stops matching: delete downstream
	h.mustPipe("stock", bs("a"), nil, 5)    // delete of a row already filtered: nothing
	h.mustPipe("stock", bs("b"), i64(1), 6)
	h.mustPipe("stock", bs("b"), nil, 7) // delete
	eq(t, "labels", kv(h.sent["labels"]), []string{"a=a#3", "a=a#5", "a=<nil>", "b=b#1", "b=<nil>"})
}

func TestStreamTableJoin(t *testing.T) {
	b := runtime.NewBuilder()
	customers := runtime.TableOf(b, "customers", runtime.String(), runtime.String(), runtime.Named("customers"))
	orders := runtime.StreamOf(b, "orders", runtime.String(), runtime.Int64())
	runtime.Join(orders, customers, func(k string, amount int64, name string) string {
		return name + ":" + strconv.FormatInt(amount, 10)
	}, runtime.Named("enrich")).To("enriched")
	runtime.LeftJoin(orders, customers, func(k string, amount int64, name string, found bool) string {
		if !found {
			return "unknown:" + strconv.FormatInt(amount, 10)
		}
		return name + ":" + strconv.FormatInt(amount, 10)
	}, runtime.Named("enrich-left")).To("enriched-left")
	h := newHarness(t, b, 2)
	if len(h.topo.Subtopologies) != 1 {
		t.Fatalf("join must put stream and table in one sub-topology:\n%s", h.topo.Describe())
	}
	eq(t, "co-partition groups", h.topo.CopartitionGroups, [][]graph.Topic{{{Name: "customers"}, {Name: "orders"}}})

	h.mustPipe("customers", bs("c1"), bs("alice"), 1)
	h.mustPipe("orders", bs("c1"), i64(10), 2)
	h.mustPipe("orders", bs("c2"), i64(20), 3) // no customer
	h.mustPipe("customers", bs("c1"), nil, 4)
	h.mustPipe("orders", bs("c1"), i64(30), 5) // customer deleted
	h.mustPipe("orders", bs("c1"), nil, 6)     // tombstone: dropped by both
	eq(t, "inner", kv(h.sent["enriched"]), []string{"c1=alice:10"})
	eq(t, "left", kv(h.sent["enriched-left"]), []string{"c1=alice:10", "c2=unknown:20", "c1=unknown:30"})
	if h.sent["enriched"][0].Timestamp != 2 {
		t.Errorf("join output timestamp %d, want the stream record's", h.sent["enriched"][0].Timestamp)
	}
}

func TestJoinRepartitionsRekeyedStream(t *testing.T) {
	b := runtime.NewBuilder()
	customers := runtime.TableOf(b, "customers", runtime.String(), runtime.String(), runtime.Named("customers"))
	orders := runtime.StreamOf(b, "orders", runtime.String(), runtime.String()) // key order id, value customer id
	byCustomer := runtime.SelectKey(orders, func(_, v string) string { return v })
	runtime.Join(byCustomer, customers, func(k, v, name string) string { return name }, runtime.Named("enrich")).To("out")
	h := newHarness(t, b, 1)
	topo := h.topo
	if len(topo.Subtopologies) != 2 {
		t.Fatalf("want 2 sub-topologies:\n%s", topo.Describe())
	}
	spec := topo.Repartitions["enrich"]
	if spec == nil || spec.Partitions != 0 {
		t.Fatalf("repartition spec %+v, want 0 partitions (derived at runtime)", spec)
	}
	eq(t, "co-partition groups", topo.CopartitionGroups,
		[][]graph.Topic{{{Name: "customers"}, {Name: "enrich", Internal: true}}})
	eq(t, "graph co-partition group", nodeNames(topo.Graph.CopartitionGroups[0]), []string{"enrich-repartition-source", "customers-source"})
	plan, err := topo.Partitions(map[string]int32{"customers": 8, "orders": 3})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Repartitions["enrich"] != 8 {
		t.Errorf("join repartition derives %d partitions, want the table's 8", plan.Repartitions["enrich"])
	}
	h.mustPipe("customers", bs("c1"), bs("alice"), 1)
	h.mustPipe("orders", bs("o1"), bs("c1"), 2)
	eq(t, "out", kv(h.sent["out"]), []string{"c1=alice"})
}

func nodeNames(ns []*graph.Node) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.Name)
	}
	return out
}

// Order lines: key line id, value "order:amount". The portfolio sums the
// amounts per order; a line that moves to another order leaves its old
// order and joins the new one.
func TestTableGroupByAggregate(t *testing.T) {
	b := runtime.NewBuilder()
	lines := runtime.TableOf(b, "lines", runtime.String(), runtime.String())
	split := func(v string) (string, int64) {
		order, amount, _ := strings.Cut(v, ":")
		n, _ := strconv.ParseInt(amount, 10, 64)
		return order, n
	}
	byOrder := runtime.GroupTable(lines, func(_ string, v string) (string, int64) { return split(v) }, runtime.Named("lines-by-order"))
	totals := runtime.AggregateTable(byOrder,
		func() int64 { return 0 },
		func(_ string, v, agg int64) int64 { return agg + v },
		func(_ string, v, agg int64) int64 { return agg - v },
		runtime.Named("order-totals"), runtime.WithValueSerde(runtime.Int64()))
	totals.ToStream().To("totals")
	runtime.CountTable(runtime.GroupTable(lines, func(_ string, v string) (string, string) {
		o, _ := split(v)
		return o, v
	}), runtime.Named("line-counts")).ToStream().To("counts")
	h := newHarness(t, b, 2)

	rp := graph.Repartition(appID, "lines-by-order")
	h.mustPipe("lines", bs("l1"), bs("o1:10"), 1)
	h.mustPipe("lines", bs("l2"), bs("o1:5"), 2)
	eq(t, "totals", kvInt(t, h.output("totals")), []string{"o1=10", "o1=15"})
	h.output(rp)

	// Same group: ONE repartition record, ONE update (subtract then add).
	h.mustPipe("lines", bs("l1"), bs("o1:12"), 3)
	eq(t, "same-group repartition records", len(h.output(rp)), 1)
	eq(t, "same-group totals", kvInt(t, h.output("totals")), []string{"o1=17"})

	// Move l2 to o2: o1 decremented first, then o2 incremented.
	h.mustPipe("lines", bs("l2"), bs("o2:5"), 4)
	moved := h.output(rp)
	eq(t, "moved repartition keys", keys(moved), []string{"o1", "o2"})
	eq(t, "moved totals", kvInt(t, h.output("totals")), []string{"o1=12", "o2=5"})
	if moved[0].Timestamp != 4 {
		t.Errorf("repartition timestamp %d", moved[0].Timestamp)
	}

	// Delete l1: o1 goes to 0 and the row is kept.
	h.mustPipe("lines", bs("l1"), nil, 5)
	eq(t, "delete totals", kvInt(t, h.output("totals")), []string{"o1=0"})
	ts, v := h.stored("order-totals", bs("o1"))
	if ts != 5 || string(v) != string(i64(0)) {
		t.Errorf("order-totals[o1] = %d %x", ts, v)
	}
	eq(t, "counts", kvInt(t, h.output("counts")), []string{"o1=1", "o1=2", "o1=2", "o1=1", "o2=1", "o1=0"})
}

func TestReduceTable(t *testing.T) {
	b := runtime.NewBuilder()
	lines := runtime.TableOf(b, "lines", runtime.String(), runtime.Int64())
	g := runtime.GroupTable(lines, func(k string, v int64) (string, int64) { return k[:1], v })
	runtime.ReduceTable(g, func(agg, v int64) int64 { return agg + v }, func(agg, v int64) int64 { return agg - v }).
		ToStream().To("sums")
	h := newHarness(t, b, 1)
	h.mustPipe("lines", bs("a1"), i64(3), 1)
	h.mustPipe("lines", bs("a2"), i64(4), 2)
	h.mustPipe("lines", bs("a1"), i64(1), 3)
	h.mustPipe("lines", bs("a2"), nil, 4)
	eq(t, "sums", kvInt(t, h.output("sums")), []string{"a=3", "a=7", "a=5", "a=1"})
	if _, ok := h.topo.Graph.Stores["KTABLE-REDUCE-STATE-STORE-0000000004"]; !ok {
		t.Errorf("stores %v", h.topo.Graph.Stores)
	}
}

func TestJoinWithDerivedTable(t *testing.T) {
	b := runtime.NewBuilder()
	customers := runtime.TableOf(b, "customers", runtime.String(), runtime.String(), runtime.Named("customers"))
	vip := runtime.MapTableValues(customers.Filter(func(_, v string) bool { return strings.HasPrefix(v, "vip:") }),
		func(_, v string) string { return strings.TrimPrefix(v, "vip:") })
	orders := runtime.StreamOf(b, "orders", runtime.String(), runtime.String())
	runtime.Join(orders, vip, func(k, v, name string) string { return name + " ordered " + v }).To("vip-orders")
	h := newHarness(t, b, 1)
	h.mustPipe("customers", bs("c1"), bs("vip:alice"), 1)
	h.mustPipe("customers", bs("c2"), bs("bob"), 2)
	h.mustPipe("orders", bs("c1"), bs("tea"), 3)
	h.mustPipe("orders", bs("c2"), bs("coffee"), 4)
	eq(t, "vip orders", kv(h.output("vip-orders")), []string{"c1=alice ordered tea"})
}
