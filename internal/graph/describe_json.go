package graph

import (
	"bytes"
	"encoding/json"
	"sort"
)

// DescriptionVersion is the version of the JSON description's schema. It
// changes only when a field is removed or changes meaning; fields may be
// added without a new version.
const DescriptionVersion = 1

// String returns "processor", "source" or "sink".
func (k NodeKind) String() string {
	switch k {
	case KindProcessor:
		return "processor"
	case KindSource:
		return "source"
	case KindSink:
		return "sink"
	}
	return "unknown"
}

// Description is the JSON form of a topology (see DescribeJSON). Slices
// are never nil, so every array field is present in the JSON.
type Description struct {
	// Version is DescriptionVersion.
	Version int `json:"version"`
	// ApplicationID is the application id the internal topic names were
	// resolved for; empty (and omitted) when unknown.
	ApplicationID string `json:"applicationId,omitempty"`
	// Subtopologies in ID order.
	Subtopologies []SubtopologyDescription `json:"subtopologies"`
	// Stores in order of first use by the sub-topologies, then the stores
	// no node uses, by name.
	Stores []StoreDescription `json:"stores"`
	// RepartitionTopics in the order the sub-topologies read them.
	RepartitionTopics []RepartitionDescription `json:"repartitionTopics"`
	// CopartitionGroups are Topology.CopartitionGroups by topic name.
	CopartitionGroups [][]string `json:"copartitionGroups"`
}

// SubtopologyDescription describes one sub-topology.
type SubtopologyDescription struct {
	ID int `json:"id"`
	// SourceTopics are the topics the sub-topology reads, in source order.
	SourceTopics []string `json:"sourceTopics"`
	// SinkTopics are the topics it writes, in sink order, without
	// duplicates.
	SinkTopics []string `json:"sinkTopics"`
	// Stores are the stores its nodes use, in order of first use.
	Stores []string `json:"stores"`
	// Nodes in topological order: every parent before its children.
	Nodes []NodeDescription `json:"nodes"`
}

// NodeDescription describes one node of the processor graph.
type NodeDescription struct {
	Name string `json:"name"`
	// Kind is "source", "processor" or "sink" (NodeKind.String).
	Kind string `json:"kind"`
	// Op is the operator: "source", "sink", "filter", "join", ...
	Op string `json:"op"`
	// Topics a source reads (absent for other kinds).
	Topics []string `json:"topics,omitempty"`
	// Topic a sink writes (absent for other kinds).
	Topic string `json:"topic,omitempty"`
	// Stores the node reads or writes.
	Stores []string `json:"stores"`
	// Parents and Children name the adjacent nodes, in graph order.
	Parents  []string `json:"parents"`
	Children []string `json:"children"`
}

// StoreDescription describes one state store.
type StoreDescription struct {
	Name string `json:"name"`
	// Subtopology is the ID of the sub-topology whose nodes use the store;
	// absent when no node uses it.
	Subtopology *int `json:"subtopology,omitempty"`
	// Logged stores write every change to ChangelogTopic.
	Logged bool `json:"logged"`
	// Table marks a store that materializes a table.
	Table bool `json:"table"`
	// ChangelogTopic is the changelog topic of a logged store (absent
	// otherwise).
	ChangelogTopic string `json:"changelogTopic,omitempty"`
	// Nodes are the nodes that use the store, in graph order.
	Nodes []string `json:"nodes"`
}

// RepartitionDescription describes one repartition topic.
type RepartitionDescription struct {
	// Name is the logical name (Named, or derived).
	Name string `json:"name"`
	// Topic is the topic name, as everywhere else in the description.
	Topic string `json:"topic"`
	// Partitions is the partition count when it is known before the
	// application starts (WithPartitions, or a co-partitioned repartition
	// topic's); absent when it is derived at startup from the source
	// topics.
	Partitions int32 `json:"partitions,omitempty"`
	// WrittenBy and ReadBy are the IDs of the sub-topologies that write
	// and read the topic.
	WrittenBy []int `json:"writtenBy"`
	ReadBy    []int `json:"readBy"`
}

// TopicName is the name under which the description and the diagram show
// a topic: external topics by their name; with an application id, internal
// topics by their real name (Topic.Real); without one, by their real name
// less the "<app>-" prefix (Topic.String).
func TopicName(tp Topic, appID string) string {
	if appID != "" {
		return tp.Real(appID)
	}
	return tp.String()
}

// ChangelogName is the changelog topic of a store as the description shows
// it: Changelog(appID, store), or "<store>-changelog" without an
// application id.
func ChangelogName(appID, store string) string {
	if appID != "" {
		return Changelog(appID, store)
	}
	return store + "-changelog"
}

