package runtime_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"html"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/choreo-go/choreo/internal/graph"
	"github.com/choreo-go/choreo/runtime"
)

var updateDescribeGolden = flag.Bool("update-describe-golden", false, "rewrite runtime/testdata/describe-orders.* from the current output")

// Test types of the order-shaped topology.
type (
	descrLine struct {
		Order, Product, Customer string
		Qty                      int64
	}
	descrProduct struct{ Price int64 }
	descrPriced  struct {
		Line  descrLine
		Total int64
	}
	descrPortfolio struct{ Lines, Total int64 }
)

// descrOrders declares the shape of the order example
// (examples/orders/orders/topology.go): StreamOf → SelectKey → Repartition
// → Join with TableOf → GroupBy → Reduce → GroupTable → AggregateTable →
// ToStream → To.
func descrOrders(b *runtime.Builder) {
	products := runtime.TableOf(b, "products", runtime.String(), runtime.JSON[descrProduct](), runtime.Named("products"))
	lines := runtime.StreamOf(b, "order-lines", runtime.String(), runtime.JSON[descrLine](), runtime.Named("order-lines-source"))
	byProduct := runtime.SelectKey(lines, func(_ string, l descrLine) string { return l.Product }, runtime.Named("key-by-product")).
		Repartition(runtime.Named("lines-by-product"))
	priced := runtime.Join(byProduct, products, func(_ string, l descrLine, p descrProduct) descrPriced {
		return descrPriced{Line: l, Total: l.Qty * p.Price}
	}, runtime.Named("price"), runtime.WithValueSerde(runtime.JSON[descrPriced]()))
	byLine := runtime.GroupBy(priced, func(_ string, p descrPriced) string { return p.Line.Order + "/" + p.Line.Product },
		runtime.Named("lines-by-line"))
	linesTable := runtime.Reduce(byLine, func(_, v descrPriced) descrPriced { return v }, runtime.Named("lines"))
	byCustomer := runtime.GroupTable(linesTable, func(_ string, p descrPriced) (string, descrPriced) { return p.Line.Customer, p },
		runtime.Named("lines-by-customer"))
	portfolio := runtime.AggregateTable(byCustomer, func() descrPortfolio { return descrPortfolio{} },
		func(_ string, p descrPriced, a descrPortfolio) descrPortfolio {
			a.Lines++
			a.Total += p.Total
			return a
		},
		func(_ string, p descrPriced, a descrPortfolio) descrPortfolio {
			a.Lines--
			a.Total -= p.Total
			return a
		},
		runtime.Named("portfolio"), runtime.WithValueSerde(runtime.JSON[descrPortfolio]()))
	portfolio.ToStream(runtime.Named("portfolio-changes")).To("order-portfolio", runtime.Named("portfolio-sink"))
}

// descrSimple is a stateless pipeline with derived names.
func descrSimple(b *runtime.Builder) {
	runtime.MapValues(runtime.StreamOf(b, "words", runtime.String(), runtime.String()).
		Filter(func(_, v string) bool { return v != "" }), func(_, v string) int64 { return int64(len(v)) }).
		To("lengths")
}

// descrJoins has derived names, a count, joins with a stored and a derived
// table, a merge, a split and a topic copied as is.
func descrJoins(b *runtime.Builder) {
	words := runtime.StreamOf(b, "words", runtime.String(), runtime.String())
	words.To("words-copy")
	counts := runtime.Count(runtime.GroupBy(words, func(_, v string) string { return v }))
	counts.ToStream().To("counts")
	clicks := runtime.StreamOf(b, "clicks", runtime.String(), runtime.Int64(), runtime.Named("clicks"))
	joined := runtime.LeftJoin(clicks, counts, func(_ string, v, n int64, _ bool) int64 { return v * n })
	big := counts.Filter(func(_ string, n int64) bool { return n > 10 })
	hot := runtime.Join(runtime.SelectKey(clicks, func(k string, _ int64) string { return k + "!" }), big,
		func(_ string, v, n int64) int64 { return v + n })
	br := joined.Merge(hot).Split().
		Branch("small", func(_ string, v int64) bool { return v < 100 }).
		Default("large").Branches()
	br["small"].To("small")
	br["large"].To("large")
	runtime.StreamOf(b, "unused", runtime.String(), runtime.String()) // a source with no children
}

// descrStore is a processor with its own store, reading a table's store
// too, beside an unused store.
type descrStore struct{}

