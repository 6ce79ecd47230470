package graph

import (
	"fmt"
	"strings"
)

// Mermaid renders the topology as a Mermaid flowchart in the
// micro-topology convention: operators are diamonds, tables and stores are
// cylinders, topics are circles, and every sub-topology is a subgraph.
// Internal topic names are resolved for appID ("" when unknown, see
// TopicName).
//
// The diagram, top to bottom:
//
//   - Every topic the topology reads or writes is a circle outside the
//     subgraphs, so a repartition topic (dashed border) visibly connects
//     the sub-topology that writes it to the one that reads it.
//   - Source and sink nodes are not drawn: an edge runs from a topic to
//     the operators its source feeds, and from an operator to the topic
//     its sink writes. A source is drawn (as a diamond) only when that
//     would lose an edge: when it has no children, or a sink child (a
//     topic copied as is).
//   - Every other node is an operator, a diamond labelled with its op and
//     its name, except the node that materializes a table (the first node
//     to use a store marked Table: TableOf's table node, an aggregation):
//     it is drawn as the table itself, a cylinder labelled with its op,
//     name and store. Other nodes that read the table (joins, processors)
//     get a dotted arrow from it.
//   - A store that is not a table (a processor's store) is a cylinder of
//     its own, linked to the nodes that use it by a dotted line.
//   - Solid arrows follow the records.
//
// Identifiers are generated (n<index in Graph.Nodes>, t<i> for topics,
// s<i> for stores, sub<ID> for sub-topologies), so they are valid whatever
// the names; labels are quoted with every character that Mermaid or the
// HTML it renders could interpret written as an entity code (#quot;,
// #35; ...). The output is deterministic.
func (t *Topology) Mermaid(appID string) string {
	m := newMermaidPlan(t)
	var b strings.Builder
	b.WriteString("flowchart TB\n")
	for i, tp := range m.topics {
		fmt.Fprintf(&b, "    t%d((%s))\n", i, mermaidLabel(TopicName(tp, appID)))
	}
	for _, st := range t.Subtopologies {
		fmt.Fprintf(&b, "    subgraph sub%d[%s]\n", st.ID, mermaidLabel(fmt.Sprintf("Sub-topology %d", st.ID)))
		for _, n := range st.Nodes {
			if !m.drawn[n] {
				continue
			}
			lines := []string{n.Op, n.Name}
			if n.Op == n.Name {
				lines = lines[1:]
			}
			if tables := m.owns[n]; len(tables) > 0 {
				for _, s := range tables {
					if s != n.Name {
						lines = append(lines, "store "+s)
					}
				}
				fmt.Fprintf(&b, "        %s[(%s)]\n", m.nodeID(n), mermaidLabel(lines...))
			} else {
				fmt.Fprintf(&b, "        %s{%s}\n", m.nodeID(n), mermaidLabel(lines...))
			}
		}
		for _, s := range st.Stores {
			if i, ok := m.storeIdx[s]; ok {
				fmt.Fprintf(&b, "        s%d[(%s)]\n", i, mermaidLabel("store", s))
			}
		}
		b.WriteString("    end\n")
	}

	seen := map[string]bool{}
	edge := func(from, arrow, to string) {
		e := from + " " + arrow + " " + to
		if !seen[e] {
			seen[e] = true
			fmt.Fprintf(&b, "    %s\n", e)
		}
	}
	for _, st := range t.Subtopologies {
		for _, n := range st.Nodes {
			if n.Kind == KindSource {
				var targets []string
				if m.drawn[n] {
					targets = []string{m.nodeID(n)}
				} else {
					for _, c := range n.Children {
						targets = append(targets, m.nodeID(c))
					}
				}
				for _, tn := range n.Topics {
					from := fmt.Sprintf("t%d", m.topicIdx[Topic{Name: tn, Internal: n.InternalTopic}])
					for _, to := range targets {
						edge(from, "-->", to)
					}
				}
			}
			if !m.drawn[n] {
				continue
			}
			for _, c := range n.Children {
				if c.Kind == KindSink {
					edge(m.nodeID(n), "-->", fmt.Sprintf("t%d", m.topicIdx[Topic{Name: c.Topic, Internal: c.InternalTopic}]))
				} else {
					edge(m.nodeID(n), "-->", m.nodeID(c))
				}
			}
			for _, s := range n.Stores {
				if owner := m.owner[s]; owner != nil {
					if owner != n {
						edge(m.nodeID(owner), "-.->", m.nodeID(n))
					}
				} else if i, ok := m.storeIdx[s]; ok {
					edge(m.nodeID(n), "-.-", fmt.Sprintf("s%d", i))
				}
			}
		}
	}

	var internal []string
	for i, tp := range m.topics {
		if tp.Internal {
			internal = append(internal, fmt.Sprintf("t%d", i))
		}
	}
	if len(internal) > 0 {
		b.WriteString("    classDef repartition stroke-dasharray: 5 5\n")
		fmt.Fprintf(&b, "    class %s repartition\n", strings.Join(internal, ","))
	}
	return b.String()
}

