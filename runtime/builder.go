package runtime

import (
	"errors"
	"fmt"
	"log/slog"
	"reflect"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/internal/graph"
)

// Builder declares a topology with the typed DSL and the processor API.
// Mistakes in DSL calls (duplicate names, serde type mismatches, misplaced
// options) are collected and returned by Build. A Builder is not safe for
// concurrent use, and must not be used after Build.
type Builder struct {
	g      *graph.Graph
	index  int
	errs   []error
	names  map[string]bool
	checks []func() error
	built  bool
	topo   *Topology
	err    error
}

// NewBuilder returns an empty Builder.
func NewBuilder() *Builder {
	return &Builder{
		g: &graph.Graph{
			Stores:       map[string]*graph.StoreSpec{},
			Repartitions: map[string]*graph.RepartitionSpec{},
		},
		names: map[string]bool{},
	}
}

// Build validates the topology and compiles it into sub-topologies. It
// returns every error collected during the DSL calls. Calling it again
// returns the same result.
func (b *Builder) Build() (*Topology, error) {
	if b.built {
		return b.topo, b.err
	}
	b.built = true
	for _, c := range b.checks {
		if err := c(); err != nil {
			b.errs = append(b.errs, err)
		}
	}
	if len(b.g.Nodes) == 0 {
		b.errs = append(b.errs, errors.New("runtime: empty topology"))
	}
	if len(b.errs) > 0 {
		b.err = errors.Join(b.errs...)
		return nil, b.err
	}
	gt, err := graph.Compile(b.g)
	if err != nil {
		b.err = err
		return nil, err
	}
	b.topo = &Topology{g: gt}
	return b.topo, nil
}

// Topology is a built, immutable topology, ready to be run by an App.
type Topology struct {
	g *graph.Topology
}

// Describe prints the topology like Kafka Streams' TopologyDescription:
// every sub-topology with its sources, processors (and the stores they
// use) and sinks, and the edges between them. Repartition topics show as
// "<name>-repartition", without the application id.
func (t *Topology) Describe() string { return t.g.Describe() }

// Graph returns the compiled processor graph the engine runs.
func (t *Topology) Graph() *graph.Topology { return t.g }

func (b *Builder) errorf(format string, args ...any) {
	b.errs = append(b.errs, fmt.Errorf("runtime: "+format, args...))
}

// use panics when the builder is used after Build.
func (b *Builder) use() *Builder {
	if b.built {
		panic("runtime: Builder used after Build")
	}
	return b
}

// derive returns a Kafka Streams style derived name: prefix + a 10-digit
// index counting every derived name of the builder.
func (b *Builder) derive(prefix string) string {
	n := fmt.Sprintf("%s%010d", prefix, b.index)
	b.index++
	return n
}

// nameOr returns the Named name of o, or a derived one.
func (b *Builder) nameOr(o *options, prefix string) string {
	if o.name != "" {
		return o.name
	}
	return b.derive(prefix)
}

// addNode adds n below parents, checking the name is unique.
func (b *Builder) addNode(n *graph.Node, parents ...*graph.Node) *graph.Node {
	if b.names[n.Name] {
		b.errorf("duplicate operator name %q", n.Name)
	}
	b.names[n.Name] = true
	n.ID = len(b.g.Nodes)
	b.g.Nodes = append(b.g.Nodes, n)
	for _, p := range parents {
		p.AddChild(n)
	}
	return n
}

// addStore declares a store, checking the name is unique.
func (b *Builder) addStore(spec *graph.StoreSpec) {
	if b.g.Stores[spec.Name] != nil {
		b.errorf("duplicate store name %q", spec.Name)
		return
	}
	b.g.Stores[spec.Name] = spec
}

// addRepartitionSpec declares a repartition topic, checking the name is
// unique.
func (b *Builder) addRepartitionSpec(name string, partitions int32) {
	if b.g.Repartitions[name] != nil {
		b.errorf("duplicate repartition topic name %q", name)
		return
	}
	b.g.Repartitions[name] = &graph.RepartitionSpec{Name: name, Partitions: partitions}
}

// kidsOf type-asserts the children's instances once, at instantiation.
func kidsOf[K, V any](kids []any) (fanout[K, V], error) {
	f := make(fanout[K, V], len(kids))
	for i, k := range kids {
		p, ok := k.(processor[K, V])
		if !ok {
			return nil, fmt.Errorf("child %d (%T) does not take records of %s", i, k, reflect.TypeFor[Record[K, V]]())
		}
		f[i] = p
	}
	return f, nil
}

// nodeErr attributes err to node unless a node downstream already did.
func nodeErr(node string, err error) error {
	var ge *graph.Error
	if errors.As(err, &ge) {
		return err
	}
	return &graph.Error{Node: node, Err: err}
}

// procFunc adapts a function to processor.
type procFunc[K, V any] func(r Record[K, V]) error

func (f procFunc[K, V]) process(r Record[K, V]) error { return f(r) }

// addProcessor adds a processor node whose instance takes Record[KI, VI]
// and forwards Record[KO, VO] to its children.
func addProcessor[KI, VI, KO, VO any](b *Builder, name, op string, stores []string, parent *graph.Node,
	mk func(t graph.Task, kids fanout[KO, VO]) (processor[KI, VI], error)) *graph.Node {
	return b.addNode(&graph.Node{
		Name:   name,
		Kind:   graph.KindProcessor,
		Op:     op,
		Stores: stores,
		Instantiate: func(t graph.Task, kids []any) (any, error) {
			f, err := kidsOf[KO, VO](kids)
			if err != nil {
				return nil, err
			}
			return mk(t, f)
		},
	}, parent)
}

