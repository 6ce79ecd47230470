package graph

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Topic names a topic a sub-topology reads or writes by its logical name.
// An internal topic is a repartition topic whose real name depends on the
// application id.
type Topic struct {
	Name     string
	Internal bool
}

// Real returns the topic's real name for the application appID.
func (t Topic) Real(appID string) string {
	if t.Internal {
		return Repartition(appID, t.Name)
	}
	return t.Name
}

// String is the name Describe prints: an internal topic shows as
// "<name>-repartition" (the real name without the application id).
func (t Topic) String() string {
	if t.Internal {
		return t.Name + "-repartition"
	}
	return t.Name
}

// Subtopology is a connected part of the graph: the nodes one task runs.
// Edges through repartition topics are cut, and nodes sharing a store are
// always in the same sub-topology.
type Subtopology struct {
	// ID numbers sub-topologies 0, 1, ... in the order their first source
	// node was added to the graph.
	ID int
	// Nodes in topological order: every parent precedes its children.
	Nodes []*Node
	// Sources are the source nodes, in graph order.
	Sources []*Node
	// Sinks are the sink nodes, in graph order.
	Sinks []*Node
	// Topics are the topics the sources read, in source order.
	Topics []Topic
	// Outputs are the topics the sinks write, in sink order, without
	// duplicates.
	Outputs []Topic
	// Stores are the stores the nodes use, in order of first use.
	Stores []string
}

// Topology is a compiled graph: its sub-topologies, co-partitioning
// requirements and repartition topics.
type Topology struct {
	Graph         *Graph
	Subtopologies []*Subtopology
	// CopartitionGroups are sets of source topics that must have the same
	// number of partitions: all topics of one sub-topology, merged with the
	// graph's join groups (overlapping sets are merged). Only sets of two or
	// more topics are listed, in sub-topology order.
	CopartitionGroups [][]Topic
	// Repartitions are copies of the graph's repartition specs, keyed by
	// logical name, with Partitions filled in where it is known statically
	// (WithPartitions of the topic or of another repartition topic in its
	// co-partition group). 0 is left for the engine to derive with
	// Partitions.
	Repartitions map[string]*RepartitionSpec

	bySource map[*Node]*Subtopology
	byNode   map[*Node]*Subtopology
}

// SubtopologyOf returns the sub-topology a node belongs to, or nil.
func (t *Topology) SubtopologyOf(n *Node) *Subtopology { return t.byNode[n] }

