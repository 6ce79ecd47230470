package graph

import (
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

type gb struct{ g *Graph }

func newGB() *gb {
	return &gb{g: &Graph{Stores: map[string]*StoreSpec{}, Repartitions: map[string]*RepartitionSpec{}}}
}

func inst(t Task, kids []any) (any, error) { return &testInst{kids: kids}, nil }

type testInst struct {
	kids   []any
	closed int
}

func (i *testInst) Process(*kgo.Record) error { return nil }

func (i *testInst) Close() error { i.closed++; return nil }

func (b *gb) node(name string, kind NodeKind, parents ...*Node) *Node {
	n := &Node{ID: len(b.g.Nodes), Name: name, Kind: kind, Op: "op", Instantiate: inst}
	b.g.Nodes = append(b.g.Nodes, n)
	for _, p := range parents {
		p.AddChild(n)
	}
	return n
}

func (b *gb) source(name string, internal bool, topics ...string) *Node {
	n := b.node(name, KindSource)
	n.Topics, n.InternalTopic = topics, internal
	return n
}

func (b *gb) sink(name, topic string, internal bool, parent *Node) *Node {
	n := b.node(name, KindSink, parent)
	n.Topic, n.InternalTopic = topic, internal
	return n
}

func (b *gb) repartition(name string, partitions int32, parent *Node) *Node {
	b.g.Repartitions[name] = &RepartitionSpec{Name: name, Partitions: partitions}
	b.sink(name+"-sink", name, true, parent)
	return b.source(name+"-source", true, name)
}

func (b *gb) store(name string, users ...*Node) {
	b.g.Stores[name] = &StoreSpec{Name: name, Logged: true}
	for _, u := range users {
		u.Stores = append(u.Stores, name)
	}
}

func TestCompileSplitsAtRepartitionsAndJoinsOnStores(t *testing.T) {
	b := newGB()
	a := b.source("a", false, "ta")
	pa := b.node("pa", KindProcessor, a)
	src := b.repartition("r", 0, pa)
	agg := b.node("agg", KindProcessor, src)
	b.sink("out", "tout", false, agg)
	// a processor-API node on another source sharing agg's store
	c := b.source("c", false, "tc")
	pc := b.node("pc", KindProcessor, c)
	b.store("s", agg, pc)
	d := b.source("d", false, "td") // independent
	b.sink("dout", "tdout", false, d)
	b.g.CopartitionGroups = [][]*Node{{c, src}}

	top, err := Compile(b.g)
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Subtopologies) != 3 {
		t.Fatalf("sub-topologies %d:\n%s", len(top.Subtopologies), top.Describe())
	}
	names := func(ns []*Node) []string {
		var s []string
		for _, n := range ns {
			s = append(s, n.Name)
		}
		return s
	}
	// numbered by their first source: a (0), then r-source (1, with c), then d (2)
	want := [][]string{{"a", "pa", "r-sink"}, {"r-source", "agg", "out", "c", "pc"}, {"d", "dout"}}
	for i, st := range top.Subtopologies {
		if got := names(st.Nodes); !reflect.DeepEqual(got, want[i]) {
			t.Errorf("sub-topology %d nodes %v, want %v", i, got, want[i])
		}
	}
	st := top.Subtopologies[1]
	if !reflect.DeepEqual(st.Stores, []string{"s"}) || !reflect.DeepEqual(st.Topics, []Topic{{Name: "r", Internal: true}, {Name: "tc"}}) {
		t.Errorf("sub-topology 1: stores %v topics %v", st.Stores, st.Topics)
	}
	if !reflect.DeepEqual(top.CopartitionGroups, [][]Topic{{{Name: "r", Internal: true}, {Name: "tc"}}}) {
		t.Errorf("groups %v", top.CopartitionGroups)
	}
	if top.SubtopologyOf(pc) != st {
		t.Error("SubtopologyOf")
	}
}

