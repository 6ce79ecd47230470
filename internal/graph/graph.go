// Package graph is the processor graph that the DSL in runtime builds and the
// engine runs. The DSL knows typed records; the engine knows only this
// contract: nodes, their instances per task, stores, and internal topics.
package graph

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/state"
)

// NodeKind classifies a node for sub-topology analysis and Describe.
type NodeKind int

const (
	// KindProcessor is any operator.
	KindProcessor NodeKind = iota
	// KindSource reads Topics; its instance implements SourceInstance.
	KindSource
	// KindSink writes to Topic.
	KindSink
)

// Node is one operator of the processor graph as the DSL declared it.
type Node struct {
	ID   int
	Name string // stable, unique operator name (explicit, or derived as KIND-0000000003)
	// Kind of node.
	Kind NodeKind
	// Op is the operator as shown by Describe: "filter", "join", "source" ...
	Op       string
	Parents  []*Node
	Children []*Node
	// Stores are the names of the state stores the node reads or writes.
	Stores []string
	// Topics a source reads. Internal (repartition) topics are named by
	// their logical name and InternalTopics marks them.
	Topics []string
	// Topic a sink writes to (logical name when InternalTopic).
	Topic string
	// InternalTopic marks a sink Topic or all source Topics as internal
	// (repartition) topics whose real name is Repartition(appID, name).
	InternalTopic bool
	// Instantiate creates the node's processing instance for one task.
	// kids holds the instances of Children in order. The result is passed
	// to parents' Instantiate; sources must return a SourceInstance.
	Instantiate func(t Task, kids []any) (any, error)
}

// AddChild links child below n.
func (n *Node) AddChild(child *Node) {
	n.Children = append(n.Children, child)
	child.Parents = append(child.Parents, n)
}

// StoreSpec describes a state store.
type StoreSpec struct {
	Name string
	// Logged stores write every change to <app>-<name>-changelog.
	Logged bool
	// Table marks a store that holds a table, queryable by interactive queries.
	Table bool
}

// RepartitionSpec describes an internal repartition topic.
type RepartitionSpec struct {
	// Name is the logical name; the topic is Repartition(appID, Name).
	Name string
	// Partitions is the partition count, 0 = derived from the sub-topology
	// that reads it (co-partitioned sources) or else the upstream sources.
	Partitions int32
}

// Graph is the whole processor graph of a topology.
type Graph struct {
	Nodes        []*Node
	Stores       map[string]*StoreSpec
	Repartitions map[string]*RepartitionSpec
	// CopartitionGroups lists sets of source nodes whose topics must be
	// co-partitioned (joins), beyond those implied by sharing a
	// sub-topology.
	CopartitionGroups [][]*Node
}

// Repartition returns the topic name of a repartition topic.
func Repartition(appID, name string) string { return appID + "-" + name + "-repartition" }

// Changelog returns the topic name of a store's changelog.
func Changelog(appID, store string) string { return appID + "-" + store + "-changelog" }

// PunctuationType selects the clock that drives a punctuator.
type PunctuationType int

const (
	// StreamTime punctuators fire as the task's stream time advances.
	StreamTime PunctuationType = iota
	// WallClockTime punctuators fire on the wall clock.
	WallClockTime
)

// RecordContext describes the input record being processed.
type RecordContext struct {
	Topic     string
	Partition int32
	Offset    int64
	Timestamp int64 // ms since epoch
	Headers   []kgo.RecordHeader
}

// Store is byte-level access to one store of a task, through its pending batch.
type Store interface {
	Get(key []byte) (value []byte, ok bool, err error)
	Put(key, value []byte) error
	Delete(key []byte) error
	Range(lower, upper []byte) (state.Iterator, error)
}

// Task is what a node instance sees of the task that runs it.
type Task interface {
	// AppID is the application id.
	AppID() string
	// Subtopology and Partition identify the task.
	Subtopology() int
	Partition() int32
	// Store returns the named store; it is an error for a node to ask for
	// a store it did not declare.
	Store(name string) (Store, error)
	// Send produces a record. partition < 0 partitions by murmur2 of key
	// like the Java client (nil key: any partition). Topic is the real
	// topic name. The record is owned by the engine after the call.
	Send(topic string, partition int32, key, value []byte, headers []kgo.RecordHeader, timestamp int64) error
	// Record is the context of the input record being processed, or nil
	// inside a punctuator.
	Record() *RecordContext
	// StreamTime is the largest record timestamp this task has seen.
	StreamTime() int64
	// Now is the wall clock (controllable in the test driver).
	Now() time.Time
	// Schedule registers a punctuator; it fires every interval of the
	// chosen clock with the time it fires at (ms). cancel stops it.
	Schedule(interval time.Duration, typ PunctuationType, fn func(ts int64) error) (cancel func())
	Logger() *slog.Logger
}

// SourceInstance is the instance of a source node: the engine hands it each
// input record of the node's topics.
type SourceInstance interface {
	Process(r *kgo.Record) error
}

// Closer is implemented by node instances that hold resources until the task closes.
type Closer interface {
	Close() error
}

// Error wraps an error raised while processing, naming the node.
type Error struct {
	Node string
	Err  error
}

func (e *Error) Error() string { return fmt.Sprintf("processor %s: %v", e.Node, e.Err) }
func (e *Error) Unwrap() error { return e.Err }