// mermaidPlan decides what the diagram draws.
type mermaidPlan struct {
	index map[*Node]int
	// drawn marks the nodes drawn as shapes (see Mermaid).
	drawn map[*Node]bool
	// owner maps a table store to the processor that materializes it.
	owner map[string]*Node
	// owns lists the table stores a node materializes.
	owns map[*Node][]string
	// topics in order of first appearance; topicIdx is the reverse.
	topics   []Topic
	topicIdx map[Topic]int
	// storeIdx numbers the stores drawn as cylinders of their own.
	storeIdx map[string]int
}

func newMermaidPlan(t *Topology) *mermaidPlan {
	m := &mermaidPlan{
		index:    make(map[*Node]int, len(t.Graph.Nodes)),
		drawn:    map[*Node]bool{},
		owner:    map[string]*Node{},
		owns:     map[*Node][]string{},
		topicIdx: map[Topic]int{},
		storeIdx: map[string]int{},
	}
	for i, n := range t.Graph.Nodes {
		m.index[n] = i
		switch n.Kind {
		case KindProcessor:
			m.drawn[n] = true
		case KindSource:
			m.drawn[n] = len(n.Children) == 0
			for _, c := range n.Children {
				if c.Kind == KindSink {
					m.drawn[n] = true
				}
			}
		}
	}
	for _, n := range t.Graph.Nodes {
		for _, s := range n.Stores {
			if _, done := m.owner[s]; done {
				continue
			}
			spec := t.Graph.Stores[s]
			if spec != nil && spec.Table && n.Kind == KindProcessor {
				m.owner[s] = n
				m.owns[n] = append(m.owns[n], s)
			} else {
				m.owner[s] = nil
			}
		}
	}
	addTopic := func(tp Topic) {
		if _, ok := m.topicIdx[tp]; !ok {
			m.topicIdx[tp] = len(m.topics)
			m.topics = append(m.topics, tp)
		}
	}
	for _, st := range t.Subtopologies {
		for _, tp := range st.Topics {
			addTopic(tp)
		}
		for _, tp := range st.Outputs {
			addTopic(tp)
		}
		for _, s := range st.Stores {
			if m.owner[s] == nil {
				m.storeIdx[s] = len(m.storeIdx)
			}
		}
	}
	return m
}

func (m *mermaidPlan) nodeID(n *Node) string { return fmt.Sprintf("n%d", m.index[n]) }

// mermaidLabel quotes lines as one Mermaid label, joined by line breaks.
// Inside the quotes every character that Mermaid's grammar, its entity
// decoding, its Markdown strings or the HTML label could interpret is
// written as an entity code, so any name is taken literally. ':' is one of
// them: Mermaid's preprocessing drops the last ';' of any line matching
// /style.*:\S*#.*;/ (meant for style statements), which would break an
// entity code in a label that mentions "style". '%' is another: Mermaid
// strips "%%{...}%%" directives wherever they are.
func mermaidLabel(lines ...string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i, l := range lines {
		if i > 0 {
			b.WriteString("<br>")
		}
		for _, r := range l {
			switch {
			case r == '"':
				b.WriteString("#quot;")
			case r == '#' || r == '&' || r == '<' || r == '>' || r == '`' || r == '\\' || r == ':' || r == '%' || r < 0x20 || r == 0x7f:
				fmt.Fprintf(&b, "#%d;", r)
			default:
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}