func (descrStore) Init(runtime.ProcessorContext[string, string]) error { return nil }
func (descrStore) Process(runtime.Record[string, string]) error        { return nil }
func (descrStore) Close() error                                        { return nil }
func descrNewStore() runtime.Processor[string, string, string, string] { return descrStore{} }

func descrProcessor(b *runtime.Builder) {
	seen := runtime.AddStore(b, "seen", runtime.String(), runtime.Int64())
	runtime.AddStore(b, "never-used", runtime.String(), runtime.String())
	users := runtime.TableOf(b, "users", runtime.String(), runtime.String(), runtime.Named("users"))
	events := runtime.StreamOf(b, "events", runtime.String(), runtime.String(), runtime.Named("events"))
	out := runtime.Process(events, descrNewStore, []string{seen.Name(), users.StoreName()}, runtime.Named("dedup"))
	runtime.Process(out, descrNewStore, []string{seen.Name()}, runtime.Named("audit")).To("deduped")
}

// descrNasty names operators, stores and topics with characters that mean
// something to Mermaid, its entity decoding, Markdown or HTML.
func descrNasty(b *runtime.Builder) {
	names := []string{
		`end`, `subgraph`, `graph TD`, `a"b`, `x<y>&z`, `<b>bold</b>`, "`md`", `style:x#1;`, `classDef a fill:#f00;`,
		`%%{init: {}}%%`, `%% comment`, `-->|x|`, `a---b`, `(()){}[]`, `#quot;`, `&amp;`, `a;b`, `back\slash`, `naïve→ü 日本`,
		"tab\there", "line\nbreak", `click n0 call alert()`, `:::cls`, `"`, `x`,
	}
	s := runtime.StreamOf(b, "in/put #1", runtime.String(), runtime.String(), runtime.Named("src: 'in'"))
	for _, n := range names {
		s = s.Filter(func(string, string) bool { return true }, runtime.Named(n))
	}
	t := runtime.Count(s.GroupByKey(), runtime.Named("store <end> \"q\""))
	s = runtime.Join(s, t, func(_, v string, _ int64) string { return v }, runtime.Named("join|{x}"))
	s = s.Repartition(runtime.Named("re\"part<1>"))
	s.To(`out "quoted" & <tagged>`, runtime.Named("sink`x`"))
}

var descrTopologies = []struct {
	name  string
	build func(*runtime.Builder)
}{
	{"orders", descrOrders},
	{"simple", descrSimple},
	{"joins", descrJoins},
	{"processor", descrProcessor},
	{"nasty", descrNasty},
}

func descrBuild(t *testing.T, decl func(*runtime.Builder)) *runtime.Topology {
	t.Helper()
	b := runtime.NewBuilder()
	decl(b)
	topo, err := b.Build()
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return topo
}

func descrGolden(t *testing.T, file string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", file)
	if *updateDescribeGolden {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./runtime -run Golden -update-describe-golden to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output (run go test ./runtime -run Golden -update-describe-golden if the change is intended); got:\n%s", path, got)
	}
}

func TestDescribeJSONGolden(t *testing.T) {
	topo := descrBuild(t, descrOrders)
	js, err := topo.DescribeJSON()
	if err != nil {
		t.Fatal(err)
	}
	descrGolden(t, "describe-orders.json", js)
	again, _ := descrBuild(t, descrOrders).DescribeJSON()
	if !bytes.Equal(js, again) {
		t.Error("DescribeJSON differs between two builds of the same topology")
	}
}

func TestMermaidGolden(t *testing.T) {
	topo := descrBuild(t, descrOrders)
	descrGolden(t, "describe-orders.mmd", []byte(topo.Mermaid()))
	if topo.Mermaid() != descrBuild(t, descrOrders).Mermaid() {
		t.Error("Mermaid differs between two builds of the same topology")
	}
}

// TestDescribeJSONAgreesWithGraph checks every topology's description
// against the compiled graph, with and without an application id.
func TestDescribeJSONAgreesWithGraph(t *testing.T) {
	for _, tc := range descrTopologies {
		t.Run(tc.name, func(t *testing.T) {
			topo := descrBuild(t, tc.build)
			g := topo.Graph()
			for _, app := range []string{"", "shop"} {
				var js []byte
				var err error
				if app == "" {
					js, err = topo.DescribeJSON()
				} else {
					js, err = topo.DescribeJSONFor(app)
				}
				if err != nil {
					t.Fatal(err)
				}
				var d graph.Description
				dec := json.NewDecoder(bytes.NewReader(js))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&d); err != nil {
					t.Fatalf("app %q: %v\n%s", app, err, js)
				}
				descrCheck(t, g, app, &d, js)
			}
		})
	}
}