// sourceInst deserializes input records and forwards them.
type sourceInst[K, V any] struct {
	name         string
	key          Serde[K]
	val          Serde[V]
	dropNullKeys bool
	kids         fanout[K, V]
	log          *slog.Logger
	dropped      dropCounter
}

// Process deserializes and forwards one input record.
func (s *sourceInst[K, V]) Process(kr *kgo.Record) error {
	var r Record[K, V]
	if kr.Key == nil {
		if s.dropNullKeys {
			s.dropped.dropInvalid(s.log, s.name, "null key")
			return nil
		}
		r.nullKey = true
	} else {
		k, err := s.key.Deserialize(kr.Key)
		if err != nil {
			return &graph.Error{Node: s.name, Err: fmt.Errorf("%w: %w", graph.ErrDeserialization, serdeErr("deserialize key", err))}
		}
		r.Key = k
	}
	if kr.Value == nil {
		r.Tombstone = true
	} else {
		v, err := s.val.Deserialize(kr.Value)
		if err != nil {
			return &graph.Error{Node: s.name, Err: fmt.Errorf("%w: %w", graph.ErrDeserialization, serdeErr("deserialize value", err))}
		}
		r.Value = v
	}
	r.Timestamp = kr.Timestamp.UnixMilli()
	r.Headers = kr.Headers
	return s.kids.forward(r)
}

// Dropped is the number of records the source skipped (null keys of a
// table source).
func (s *sourceInst[K, V]) Dropped() int64 { return s.dropped.n.Load() }

// addSource adds a source node reading topics (internal: repartition
// topics by logical name).
func addSource[K, V any](b *Builder, name string, topics []string, internal bool, key Serde[K], val Serde[V], dropNullKeys bool) *graph.Node {
	return b.addNode(&graph.Node{
		Name:          name,
		Kind:          graph.KindSource,
		Op:            "source",
		Topics:        topics,
		InternalTopic: internal,
		Instantiate: func(t graph.Task, kids []any) (any, error) {
			f, err := kidsOf[K, V](kids)
			if err != nil {
				return nil, err
			}
			return &sourceInst[K, V]{name: name, key: key, val: val, dropNullKeys: dropNullKeys, kids: f, log: t.Logger()}, nil
		},
	})
}

// sinkInst serializes records and sends them to a topic.
type sinkInst[K, V any] struct {
	t     graph.Task
	name  string
	topic string
	key   Serde[K]
	val   Serde[V]
}

func (s *sinkInst[K, V]) process(r Record[K, V]) error {
	var kb, vb []byte
	var err error
	if !r.nullKey {
		if kb, err = s.key.Serialize(r.Key); err != nil {
			return &graph.Error{Node: s.name, Err: serdeErr("serialize key", err)}
		}
		if kb == nil {
			kb = []byte{}
		}
	}
	if !r.Tombstone {
		if vb, err = s.val.Serialize(r.Value); err != nil {
			return &graph.Error{Node: s.name, Err: serdeErr("serialize value", err)}
		}
		if vb == nil {
			vb = []byte{}
		}
	}
	if err := s.t.Send(s.topic, -1, kb, vb, r.Headers, r.Timestamp); err != nil {
		return &graph.Error{Node: s.name, Err: err}
	}
	return nil
}

// addSink adds a sink node writing to topic (internal: a repartition topic
// by logical name).
func addSink[K, V any](b *Builder, name, topic string, internal bool, key Serde[K], val Serde[V], parent *graph.Node) *graph.Node {
	return b.addNode(&graph.Node{
		Name:          name,
		Kind:          graph.KindSink,
		Op:            "sink",
		Topic:         topic,
		InternalTopic: internal,
		Instantiate: func(t graph.Task, _ []any) (any, error) {
			out := topic
			if internal {
				out = graph.Repartition(t.AppID(), topic)
			}
			return &sinkInst[K, V]{t: t, name: name, topic: out, key: key, val: val}, nil
		},
	}, parent)
}

// addRepartition routes the records of parent through the repartition
// topic <app>-<name>-repartition and returns the source node reading it.
func addRepartition[K, V any](b *Builder, parent *graph.Node, name string, partitions int32, key Serde[K], val Serde[V]) *graph.Node {
	b.addRepartitionSpec(name, partitions)
	addSink(b, name+"-repartition-sink", name, true, key, val, parent)
	return addSource(b, name+"-repartition-source", []string{name}, true, key, val, false)
}

// upstreamSources returns the source nodes n reads from within its
// sub-topology (walking parents up to sources), in graph order.
func upstreamSources(n *graph.Node) []*graph.Node {
	seen := map[*graph.Node]bool{}
	var out []*graph.Node
	var walk func(n *graph.Node)
	walk = func(n *graph.Node) {
		if seen[n] {
			return
		}
		seen[n] = true
		if n.Kind == graph.KindSource {
			out = append(out, n)
			return
		}
		for _, p := range n.Parents {
			walk(p)
		}
	}
	walk(n)
	for i := 1; i < len(out); i++ { // insertion sort by ID: few sources
		for j := i; j > 0 && out[j].ID < out[j-1].ID; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}