// Description builds the description of the topology, with the internal
// topic names resolved for appID ("" when unknown, see TopicName).
func (t *Topology) Description(appID string) *Description {
	d := &Description{
		Version:           DescriptionVersion,
		ApplicationID:     appID,
		Subtopologies:     make([]SubtopologyDescription, 0, len(t.Subtopologies)),
		Stores:            []StoreDescription{},
		RepartitionTopics: []RepartitionDescription{},
		CopartitionGroups: make([][]string, 0, len(t.CopartitionGroups)),
	}
	name := func(tp Topic) string { return TopicName(tp, appID) }
	names := func(tps []Topic) []string {
		out := make([]string, len(tps))
		for i, tp := range tps {
			out[i] = name(tp)
		}
		return out
	}
	nodeList := func(ns []*Node) []string {
		out := make([]string, len(ns))
		for i, n := range ns {
			out[i] = n.Name
		}
		return out
	}

	storeUsers := map[string][]string{}
	for _, n := range t.Graph.Nodes {
		for _, s := range n.Stores {
			storeUsers[s] = append(storeUsers[s], n.Name)
		}
	}
	writers := map[string][]int{}
	readers := map[string][]int{}
	var rpOrder []string
	for _, st := range t.Subtopologies {
		sd := SubtopologyDescription{
			ID:           st.ID,
			SourceTopics: names(st.Topics),
			SinkTopics:   names(st.Outputs),
			Stores:       append([]string{}, st.Stores...),
			Nodes:        make([]NodeDescription, 0, len(st.Nodes)),
		}
		for _, n := range st.Nodes {
			nd := NodeDescription{
				Name:     n.Name,
				Kind:     n.Kind.String(),
				Op:       n.Op,
				Stores:   append([]string{}, n.Stores...),
				Parents:  nodeList(n.Parents),
				Children: nodeList(n.Children),
			}
			switch n.Kind {
			case KindSource:
				nd.Topics = make([]string, len(n.Topics))
				for i, tn := range n.Topics {
					nd.Topics[i] = name(Topic{Name: tn, Internal: n.InternalTopic})
				}
			case KindSink:
				nd.Topic = name(Topic{Name: n.Topic, Internal: n.InternalTopic})
			}
			sd.Nodes = append(sd.Nodes, nd)
		}
		for _, tp := range st.Topics {
			if tp.Internal {
				if len(readers[tp.Name]) == 0 {
					rpOrder = append(rpOrder, tp.Name)
				}
				readers[tp.Name] = append(readers[tp.Name], st.ID)
			}
		}
		for _, tp := range st.Outputs {
			if tp.Internal {
				writers[tp.Name] = append(writers[tp.Name], st.ID)
			}
		}
		d.Subtopologies = append(d.Subtopologies, sd)
	}

	seen := map[string]bool{}
	addStore := func(s string, sub *int) {
		seen[s] = true
		sd := StoreDescription{Name: s, Subtopology: sub, Nodes: append([]string{}, storeUsers[s]...)}
		if spec := t.Graph.Stores[s]; spec != nil {
			sd.Logged, sd.Table = spec.Logged, spec.Table
			if spec.Logged {
				sd.ChangelogTopic = ChangelogName(appID, s)
			}
		}
		d.Stores = append(d.Stores, sd)
	}
	for _, st := range t.Subtopologies {
		for _, s := range st.Stores {
			if !seen[s] {
				id := st.ID
				addStore(s, &id)
			}
		}
	}
	for _, s := range sortedKeys(t.Graph.Stores) {
		if !seen[s] {
			addStore(s, nil)
		}
	}

	// Compile guarantees every repartition topic is read; list any other
	// declared one after, by name, should that ever change.
	for _, rn := range sortedKeys(t.Repartitions) {
		if len(readers[rn]) == 0 {
			rpOrder = append(rpOrder, rn)
		}
	}
	for _, rn := range rpOrder {
		rd := RepartitionDescription{
			Name:      rn,
			Topic:     name(Topic{Name: rn, Internal: true}),
			WrittenBy: append([]int{}, writers[rn]...),
			ReadBy:    append([]int{}, readers[rn]...),
		}
		sort.Ints(rd.WrittenBy)
		if spec := t.Repartitions[rn]; spec != nil {
			rd.Partitions = spec.Partitions
		}
		d.RepartitionTopics = append(d.RepartitionTopics, rd)
	}

	for _, grp := range t.CopartitionGroups {
		d.CopartitionGroups = append(d.CopartitionGroups, names(grp))
	}
	return d
}

// DescribeJSON returns Description(appID) as indented JSON (two spaces,
// no HTML escaping) ending in a newline. The output is deterministic: the
// same topology always gives the same bytes.
func (t *Topology) DescribeJSON(appID string) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(t.Description(appID)); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