func descrCheck(t *testing.T, g *graph.Topology, app string, d *graph.Description, js []byte) {
	t.Helper()
	name := func(tp graph.Topic) string {
		if app != "" {
			return tp.Real(app)
		}
		return tp.String()
	}
	if d.Version != graph.DescriptionVersion || d.ApplicationID != app {
		t.Errorf("app %q: version %d, applicationId %q", app, d.Version, d.ApplicationID)
	}
	if len(d.Subtopologies) != len(g.Subtopologies) {
		t.Fatalf("app %q: %d sub-topologies, want %d", app, len(d.Subtopologies), len(g.Subtopologies))
	}
	var raw map[string]any
	if err := json.Unmarshal(js, &raw); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"subtopologies", "stores", "repartitionTopics", "copartitionGroups"} {
		if _, ok := raw[key].([]any); !ok {
			t.Errorf("app %q: %q is %v, want an array", app, key, raw[key])
		}
	}
	nodes := 0
	for i, st := range g.Subtopologies {
		sd := d.Subtopologies[i]
		if sd.ID != st.ID || len(sd.Nodes) != len(st.Nodes) {
			t.Errorf("app %q: sub-topology %d: id %d, %d nodes, want %d", app, st.ID, sd.ID, len(sd.Nodes), len(st.Nodes))
			continue
		}
		for j, tp := range st.Topics {
			if sd.SourceTopics[j] != name(tp) {
				t.Errorf("app %q: sub-topology %d source topic %q, want %q", app, st.ID, sd.SourceTopics[j], name(tp))
			}
		}
		for j, n := range st.Nodes {
			nd := sd.Nodes[j]
			nodes++
			if nd.Name != n.Name || nd.Kind != n.Kind.String() || nd.Op != n.Op || !slices.Equal(nd.Stores, append([]string{}, n.Stores...)) ||
				!slices.Equal(nd.Parents, descrNames(n.Parents)) || !slices.Equal(nd.Children, descrNames(n.Children)) {
				t.Errorf("app %q: node %+v does not describe %s", app, nd, n.Name)
			}
			switch n.Kind {
			case graph.KindSource:
				if len(nd.Topics) != len(n.Topics) || nd.Topics[0] != name(graph.Topic{Name: n.Topics[0], Internal: n.InternalTopic}) {
					t.Errorf("app %q: source %s topics %v", app, n.Name, nd.Topics)
				}
			case graph.KindSink:
				if nd.Topic != name(graph.Topic{Name: n.Topic, Internal: n.InternalTopic}) {
					t.Errorf("app %q: sink %s topic %q", app, n.Name, nd.Topic)
				}
			}
		}
	}
	if nodes != len(g.Graph.Nodes) {
		t.Errorf("app %q: %d nodes described, graph has %d", app, nodes, len(g.Graph.Nodes))
	}
	if len(d.Stores) != len(g.Graph.Stores) {
		t.Errorf("app %q: %d stores described, graph has %d", app, len(d.Stores), len(g.Graph.Stores))
	}
	for _, sd := range d.Stores {
		spec := g.Graph.Stores[sd.Name]
		if spec == nil || sd.Logged != spec.Logged || sd.Table != spec.Table {
			t.Errorf("app %q: store %+v, spec %+v", app, sd, spec)
			continue
		}
		want := ""
		if spec.Logged {
			want = sd.Name + "-changelog"
			if app != "" {
				want = graph.Changelog(app, sd.Name)
			}
		}
		if sd.ChangelogTopic != want {
			t.Errorf("app %q: store %s changelog %q, want %q", app, sd.Name, sd.ChangelogTopic, want)
		}
		if (sd.Subtopology == nil) != (len(sd.Nodes) == 0) {
			t.Errorf("app %q: store %s: sub-topology %v with users %v", app, sd.Name, sd.Subtopology, sd.Nodes)
		}
	}
	if len(d.RepartitionTopics) != len(g.Repartitions) {
		t.Errorf("app %q: %d repartition topics described, graph has %d", app, len(d.RepartitionTopics), len(g.Repartitions))
	}
	for _, rd := range d.RepartitionTopics {
		spec := g.Repartitions[rd.Name]
		if spec == nil || rd.Topic != name(graph.Topic{Name: rd.Name, Internal: true}) || rd.Partitions != spec.Partitions ||
			len(rd.ReadBy) != 1 || len(rd.WrittenBy) == 0 {
			t.Errorf("app %q: repartition topic %+v", app, rd)
		}
	}
	if len(d.CopartitionGroups) != len(g.CopartitionGroups) {
		t.Errorf("app %q: co-partition groups %v, want %v", app, d.CopartitionGroups, g.CopartitionGroups)
	}
	for i, grp := range g.CopartitionGroups {
		for j, tp := range grp {
			if d.CopartitionGroups[i][j] != name(tp) {
				t.Errorf("app %q: co-partition group %d: %v", app, i, d.CopartitionGroups[i])
			}
		}
	}
}

