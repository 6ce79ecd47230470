package runtime_test

import (
	"strings"
	"testing"

	"github.com/choreo-go/choreo/internal/graph"
	"github.com/choreo-go/choreo/runtime"
)

func TestDescribe(t *testing.T) {
	b := runtime.NewBuilder()
	words := runtime.StreamOf(b, "words", runtime.String(), runtime.String())
	words = words.Filter(func(k, v string) bool { return v != "" })
	g := runtime.GroupBy(words, func(_, v string) string { return v })
	counts := runtime.Count(g)
	counts.ToStream().To("counts")
	clicks := runtime.StreamOf(b, "clicks", runtime.String(), runtime.Int64(), runtime.Named("clicks"))
	runtime.LeftJoin(clicks, counts, func(k string, v int64, n int64, found bool) int64 { return n }, runtime.Named("click-counts")).
		To("click-counts")
	const want = `Topologies:
   Sub-topology: 0
    Source: KSTREAM-SOURCE-0000000000 (topics: [words])
      --> KSTREAM-FILTER-0000000001
    Processor: KSTREAM-FILTER-0000000001 (stores: [])
      --> KSTREAM-KEY-SELECT-0000000002
      <-- KSTREAM-SOURCE-0000000000
    Processor: KSTREAM-KEY-SELECT-0000000002 (stores: [])
      --> KSTREAM-AGGREGATE-STATE-STORE-0000000003-repartition-sink
      <-- KSTREAM-FILTER-0000000001
    Sink: KSTREAM-AGGREGATE-STATE-STORE-0000000003-repartition-sink (topic: KSTREAM-AGGREGATE-STATE-STORE-0000000003-repartition)
      <-- KSTREAM-KEY-SELECT-0000000002

   Sub-topology: 1
    Source: KSTREAM-AGGREGATE-STATE-STORE-0000000003-repartition-source (topics: [KSTREAM-AGGREGATE-STATE-STORE-0000000003-repartition])
      --> KSTREAM-AGGREGATE-0000000004
    Processor: KSTREAM-AGGREGATE-0000000004 (stores: [KSTREAM-AGGREGATE-STATE-STORE-0000000003])
      --> KTABLE-TOSTREAM-0000000005
      <-- KSTREAM-AGGREGATE-STATE-STORE-0000000003-repartition-source
    Processor: KTABLE-TOSTREAM-0000000005 (stores: [])
      --> KSTREAM-SINK-0000000006
      <-- KSTREAM-AGGREGATE-0000000004
    Sink: KSTREAM-SINK-0000000006 (topic: counts)
      <-- KTABLE-TOSTREAM-0000000005
    Source: clicks (topics: [clicks])
      --> click-counts
    Processor: click-counts (stores: [KSTREAM-AGGREGATE-STATE-STORE-0000000003])
      --> KSTREAM-SINK-0000000007
      <-- clicks
    Sink: KSTREAM-SINK-0000000007 (topic: click-counts)
      <-- click-counts

`
	topo := build(t, b)
	if got := topo.Describe(); got != want {
		t.Errorf("Describe:\n%s\nwant:\n%s", got, want)
	}
}

