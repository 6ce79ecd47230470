package runtime

import (
	"fmt"
	"strconv"

	"github.com/choreo-go/choreo/internal/graph"
)

// Splitter divides a stream into named branches: each record goes to the
// first branch (in declaration order) whose predicate matches, or to the
// default branch, or nowhere.
type Splitter[K, V any] struct {
	s          Stream[K, V]
	node       *graph.Node
	prefix     string
	preds      []func(K, V) bool // nil for the default branch
	branches   map[string]Stream[K, V]
	hasDefault bool
}

// Split starts splitting the stream into branches. Named(n) names the
// split node n and prefixes the branch node names with n; without it the
// prefix is the derived split node name and "-".
func (s Stream[K, V]) Split(opts ...Option) *Splitter[K, V] {
	b := s.builder()
	o := b.parseOptions("Split", optName, opts)
	sp := &Splitter[K, V]{s: s, branches: map[string]Stream[K, V]{}}
	name := b.nameOr(o, "KSTREAM-BRANCH-")
	sp.prefix = name
	if o.name == "" {
		sp.prefix += "-"
	}
	sp.node = b.addNode(&graph.Node{
		Name: name,
		Kind: graph.KindProcessor,
		Op:   "split",
		Instantiate: func(_ graph.Task, kids []any) (any, error) {
			f, err := kidsOf[K, V](kids)
			if err != nil {
				return nil, err
			}
			preds := append([]func(K, V) bool(nil), sp.preds...)
			if len(preds) != len(f) {
				return nil, fmt.Errorf("split has %d branches but %d children", len(preds), len(f))
			}
			return procFunc[K, V](func(r Record[K, V]) error {
				for i, p := range preds {
					if p == nil || p(r.Key, r.Value) {
						return f[i].process(r)
					}
				}
				return nil
			}), nil
		},
	}, s.node)
	return sp
}

// Branch adds a branch that receives the records pred matches (and no
// earlier branch matched). An empty name is replaced by the branch's
// position, counting from 1. Its node is named prefix+name.
func (sp *Splitter[K, V]) Branch(name string, pred func(K, V) bool) *Splitter[K, V] {
	b := sp.s.builder()
	if pred == nil {
		b.errorf("Split: branch %q: nil predicate", name)
		pred = func(K, V) bool { return false }
	}
	sp.add(b, name, pred)
	return sp
}

// Default adds the branch that receives the records no other branch
// matched. It must be the last branch.
func (sp *Splitter[K, V]) Default(name string) *Splitter[K, V] {
	b := sp.s.builder()
	sp.add(b, name, nil)
	sp.hasDefault = true
	return sp
}

func (sp *Splitter[K, V]) add(b *Builder, name string, pred func(K, V) bool) {
	if sp.hasDefault {
		b.errorf("Split %q: branch %q after the default branch", sp.node.Name, name)
		return
	}
	if name == "" {
		name = strconv.Itoa(len(sp.preds) + 1)
	}
	if _, dup := sp.branches[name]; dup {
		b.errorf("Split %q: duplicate branch %q", sp.node.Name, name)
		return
	}
	n := addProcessor(b, sp.prefix+name, "branch", nil, sp.node,
		func(_ graph.Task, kids fanout[K, V]) (processor[K, V], error) {
			return procFunc[K, V](kids.forward), nil
		})
	sp.preds = append(sp.preds, pred)
	sp.branches[name] = sp.s.with(n)
}

// Branches returns the branches by the names given to Branch and Default.
func (sp *Splitter[K, V]) Branches() map[string]Stream[K, V] {
	out := make(map[string]Stream[K, V], len(sp.branches))
	for k, v := range sp.branches {
		out[k] = v
	}
	return out
}