func descrNames(ns []*graph.Node) []string {
	out := []string{}
	for _, n := range ns {
		out = append(out, n.Name)
	}
	return out
}

func TestDescribeJSONForNamesInternalTopics(t *testing.T) {
	js, err := descrBuild(t, descrOrders).DescribeJSONFor("shop")
	if err != nil {
		t.Fatal(err)
	}
	var d graph.Description
	if err := json.Unmarshal(js, &d); err != nil {
		t.Fatal(err)
	}
	if d.ApplicationID != "shop" {
		t.Errorf("applicationId %q", d.ApplicationID)
	}
	var rps []string
	for _, r := range d.RepartitionTopics {
		rps = append(rps, r.Name+"="+r.Topic)
	}
	want := []string{
		"lines-by-product=shop-lines-by-product-repartition",
		"lines-by-line=shop-lines-by-line-repartition",
		"lines-by-customer=shop-lines-by-customer-repartition",
	}
	if !slices.Equal(rps, want) {
		t.Errorf("repartition topics %v, want %v", rps, want)
	}
	if got := fmt.Sprint(d.CopartitionGroups); got != "[[products shop-lines-by-product-repartition]]" {
		t.Errorf("co-partition groups %s", got)
	}
	var cls []string
	for _, s := range d.Stores {
		cls = append(cls, s.ChangelogTopic)
	}
	if got := fmt.Sprint(cls); got != "[shop-products-changelog shop-lines-changelog shop-portfolio-changelog]" {
		t.Errorf("changelogs %s", got)
	}
	if !strings.Contains(descrBuild(t, descrOrders).MermaidFor("shop"), `(("shop-lines-by-line-repartition"))`) {
		t.Error("MermaidFor does not name the repartition topic with the application id")
	}
}

// TestMermaidShapes checks the diagram's conventions on the order-shaped
// topology without Mermaid.
func TestMermaidShapes(t *testing.T) {
	m := descrBuild(t, descrOrders).Mermaid()
	for _, want := range []string{
		`(("order-lines"))`, `(("products"))`, `(("lines-by-product-repartition"))`, `(("order-portfolio"))`, // topics: circles
		`{"selectKey<br>key-by-product"}`, `{"join<br>price"}`, `{"toStream<br>portfolio-changes"}`, // operators: diamonds
		`[("table<br>products")]`, `[("reduce<br>lines")]`, `[("aggregate<br>portfolio")]`, // tables: cylinders
		`subgraph sub0["Sub-topology 0"]`, `subgraph sub3["Sub-topology 3"]`,
		"classDef repartition",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("Mermaid has no %s:\n%s", want, m)
		}
	}
	for _, unwanted := range []string{"order-lines-source", "portfolio-sink", "repartition-source", "repartition-sink"} {
		if strings.Contains(m, unwanted) {
			t.Errorf("Mermaid draws the source or sink %s:\n%s", unwanted, m)
		}
	}
}

// mermaidParse is what runtime/testdata/mermaid-parse.mjs prints per file.
type mermaidParse struct {
	File     string `json:"file"`
	OK       bool   `json:"ok"`
	Error    string `json:"error"`
	Type     string `json:"type"`
	Vertices []struct {
		ID, Shape, Label string
	} `json:"vertices"`
	Edges []struct {
		From, To, Type, Stroke string
	} `json:"edges"`
	Subgraphs []struct {
		ID, Title string
		Nodes     []string
	} `json:"subgraphs"`
}

// mermaidDir returns the folder .ci/setup-mermaid.sh installs Mermaid in.
func mermaidDir() string {
	if d := os.Getenv("CHOREO_MERMAID_DIR"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".cache", "choreo-mermaid")
}