func TestCompileSubtopologiesAndCopartitioning(t *testing.T) {
	b := runtime.NewBuilder()
	// sub-topology 0: orders rekeyed and written to a repartition topic
	orders := runtime.StreamOf(b, "orders", runtime.String(), runtime.String(), runtime.Named("orders"))
	byCustomer := runtime.SelectKey(orders, func(_, v string) string { return v }, runtime.Named("by-customer"))
	// sub-topology 1: an independent stream (added before the repartition source)
	runtime.StreamOf(b, "audit", runtime.String(), runtime.String(), runtime.Named("audit")).To("audit-copy")
	// sub-topology 2: customers table joined with the repartitioned orders
	customers := runtime.TableOf(b, "customers", runtime.String(), runtime.String(), runtime.Named("customers"))
	runtime.Join(byCustomer, customers, func(k, v, c string) string { return c }, runtime.Named("enrich")).To("enriched")
	topo := build(t, b).Graph()

	if len(topo.Subtopologies) != 3 {
		t.Fatalf("sub-topologies: %d\n%s", len(topo.Subtopologies), topo.Describe())
	}
	type summary struct {
		Sources []string
		Topics  []graph.Topic
		Outputs []graph.Topic
		Stores  []string
	}
	sum := func(st *graph.Subtopology) summary {
		return summary{nodeNames(st.Sources), st.Topics, st.Outputs, st.Stores}
	}
	eq(t, "sub-topology 0", sum(topo.Subtopologies[0]), summary{
		Sources: []string{"orders"},
		Topics:  []graph.Topic{{Name: "orders"}},
		Outputs: []graph.Topic{{Name: "enrich", Internal: true}},
	})
	eq(t, "sub-topology 1", sum(topo.Subtopologies[1]), summary{
		Sources: []string{"audit"},
		Topics:  []graph.Topic{{Name: "audit"}},
		Outputs: []graph.Topic{{Name: "audit-copy"}},
	})
	eq(t, "sub-topology 2", sum(topo.Subtopologies[2]), summary{
		Sources: []string{"customers-source", "enrich-repartition-source"},
		Topics:  []graph.Topic{{Name: "customers"}, {Name: "enrich", Internal: true}},
		Outputs: []graph.Topic{{Name: "enriched"}},
		Stores:  []string{"customers"},
	})
	// parents before children in every sub-topology
	for _, st := range topo.Subtopologies {
		pos := map[*graph.Node]int{}
		for i, n := range st.Nodes {
			pos[n] = i
		}
		for _, n := range st.Nodes {
			for _, c := range n.Children {
				if pos[c] <= pos[n] {
					t.Errorf("sub-topology %d: %s before its parent %s", st.ID, c.Name, n.Name)
				}
			}
		}
	}
	eq(t, "co-partition groups", topo.CopartitionGroups, [][]graph.Topic{{{Name: "customers"}, {Name: "enrich", Internal: true}}})

	res := topo.Resolve("shop")
	eq(t, "source topics", res.SourceTopics, [][]string{{"orders"}, {"audit"}, {"customers", "shop-enrich-repartition"}})
	in := res.Inputs["shop-enrich-repartition"]
	if in.Subtopology != topo.Subtopologies[2] || in.Source.Name != "enrich-repartition-source" || !in.Topic.Internal {
		t.Errorf("input %+v", in)
	}
	eq(t, "changelogs", res.Changelogs, map[string]string{"customers": "shop-customers-changelog"})
	eq(t, "repartitions", res.Repartitions, map[string]string{"shop-enrich-repartition": "enrich"})
}

// Explicit names are stable: adding an operator upstream changes derived
// names but not the explicit store, repartition and changelog names.
func TestExplicitNamesSurviveTopologyEdits(t *testing.T) {
	mk := func(extra bool) *graph.Topology {
		b := runtime.NewBuilder()
		in := runtime.StreamOf(b, "in", runtime.String(), runtime.String())
		if extra {
			in = in.Filter(func(k, v string) bool { return true })
		}
		g := runtime.GroupBy(in, func(_, v string) string { return v }, runtime.Named("by-value"))
		runtime.Count(g, runtime.Named("value-counts")).ToStream().To("out")
		runtime.Count(runtime.GroupBy(in, func(k, _ string) string { return k + "!" })).ToStream().To("out2")
		return build(t, b).Graph()
	}
	a, c := mk(false), mk(true)
	for _, topo := range []*graph.Topology{a, c} {
		if _, ok := topo.Repartitions["by-value"]; !ok {
			t.Errorf("repartitions %v", topo.Repartitions)
		}
		if _, ok := topo.Graph.Stores["value-counts"]; !ok {
			t.Errorf("stores %v", topo.Graph.Stores)
		}
		if topo.Resolve("app").Changelogs["value-counts"] != "app-value-counts-changelog" {
			t.Error("changelog name")
		}
	}
	derived := func(topo *graph.Topology) string {
		for name := range topo.Graph.Stores {
			if strings.HasPrefix(name, "KSTREAM-AGGREGATE-STATE-STORE-") {
				return name
			}
		}
		return ""
	}
	if derived(a) == derived(c) || derived(a) == "" {
		t.Errorf("derived store names %q %q should differ", derived(a), derived(c))
	}
}