// Compile splits g into sub-topologies and validates it: unique node names,
// declared stores and repartition topics, one source node per topic, sources
// without parents, sinks without children, no cycles, every sub-topology fed
// by a source, every repartition topic both written and read.
func Compile(g *Graph) (*Topology, error) {
	index := make(map[*Node]int, len(g.Nodes))
	names := make(map[string]bool, len(g.Nodes))
	var errs []error
	for i, n := range g.Nodes {
		if n == nil {
			return nil, fmt.Errorf("graph: node %d is nil", i)
		}
		if _, dup := index[n]; dup {
			return nil, fmt.Errorf("graph: node %q added twice", n.Name)
		}
		index[n] = i
		if n.Name == "" {
			errs = append(errs, fmt.Errorf("graph: node %d has no name", i))
		} else if names[n.Name] {
			errs = append(errs, fmt.Errorf("graph: duplicate node name %q", n.Name))
		}
		names[n.Name] = true
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	readers := map[Topic]*Node{}
	writers := map[string]int{}
	for _, n := range g.Nodes {
		for _, c := range n.Children {
			if _, ok := index[c]; !ok {
				errs = append(errs, fmt.Errorf("graph: child %q of %q is not in the graph", c.Name, n.Name))
			}
		}
		for _, p := range n.Parents {
			if _, ok := index[p]; !ok {
				errs = append(errs, fmt.Errorf("graph: parent %q of %q is not in the graph", p.Name, n.Name))
			}
		}
		for _, s := range n.Stores {
			if g.Stores[s] == nil {
				errs = append(errs, fmt.Errorf("graph: node %q uses undeclared store %q", n.Name, s))
			}
		}
		if n.Instantiate == nil {
			errs = append(errs, fmt.Errorf("graph: node %q has no Instantiate", n.Name))
		}
		switch n.Kind {
		case KindSource:
			if len(n.Parents) > 0 {
				errs = append(errs, fmt.Errorf("graph: source %q has parents", n.Name))
			}
			if len(n.Topics) == 0 {
				errs = append(errs, fmt.Errorf("graph: source %q reads no topic", n.Name))
			}
			for _, name := range n.Topics {
				tp := Topic{Name: name, Internal: n.InternalTopic}
				if other := readers[tp]; other != nil {
					errs = append(errs, fmt.Errorf("graph: topic %q is read by both %q and %q", tp, other.Name, n.Name))
					continue
				}
				readers[tp] = n
				if tp.Internal && g.Repartitions[name] == nil {
					errs = append(errs, fmt.Errorf("graph: source %q reads undeclared repartition topic %q", n.Name, name))
				}
			}
		case KindSink:
			if len(n.Children) > 0 {
				errs = append(errs, fmt.Errorf("graph: sink %q has children", n.Name))
			}
			if n.Topic == "" {
				errs = append(errs, fmt.Errorf("graph: sink %q writes no topic", n.Name))
			}
			if n.InternalTopic {
				if g.Repartitions[n.Topic] == nil {
					errs = append(errs, fmt.Errorf("graph: sink %q writes undeclared repartition topic %q", n.Name, n.Topic))
				}
				writers[n.Topic]++
			}
		}
	}
	for _, name := range sortedKeys(g.Repartitions) {
		if readers[Topic{Name: name, Internal: true}] == nil {
			errs = append(errs, fmt.Errorf("graph: repartition topic %q is never read", name))
		}
		if writers[name] == 0 {
			errs = append(errs, fmt.Errorf("graph: repartition topic %q is never written", name))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	// Connected components: graph edges plus shared stores.
	uf := newUnionFind(len(g.Nodes))
	storeUser := map[string]int{}
	for i, n := range g.Nodes {
		for _, c := range n.Children {
			uf.union(i, index[c])
		}
		for _, s := range n.Stores {
			if j, ok := storeUser[s]; ok {
				uf.union(i, j)
			} else {
				storeUser[s] = i
			}
		}
	}
	comps := map[int][]int{}
	firstSource := map[int]int{}
	for i, n := range g.Nodes {
		r := uf.find(i)
		comps[r] = append(comps[r], i)
		if _, ok := firstSource[r]; !ok && n.Kind == KindSource {
			firstSource[r] = i
		}
	}
	roots := make([]int, 0, len(comps))
	for r, members := range comps {
		if _, ok := firstSource[r]; !ok {
			var ns []string
			for _, i := range members {
				ns = append(ns, g.Nodes[i].Name)
			}
			errs = append(errs, fmt.Errorf("graph: nodes %v are not connected to any source", ns))
			continue
		}
		roots = append(roots, r)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	sort.Slice(roots, func(a, b int) bool { return firstSource[roots[a]] < firstSource[roots[b]] })

	top := &Topology{
		Graph:        g,
		Repartitions: make(map[string]*RepartitionSpec, len(g.Repartitions)),
		bySource:     map[*Node]*Subtopology{},
		byNode:       map[*Node]*Subtopology{},
	}
	for id, r := range roots {
		order, err := topoSort(g, index, comps[r])
		if err != nil {
			return nil, err
		}
		st := &Subtopology{ID: id, Nodes: order}
		seenStore := map[string]bool{}
		seenOut := map[Topic]bool{}
		for _, n := range order {
			top.byNode[n] = st
			for _, s := range n.Stores {
				if !seenStore[s] {
					seenStore[s] = true
					st.Stores = append(st.Stores, s)
				}
			}
		}
		for _, i := range comps[r] { // graph order
			n := g.Nodes[i]
			switch n.Kind {
			case KindSource:
				st.Sources = append(st.Sources, n)
				top.bySource[n] = st
				for _, name := range n.Topics {
					st.Topics = append(st.Topics, Topic{Name: name, Internal: n.InternalTopic})
				}
			case KindSink:
				st.Sinks = append(st.Sinks, n)
				tp := Topic{Name: n.Topic, Internal: n.InternalTopic}
				if !seenOut[tp] {
					seenOut[tp] = true
					st.Outputs = append(st.Outputs, tp)
				}
			}
		}
		top.Subtopologies = append(top.Subtopologies, st)
	}

	// Co-partition groups: union-find over topics.
	var topics []Topic
	tindex := map[Topic]int{}
	for _, st := range top.Subtopologies {
		for _, tp := range st.Topics {
			tindex[tp] = len(topics)
			topics = append(topics, tp)
		}
	}
	tuf := newUnionFind(len(topics))
	for _, st := range top.Subtopologies {
		for _, tp := range st.Topics[1:] {
			tuf.union(tindex[st.Topics[0]], tindex[tp])
		}
	}
	for gi, group := range g.CopartitionGroups {
		first := -1
		for _, n := range group {
			if _, ok := index[n]; !ok || n.Kind != KindSource {
				return nil, fmt.Errorf("graph: co-partition group %d: %q is not a source node of the graph", gi, n.Name)
			}
			for _, name := range n.Topics {
				i := tindex[Topic{Name: name, Internal: n.InternalTopic}]
				if first < 0 {
					first = i
				} else {
					tuf.union(first, i)
				}
			}
		}
	}
	groupAt := map[int]int{}
	var groups [][]Topic
	for i, tp := range topics {
		r := tuf.find(i)
		gi, ok := groupAt[r]
		if !ok {
			gi = len(groups)
			groupAt[r] = gi
			groups = append(groups, nil)
		}
		groups[gi] = append(groups[gi], tp)
	}
	for _, grp := range groups {
		if len(grp) > 1 {
			top.CopartitionGroups = append(top.CopartitionGroups, grp)
		}
	}

	// Repartition specs with static partition counts.
	for name, spec := range g.Repartitions {
		if spec.Partitions < 0 {
			return nil, fmt.Errorf("graph: repartition topic %q: negative partition count %d", name, spec.Partitions)
		}
		cp := *spec
		if cp.Name == "" {
			cp.Name = name
		}
		top.Repartitions[name] = &cp
	}
	for _, grp := range top.CopartitionGroups {
		var fixed int32
		var fixedBy string
		for _, tp := range grp {
			if !tp.Internal {
				continue
			}
			n := top.Repartitions[tp.Name].Partitions
			if n == 0 {
				continue
			}
			if fixed != 0 && n != fixed {
				return nil, fmt.Errorf("graph: co-partitioned repartition topics %q (%d partitions) and %q (%d partitions) differ", fixedBy, fixed, tp.Name, n)
			}
			fixed, fixedBy = n, tp.Name
		}
		if fixed == 0 {
			continue
		}
		for _, tp := range grp {
			if tp.Internal && top.Repartitions[tp.Name].Partitions == 0 {
				top.Repartitions[tp.Name].Partitions = fixed
			}
		}
	}
	return top, nil
}

// topoSort orders the component's nodes parents first, breaking ties by
// graph order.
func topoSort(g *Graph, index map[*Node]int, members []int) ([]*Node, error) {
	indeg := make(map[int]int, len(members))
	for _, i := range members {
		indeg[i] = len(g.Nodes[i].Parents)
	}
	var ready []int
	for _, i := range members {
		if indeg[i] == 0 {
			ready = append(ready, i)
		}
	}
	out := make([]*Node, 0, len(members))
	for len(ready) > 0 {
		slices.Sort(ready)
		i := ready[0]
		ready = ready[1:]
		out = append(out, g.Nodes[i])
		for _, c := range g.Nodes[i].Children {
			j := index[c]
			indeg[j]--
			if indeg[j] == 0 {
				ready = append(ready, j)
			}
		}
	}
	if len(out) != len(members) {
		var cyc []string
		for _, i := range members {
			if indeg[i] > 0 {
				cyc = append(cyc, g.Nodes[i].Name)
			}
		}
		return nil, fmt.Errorf("graph: cycle through nodes %v", cyc)
	}
	return out, nil
}

// Input is one topic an application consumes, as resolved by Resolve.
type Input struct {
	// Topic is the logical topic.
	Topic Topic
	// Subtopology reads the topic through Source.
	Subtopology *Subtopology
	Source      *Node
}

// Resolved holds a topology's real topic names for one application id.
type Resolved struct {
	AppID string
	// Inputs maps each real input topic to the source that reads it.
	Inputs map[string]Input
	// SourceTopics[i] are the real topics sub-topology i reads, in the
	// order of Subtopology.Topics.
	SourceTopics [][]string
	// Repartitions maps each real repartition topic name to its logical
	// name.
	Repartitions map[string]string
	// Changelogs maps each logged store to its changelog topic.
	Changelogs map[string]string
}

// Resolve computes the real names of the topology's topics for appID:
// external topics keep their names, internal ones become
// Repartition(appID, name), logged stores get Changelog(appID, store).
func (t *Topology) Resolve(appID string) *Resolved {
	r := &Resolved{
		AppID:        appID,
		Inputs:       map[string]Input{},
		SourceTopics: make([][]string, len(t.Subtopologies)),
		Repartitions: map[string]string{},
		Changelogs:   map[string]string{},
	}
	for _, st := range t.Subtopologies {
		for _, src := range st.Sources {
			for _, name := range src.Topics {
				tp := Topic{Name: name, Internal: src.InternalTopic}
				topic := tp.Real(appID)
				r.Inputs[topic] = Input{Topic: tp, Subtopology: st, Source: src}
				r.SourceTopics[st.ID] = append(r.SourceTopics[st.ID], topic)
			}
		}
	}
	for name := range t.Repartitions {
		r.Repartitions[Repartition(appID, name)] = name
	}
	for name, spec := range t.Graph.Stores {
		if spec.Logged {
			r.Changelogs[name] = Changelog(appID, name)
		}
	}
	return r
}

// PartitionPlan is the partition count of every repartition topic and the
// number of tasks of every sub-topology.
type PartitionPlan struct {
	// Repartitions maps a repartition topic's logical name to its
	// partition count.
	Repartitions map[string]int32
	// Tasks[i] is the number of tasks (partitions) of sub-topology i: the
	// largest partition count among its source topics (they are equal when
	// co-partitioning holds).
	Tasks []int32
}

// ErrCopartition reports source topics that must be co-partitioned but have
// different partition counts.
var ErrCopartition = errors.New("graph: topics are not co-partitioned")

// Partitions derives the partition count of every repartition topic from
// the partition counts of the external source topics (keyed by name), the
// way Kafka Streams does:
//
//  1. a count given with WithPartitions is used as is;
//  2. a topic in a co-partition group that contains external topics (or
//     a repartition topic with a given count) takes that group's count; the
//     external topics of a group must all have the same count, and a given
//     count must match it (else ErrCopartition);
//  3. otherwise a topic takes the largest partition count of the source
//     topics of the sub-topologies that write it, and the repartition
//     topics of one co-partition group without external topics all take
//     the largest of those counts.
//
// It fails when an external source topic is missing from external.
func (t *Topology) Partitions(external map[string]int32) (*PartitionPlan, error) {
	known := map[Topic]int32{}
	for _, st := range t.Subtopologies {
		for _, tp := range st.Topics {
			if tp.Internal {
				continue
			}
			n, ok := external[tp.Name]
			if !ok || n <= 0 {
				return nil, fmt.Errorf("graph: source topic %q does not exist", tp.Name)
			}
			known[tp] = n
		}
	}
	for name, spec := range t.Graph.Repartitions {
		if spec.Partitions > 0 {
			known[Topic{Name: name, Internal: true}] = spec.Partitions
		}
	}
	groupOf := map[Topic]int{}
	authoritative := make([]bool, len(t.CopartitionGroups))
	for gi, grp := range t.CopartitionGroups {
		var val int32
		var by Topic
		for _, tp := range grp {
			groupOf[tp] = gi
			if tp.Internal {
				continue
			}
			if n := known[tp]; val != 0 && n != val {
				return nil, fmt.Errorf("%w: %q has %d partitions, %q has %d", ErrCopartition, by, val, tp, n)
			} else if val == 0 {
				val, by = n, tp
			}
		}
		for _, tp := range grp {
			if !tp.Internal {
				continue
			}
			if n, ok := known[tp]; ok {
				if val != 0 && n != val {
					return nil, fmt.Errorf("%w: repartition topic %q is configured with %d partitions, %q has %d", ErrCopartition, tp, n, by, val)
				}
				if val == 0 {
					val, by = n, tp
				}
			}
		}
		if val == 0 {
			continue
		}
		authoritative[gi] = true
		for _, tp := range grp {
			known[tp] = val
		}
	}

	writers := map[string][]*Subtopology{}
	for _, st := range t.Subtopologies {
		for _, tp := range st.Outputs {
			if tp.Internal {
				writers[tp.Name] = append(writers[tp.Name], st)
			}
		}
	}
	names := sortedKeys(t.Graph.Repartitions)
	raw := map[string]int32{}
	for {
		progress := false
		for _, name := range names {
			tp := Topic{Name: name, Internal: true}
			if _, ok := known[tp]; ok {
				continue
			}
			if _, ok := raw[name]; ok {
				continue
			}
			var max int32
			complete := true
			for _, st := range writers[name] {
				for _, in := range st.Topics {
					if in == tp {
						continue
					}
					n, ok := known[in]
					if !ok {
						complete = false
						break
					}
					max = max32(max, n)
				}
			}
			if complete && max > 0 {
				raw[name] = max
				progress = true
			}
		}
		for _, name := range names {
			tp := Topic{Name: name, Internal: true}
			if _, ok := known[tp]; ok {
				continue
			}
			n, ok := raw[name]
			if !ok {
				continue
			}
			gi, grouped := groupOf[tp]
			if !grouped || authoritative[gi] {
				known[tp] = n
				progress = true
				continue
			}
			// A group without an authoritative count holds only
			// repartition topics: they all take the largest derived count.
			var max int32
			complete := true
			for _, m := range t.CopartitionGroups[gi] {
				v, ok := known[m]
				if !ok {
					v, ok = raw[m.Name]
				}
				if !ok {
					complete = false
					break
				}
				max = max32(max, v)
			}
			if complete {
				for _, m := range t.CopartitionGroups[gi] {
					known[m] = max
				}
				progress = true
			}
		}
		if !progress {
			break
		}
	}
	plan := &PartitionPlan{Repartitions: map[string]int32{}, Tasks: make([]int32, len(t.Subtopologies))}
	var missing []string
	for _, name := range names {
		n, ok := known[Topic{Name: name, Internal: true}]
		if !ok {
			missing = append(missing, name)
			continue
		}
		plan.Repartitions[name] = n
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("graph: cannot derive the partition count of repartition topics %v", missing)
	}
	for _, st := range t.Subtopologies {
		for _, tp := range st.Topics {
			plan.Tasks[st.ID] = max32(plan.Tasks[st.ID], known[tp])
		}
	}
	return plan, nil
}

// Instances are the node instances of one task of a sub-topology.
type Instances struct {
	// Nodes holds the instance of every node.
	Nodes map[*Node]any
	// Sources maps each real input topic to the instance of its source.
	Sources map[string]SourceInstance

	order []*Node
}

// Instantiate creates the instances of the sub-topology's nodes for task t:
// each node once (a merge node with several parents is shared by them),
// children before parents, so every Instantiate receives its children's
// instances in the order of Node.Children. Call it when the task's stores
// are ready (restored): processors may read them while initializing.
func (s *Subtopology) Instantiate(t Task) (*Instances, error) {
	in := &Instances{Nodes: make(map[*Node]any, len(s.Nodes)), Sources: map[string]SourceInstance{}, order: s.Nodes}
	for i := len(s.Nodes) - 1; i >= 0; i-- {
		n := s.Nodes[i]
		kids := make([]any, len(n.Children))
		for j, c := range n.Children {
			inst, ok := in.Nodes[c]
			if !ok {
				return nil, fmt.Errorf("graph: child %q of %q is not in sub-topology %d", c.Name, n.Name, s.ID)
			}
			kids[j] = inst
		}
		inst, err := n.Instantiate(t, kids)
		if err != nil {
			_ = in.Close()
			return nil, &Error{Node: n.Name, Err: err}
		}
		in.Nodes[n] = inst
		if n.Kind == KindSource {
			src, ok := inst.(SourceInstance)
			if !ok {
				_ = in.Close()
				return nil, &Error{Node: n.Name, Err: fmt.Errorf("source instance %T does not implement SourceInstance", inst)}
			}
			for _, name := range n.Topics {
				in.Sources[Topic{Name: name, Internal: n.InternalTopic}.Real(t.AppID())] = src
			}
		}
	}
	return in, nil
}

// Close closes every instance that implements Closer, parents first, and
// returns the errors joined.
func (in *Instances) Close() error {
	var errs []error
	for _, n := range in.order {
		if c, ok := in.Nodes[n].(Closer); ok {
			if err := c.Close(); err != nil {
				errs = append(errs, &Error{Node: n.Name, Err: err})
			}
		}
	}
	return errors.Join(errs...)
}

// Describe prints the topology like Kafka Streams' TopologyDescription.
func (t *Topology) Describe() string {
	var b strings.Builder
	b.WriteString("Topologies:\n")
	for _, st := range t.Subtopologies {
		fmt.Fprintf(&b, "   Sub-topology: %d\n", st.ID)
		for _, n := range st.Nodes {
			switch n.Kind {
			case KindSource:
				ts := make([]string, len(n.Topics))
				for i, name := range n.Topics {
					ts[i] = Topic{Name: name, Internal: n.InternalTopic}.String()
				}
				fmt.Fprintf(&b, "    Source: %s (topics: [%s])\n", n.Name, strings.Join(ts, ", "))
			case KindSink:
				fmt.Fprintf(&b, "    Sink: %s (topic: %s)\n", n.Name, Topic{Name: n.Topic, Internal: n.InternalTopic})
			default:
				fmt.Fprintf(&b, "    Processor: %s (stores: [%s])\n", n.Name, strings.Join(n.Stores, ", "))
			}
			if n.Kind != KindSink {
				fmt.Fprintf(&b, "      --> %s\n", nodeNames(n.Children))
			}
			if n.Kind != KindSource {
				fmt.Fprintf(&b, "      <-- %s\n", nodeNames(n.Parents))
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

func nodeNames(ns []*Node) string {
	if len(ns) == 0 {
		return "none"
	}
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = n.Name
	}
	return strings.Join(s, ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func max32(a, b int32) int32 {
	if a > b {
		return a
	}
	return b
}

type unionFind []int

func newUnionFind(n int) unionFind {
	u := make(unionFind, n)
	for i := range u {
		u[i] = i
	}
	return u
}

func (u unionFind) find(i int) int {
	for u[i] != i {
		u[i] = u[u[i]]
		i = u[i]
	}
	return i
}

func (u unionFind) union(a, b int) {
	ra, rb := u.find(a), u.find(b)
	if ra == rb {
		return
	}
	if ra < rb {
		u[rb] = ra
	} else {
		u[ra] = rb
	}
}