// TestMermaidParses runs Mermaid's own parser (the mermaid npm package in
// node, with jsdom) on the diagrams of several topologies, and checks that
// what it parsed is the topology: every operator with its shape and exact
// name, every topic, the sub-topologies and the edges. It skips when node
// or the packages are missing, unless CHOREO_REQUIRE_MERMAID=1 (.ci/run).
func TestMermaidParses(t *testing.T) {
	dir := mermaidDir()
	missing := ""
	if _, err := exec.LookPath("node"); err != nil {
		missing = "node is not installed"
	} else if _, err := os.Stat(filepath.Join(dir, "node_modules", "mermaid", "package.json")); err != nil {
		missing = fmt.Sprintf("mermaid is not installed in %s", dir)
	}
	if missing != "" {
		msg := missing + ": run .ci/setup-mermaid.sh (CHOREO_MERMAID_DIR overrides the folder)"
		if os.Getenv("CHOREO_REQUIRE_MERMAID") == "1" {
			t.Fatal(msg + "; CHOREO_REQUIRE_MERMAID=1 makes this a failure")
		}
		t.Skip(msg)
	}

	tmp := t.TempDir()
	type diagram struct {
		name, app string
		topo      *graph.Topology
	}
	files := map[string]diagram{}
	var args []string
	for _, tc := range descrTopologies {
		topo := descrBuild(t, tc.build)
		for _, app := range []string{"", "app-1"} {
			text := topo.MermaidFor(app)
			file := filepath.Join(tmp, fmt.Sprintf("%s-%q.mmd", tc.name, app))
			if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			files[file] = diagram{tc.name, app, topo.Graph()}
			args = append(args, file)
		}
	}
	// Not a topology, but it must fail: the parser does reject errors.
	bad := filepath.Join(tmp, "broken.mmd")
	if err := os.WriteFile(bad, []byte("flowchart TB\n    n0{\"unclosed\" --> n1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args = append(args, bad)

	script, err := filepath.Abs(filepath.Join("testdata", "mermaid-parse.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", append([]string{script, dir}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node %s: %v\n%s", script, err, stderr.String())
	}
	seen := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var p mermaidParse
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			t.Fatalf("%v: %s", err, sc.Bytes())
		}
		seen++
		if p.File == bad {
			if p.OK {
				t.Error("Mermaid's parser accepted a broken diagram: the check checks nothing")
			}
			continue
		}
		d, ok := files[p.File]
		if !ok {
			t.Fatalf("unexpected file %q", p.File)
		}
		text, _ := os.ReadFile(p.File)
		if !p.OK {
			t.Errorf("%s (app %q): Mermaid's parser rejects the diagram: %s\n%s", d.name, d.app, p.Error, text)
			continue
		}
		if errs := mermaidCheck(d.topo, d.app, &p); len(errs) > 0 {
			t.Errorf("%s (app %q): the parsed diagram is not the topology:\n  %s\n%s", d.name, d.app, strings.Join(errs, "\n  "), text)
		}
	}
	if seen != len(args) {
		t.Fatalf("the parser reported %d files of %d\n%s", seen, len(args), stderr.String())
	}
}

// mermaidCheck compares what Mermaid parsed with the topology.
func mermaidCheck(topo *graph.Topology, app string, p *mermaidParse) []string {
	var errs []string
	errf := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if p.Type != "flowchart-v2" {
		errf("diagram type %q", p.Type)
	}
	type vertex struct{ shape, label string }
	vs := map[string]vertex{}
	byLabel := map[string][]string{}
	for _, v := range p.Vertices {
		label := html.UnescapeString(v.Label)
		vs[v.ID] = vertex{v.Shape, label}
		byLabel[label] = append(byLabel[label], v.ID)
	}
	edges := map[string]bool{}
	for _, e := range p.Edges {
		edges[e.From+" "+e.Stroke+" "+e.To] = true
	}
	idOf := map[*graph.Node]string{}
	for i, n := range topo.Graph.Nodes {
		idOf[n] = fmt.Sprintf("n%d", i)
	}
	topicID := map[string]string{}
	topicName := func(tp graph.Topic) string {
		if app != "" {
			return tp.Real(app)
		}
		return tp.String()
	}
	topic := func(tp graph.Topic) string {
		name := topicName(tp)
		if id, ok := topicID[name]; ok {
			return id
		}
		ids := byLabel[name]
		if len(ids) != 1 || vs[ids[0]].shape != "circle" {
			errf("topic %q: vertices %v", name, ids)
			return "?"
		}
		topicID[name] = ids[0]
		return ids[0]
	}
	// The first user of a table store is the table.
	owner := map[string]*graph.Node{}
	for _, n := range topo.Graph.Nodes {
		for _, s := range n.Stores {
			if _, ok := owner[s]; !ok && topo.Graph.Stores[s].Table && n.Kind == graph.KindProcessor {
				owner[s] = n
			} else if !ok {
				owner[s] = nil
			}
		}
	}
	drawn := func(n *graph.Node) bool {
		if n.Kind == graph.KindProcessor {
			return true
		}
		if n.Kind == graph.KindSink {
			return false
		}
		if len(n.Children) == 0 {
			return true
		}
		for _, c := range n.Children {
			if c.Kind == graph.KindSink {
				return true
			}
		}
		return false
	}
	subNodes := map[string][]string{}
	for _, sg := range p.Subgraphs {
		subNodes[sg.ID] = sg.Nodes
		if want := fmt.Sprintf("Sub-topology %s", strings.TrimPrefix(sg.ID, "sub")); sg.Title != want {
			errf("subgraph %s title %q", sg.ID, sg.Title)
		}
	}
	if len(p.Subgraphs) != len(topo.Subtopologies) {
		errf("%d subgraphs, want %d", len(p.Subgraphs), len(topo.Subtopologies))
	}
	wantVertices := 0
	topics := map[string]bool{}
	for _, st := range topo.Subtopologies {
		var members []string
		for _, tp := range append(append([]graph.Topic{}, st.Topics...), st.Outputs...) {
			topics[topicName(tp)] = true
		}
		for _, n := range st.Nodes {
			if !drawn(n) {
				continue
			}
			id := idOf[n]
			members = append(members, id)
			v, ok := vs[id]
			lines := strings.Split(v.label, "<br>")
			if !ok || !slices.Contains(lines, n.Name) || (n.Op != n.Name && lines[0] != n.Op) {
				errf("node %q (%s): vertex %s is %+v", n.Name, n.Op, id, v)
			}
			wantShape := "diamond"
			for _, s := range n.Stores {
				if owner[s] == n {
					wantShape = "cylinder"
				}
			}
			if v.shape != wantShape {
				errf("node %q: shape %s, want %s", n.Name, v.shape, wantShape)
			}
			for _, c := range n.Children {
				to := idOf[c]
				if c.Kind == graph.KindSink {
					to = topic(graph.Topic{Name: c.Topic, Internal: c.InternalTopic})
				}
				if !edges[id+" normal "+to] {
					errf("no edge %s -> %s (%s -> %s)", id, to, n.Name, c.Name)
				}
			}
			for _, s := range n.Stores {
				if o := owner[s]; o != nil && o != n && !edges[idOf[o]+" dotted "+id] {
					errf("no dotted edge from table %s to %s", o.Name, n.Name)
				} else if o == nil {
					ids := byLabel["store<br>"+s]
					if len(ids) != 1 || vs[ids[0]].shape != "cylinder" || !edges[id+" dotted "+ids[0]] {
						errf("store %q of %s: vertices %v", s, n.Name, ids)
					} else if !slices.Contains(members, ids[0]) {
						members = append(members, ids[0])
					}
				}
			}
		}
		for _, n := range st.Sources {
			var targets []*graph.Node
			if drawn(n) {
				targets = []*graph.Node{n}
			} else {
				targets = n.Children
			}
			for _, tn := range n.Topics {
				from := topic(graph.Topic{Name: tn, Internal: n.InternalTopic})
				for _, c := range targets {
					if !edges[from+" normal "+idOf[c]] {
						errf("no edge from topic %q to %s", tn, c.Name)
					}
				}
			}
		}
		wantVertices += len(members)
		got := append([]string{}, subNodes[fmt.Sprintf("sub%d", st.ID)]...)
		sort.Strings(got)
		sort.Strings(members)
		if !slices.Equal(got, members) {
			errf("sub-topology %d holds %v, want %v", st.ID, got, members)
		}
	}
	for name := range topics {
		topic(graph.Topic{Name: name}) // checks the circle exists once
	}
	if wantVertices += len(topics); len(p.Vertices) != wantVertices {
		errf("%d vertices, want %d", len(p.Vertices), wantVertices)
	}
	return errs
}