func TestBuildErrors(t *testing.T) {
	cases := []struct {
		name  string
		build func(b *runtime.Builder)
		want  string
	}{
		{"duplicate operator name", func(b *runtime.Builder) {
			s := runtime.StreamOf(b, "in", runtime.String(), runtime.String())
			s.Filter(func(string, string) bool { return true }, runtime.Named("f")).
				Filter(func(string, string) bool { return true }, runtime.Named("f")).To("out")
		}, `duplicate operator name "f"`},
		{"duplicate store name", func(b *runtime.Builder) {
			s := runtime.StreamOf(b, "in", runtime.String(), runtime.String())
			runtime.Count(s.GroupByKey(), runtime.Named("c")).ToStream().To("o1")
			runtime.AddStore(b, "c", runtime.String(), runtime.String())
		}, `duplicate store name "c"`},
		{"duplicate repartition name", func(b *runtime.Builder) {
			s := runtime.StreamOf(b, "in", runtime.String(), runtime.String())
			s.Repartition(runtime.Named("r")).To("o1")
			runtime.Count(runtime.GroupBy(s, func(k, _ string) string { return k }, runtime.Named("r"))).ToStream().To("o2")
		}, `duplicate repartition topic name "r"`},
		{"key serde mismatch", func(b *runtime.Builder) {
			s := runtime.StreamOf(b, "in", runtime.String(), runtime.String())
			s.To("out", runtime.WithKeySerde(runtime.Int64()))
		}, "key serde"},
		{"value serde mismatch", func(b *runtime.Builder) {
			s := runtime.StreamOf(b, "in", runtime.String(), runtime.String())
			runtime.MapValues(s, func(k, v string) int64 { return 1 }, runtime.WithValueSerde(runtime.String())).To("out")
		}, "value serde"},
		{"unsupported option", func(b *runtime.Builder) {
			s := runtime.StreamOf(b, "in", runtime.String(), runtime.String())
			s.Filter(func(string, string) bool { return true }, runtime.WithPartitions(3)).To("out")
		}, "WithPartitions is not supported"},
		{"bad partitions", func(b *runtime.Builder) {
			s := runtime.StreamOf(b, "in", runtime.String(), runtime.String())
			s.Repartition(runtime.WithPartitions(0)).To("out")
		}, "must be positive"},
		{"topic read twice", func(b *runtime.Builder) {
			runtime.StreamOf(b, "in", runtime.String(), runtime.String()).To("o1")
			runtime.StreamOf(b, "in", runtime.String(), runtime.String()).To("o2")
		}, `topic "in" is read by both`},
		{"unknown processor store", func(b *runtime.Builder) {
			s := runtime.StreamOf(b, "in", runtime.String(), runtime.String())
			runtime.Process(s, func() runtime.Processor[string, string, string, string] { return nil }, []string{"nope"})
		}, `unknown store "nope"`},
		{"empty", func(b *runtime.Builder) {}, "empty topology"},
		{"branch after default", func(b *runtime.Builder) {
			s := runtime.StreamOf(b, "in", runtime.String(), runtime.String())
			s.Split().Default("d").Branch("x", func(string, string) bool { return true })
		}, "after the default branch"},
		{"other builder", func(b *runtime.Builder) {
			s := runtime.StreamOf(b, "in", runtime.String(), runtime.String())
			other := runtime.StreamOf(runtime.NewBuilder(), "in2", runtime.String(), runtime.String())
			s.Merge(other).To("out")
		}, "not from this builder"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := runtime.NewBuilder()
			tc.build(b)
			_, err := b.Build()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Build error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestBuilderUsedAfterBuildPanics(t *testing.T) {
	b := runtime.NewBuilder()
	s := runtime.StreamOf(b, "in", runtime.String(), runtime.String())
	s.To("out")
	build(t, b)
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	s.To("out2")
}