func TestCompileErrors(t *testing.T) {
	cases := map[string]func(b *gb){
		"duplicate name": func(b *gb) {
			a := b.source("a", false, "t")
			b.sink("a", "o", false, a)
		},
		"undeclared store": func(b *gb) {
			a := b.source("a", false, "t")
			b.node("p", KindProcessor, a).Stores = []string{"nope"}
		},
		"source with parent": func(b *gb) {
			a := b.source("a", false, "t")
			s := b.node("s", KindSource, a)
			s.Topics = []string{"t2"}
		},
		"unread repartition": func(b *gb) {
			a := b.source("a", false, "t")
			b.g.Repartitions["r"] = &RepartitionSpec{Name: "r"}
			b.sink("rs", "r", true, a)
		},
		"unwritten repartition": func(b *gb) {
			b.g.Repartitions["r"] = &RepartitionSpec{Name: "r"}
			b.source("rs", true, "r")
		},
		"no source": func(b *gb) {
			b.node("p", KindProcessor)
		},
		"topic read twice": func(b *gb) {
			b.source("a", false, "t")
			b.source("b", false, "t")
		},
		"cycle": func(b *gb) {
			a := b.source("a", false, "t")
			p := b.node("p", KindProcessor, a)
			q := b.node("q", KindProcessor, p)
			q.AddChild(p)
		},
		"conflicting static partitions": func(b *gb) {
			a := b.source("a", false, "t")
			r1 := b.repartition("r1", 2, a)
			r2 := b.repartition("r2", 3, a)
			b.g.CopartitionGroups = [][]*Node{{r1, r2}}
		},
	}
	for name, mk := range cases {
		t.Run(name, func(t *testing.T) {
			b := newGB()
			mk(b)
			if _, err := Compile(b.g); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestPartitions(t *testing.T) {
	b := newGB()
	orders := b.source("orders", false, "orders")          // 3 partitions
	byCustomer := b.repartition("by-customer", 0, orders)  // joined with customers (8)
	explicit := b.repartition("explicit", 5, orders)       // given
	upstream := b.repartition("upstream", 0, orders)       // max of writer's sources
	chained := b.repartition("chained", 0, upstream)       // from upstream's count
	customers := b.source("customers", false, "customers") // 8 partitions
	j := b.node("join", KindProcessor, byCustomer)
	b.store("customers-store", j, customers)
	b.sink("e", "explicit-out", false, explicit)
	b.sink("c", "chained-out", false, chained)
	b.g.CopartitionGroups = [][]*Node{{byCustomer, customers}}
	top, err := Compile(b.g)
	if err != nil {
		t.Fatal(err)
	}
	if top.Repartitions["explicit"].Partitions != 5 || top.Repartitions["by-customer"].Partitions != 0 {
		t.Errorf("static %+v %+v", top.Repartitions["explicit"], top.Repartitions["by-customer"])
	}
	plan, err := top.Partitions(map[string]int32{"orders": 3, "customers": 8})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int32{"by-customer": 8, "explicit": 5, "upstream": 3, "chained": 3}
	if !reflect.DeepEqual(plan.Repartitions, want) {
		t.Errorf("partitions %v, want %v", plan.Repartitions, want)
	}
	if want := []int32{3, 8, 5, 3, 3}; !reflect.DeepEqual(plan.Tasks, want) {
		t.Errorf("tasks %v, want %v", plan.Tasks, want)
	}
	if _, err := top.Partitions(map[string]int32{"orders": 3}); err == nil {
		t.Error("missing topic: no error")
	}

	// Two external topics of a group that differ.
	b = newGB()
	x := b.source("x", false, "x")
	y := b.source("y", false, "y")
	m := b.node("m", KindProcessor, x, y)
	b.sink("o", "o", false, m)
	top, err = Compile(b.g)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := top.Partitions(map[string]int32{"x": 2, "y": 3}); !errors.Is(err, ErrCopartition) {
		t.Errorf("error %v", err)
	}
	plan, err = top.Partitions(map[string]int32{"x": 2, "y": 2})
	if err != nil || plan.Tasks[0] != 2 {
		t.Errorf("plan %+v err %v", plan, err)
	}

	// Repartition topics co-partitioned only with each other take the
	// largest upstream count.
	b = newGB()
	s1 := b.source("s1", false, "s1")
	s2 := b.source("s2", false, "s2")
	r1 := b.repartition("r1", 0, s1)
	r2 := b.repartition("r2", 0, s2)
	j2 := b.node("j", KindProcessor, r1, r2)
	b.sink("jo", "jo", false, j2)
	top, err = Compile(b.g)
	if err != nil {
		t.Fatal(err)
	}
	plan, err = top.Partitions(map[string]int32{"s1": 2, "s2": 6})
	if err != nil || plan.Repartitions["r1"] != 6 || plan.Repartitions["r2"] != 6 {
		t.Errorf("plan %+v err %v", plan, err)
	}
}

type fakeTask struct{}

func (fakeTask) AppID() string                                                       { return "app" }
func (fakeTask) Subtopology() int                                                    { return 0 }
func (fakeTask) Partition() int32                                                    { return 0 }
func (fakeTask) Store(string) (Store, error)                                         { return nil, errors.New("no stores") }
func (fakeTask) Send(string, int32, []byte, []byte, []kgo.RecordHeader, int64) error { return nil }
func (fakeTask) Record() *RecordContext                                              { return nil }
func (fakeTask) StreamTime() int64                                                   { return 0 }
func (fakeTask) Now() time.Time                                                      { return time.Time{} }
func (fakeTask) Schedule(time.Duration, PunctuationType, func(int64) error) func()   { return func() {} }
func (fakeTask) Logger() *slog.Logger                                                { return slog.Default() }

func TestInstantiateMemoizesSharedChildren(t *testing.T) {
	b := newGB()
	x := b.source("x", false, "x")
	y := b.source("y", true, "y")
	b.g.Repartitions["y"] = &RepartitionSpec{Name: "y"}
	b.sink("ys", "y", true, x)
	calls := 0
	merge := b.node("merge", KindProcessor, x, y)
	merge.Instantiate = func(t Task, kids []any) (any, error) { calls++; return inst(t, kids) }
	b.sink("o", "o", false, merge)
	top, err := Compile(b.g)
	if err != nil {
		t.Fatal(err)
	}
	in, err := top.Subtopologies[0].Instantiate(fakeTask{})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Errorf("merge instantiated %d times", calls)
	}
	xi := in.Nodes[x].(*testInst)
	yi := in.Nodes[y].(*testInst)
	if xi.kids[1] != yi.kids[0] || xi.kids[1] != in.Nodes[merge] {
		t.Error("parents do not share the merge instance")
	}
	if in.Sources["x"] == nil || in.Sources["app-y-repartition"] == nil {
		t.Errorf("sources %v", in.Sources)
	}
	if err := in.Close(); err != nil || in.Nodes[merge].(*testInst).closed != 1 {
		t.Errorf("close: %v", err)
	}
	if d := top.Describe(); !strings.Contains(d, "Source: y (topics: [y-repartition])\n      --> merge\n") ||
		!strings.Contains(d, "Sink: ys (topic: y-repartition)\n      <-- x\n") {
		t.Errorf("Describe:\n%s", d)
	}
}
