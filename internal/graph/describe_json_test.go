package graph

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// describeGraph: a source reading two topics feeds a processor with a
// plain store and a repartition with a fixed count; a second sub-topology
// aggregates into a table read by a processor; one store is unused.
func describeGraph(t *testing.T) *Topology {
	t.Helper()
	b := newGB()
	ab := b.source("ab", false, "ta", "tb")
	p := b.node("p", KindProcessor, ab)
	b.store("plain", p)
	src := b.repartition("r", 4, p)
	agg := b.node("agg", KindProcessor, src)
	b.store("tbl", agg)
	b.g.Stores["tbl"].Table = true
	reader := b.node("reader", KindProcessor, agg)
	reader.Stores = append(reader.Stores, "tbl")
	b.sink("out", "tout", false, reader)
	b.g.Stores["unused"] = &StoreSpec{Name: "unused"}
	top, err := Compile(b.g)
	if err != nil {
		t.Fatal(err)
	}
	return top
}

func TestDescriptionOfHandBuiltGraph(t *testing.T) {
	top := describeGraph(t)
	d := top.Description("app")
	zero, one := 0, 1
	wantStores := []StoreDescription{
		{Name: "plain", Subtopology: &zero, Logged: true, ChangelogTopic: "app-plain-changelog", Nodes: []string{"p"}},
		{Name: "tbl", Subtopology: &one, Logged: true, Table: true, ChangelogTopic: "app-tbl-changelog", Nodes: []string{"agg", "reader"}},
		{Name: "unused", Nodes: []string{}},
	}
	if !reflect.DeepEqual(d.Stores, wantStores) {
		t.Errorf("stores %+v", d.Stores)
	}
	wantRP := []RepartitionDescription{{Name: "r", Topic: "app-r-repartition", Partitions: 4, WrittenBy: []int{0}, ReadBy: []int{1}}}
	if !reflect.DeepEqual(d.RepartitionTopics, wantRP) {
		t.Errorf("repartition topics %+v", d.RepartitionTopics)
	}
	if got := d.Subtopologies[0]; !reflect.DeepEqual(got.SourceTopics, []string{"ta", "tb"}) ||
		!reflect.DeepEqual(got.SinkTopics, []string{"app-r-repartition"}) || !reflect.DeepEqual(got.Nodes[0].Topics, []string{"ta", "tb"}) {
		t.Errorf("sub-topology 0: %+v", got)
	}
	if !reflect.DeepEqual(d.CopartitionGroups, [][]string{{"ta", "tb"}}) {
		t.Errorf("co-partition groups %v", d.CopartitionGroups)
	}
	// Without an application id: names less the "<app>-" prefix.
	js, err := top.DescribeJSON("")
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(js, &raw); err != nil {
		t.Fatal(err)
	}
	if _, ok := raw["applicationId"]; ok {
		t.Error("applicationId present without an application id")
	}
	for _, want := range []string{`"topic": "r-repartition"`, `"changelogTopic": "plain-changelog"`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("no %s in\n%s", want, js)
		}
	}
	if strings.Contains(string(js), "null") {
		t.Errorf("null in\n%s", js)
	}
}

func TestNodeKindString(t *testing.T) {
	for k, want := range map[NodeKind]string{KindProcessor: "processor", KindSource: "source", KindSink: "sink", NodeKind(9): "unknown"} {
		if k.String() != want {
			t.Errorf("%d: %q", k, k.String())
		}
	}
}

func TestMermaidOfHandBuiltGraph(t *testing.T) {
	got := describeGraph(t).Mermaid("app")
	want := `flowchart TB
    t0(("ta"))
    t1(("tb"))
    t2(("app-r-repartition"))
    t3(("tout"))
    subgraph sub0["Sub-topology 0"]
        n1{"op<br>p"}
        s0[("store<br>plain")]
    end
    subgraph sub1["Sub-topology 1"]
        n4[("op<br>agg<br>store tbl")]
        n5{"op<br>reader"}
    end
    t0 --> n1
    t1 --> n1
    n1 --> t2
    n1 -.- s0
    t2 --> n4
    n4 --> n5
    n5 --> t3
    n4 -.-> n5
    classDef repartition stroke-dasharray: 5 5
    class t2 repartition
`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestMermaidLabelEscapes(t *testing.T) {
	for in, want := range map[string]string{
		"plain-name/1.x":  `"plain-name/1.x"`,
		`a"b`:             `"a#quot;b"`,
		"<b>&#x;":         `"#60;b#62;#38;#35;x;"`,
		"`md` \\ %%{x}%%": `"#96;md#96; #92; #37;#37;{x}#37;#37;"`,
		"style:a\nb\tc":   `"style#58;a#10;b#9;c"`,
		"naïve 日本":        `"naïve 日本"`,
	} {
		if got := mermaidLabel(in); got != want {
			t.Errorf("mermaidLabel(%q) = %s, want %s", in, got, want)
		}
	}
	if got := mermaidLabel("a", "b"); got != `"a<br>b"` {
		t.Errorf("two lines: %s", got)
	}
}
