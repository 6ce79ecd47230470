package replay

import (
	"cmp"
	"container/heap"
	"errors"
	"fmt"
	"slices"

	"github.com/choreo-go/choreo/internal/runtimelink"
	"github.com/choreo-go/choreo/runtime"
	"github.com/choreo-go/choreo/runtime/choreotest"
)

// Result is what a topology did with a recording.
type Result struct {
	// Outputs holds, per topic, every record the topology wrote to a
	// topic that is neither recorded input nor internal (repartition,
	// changelog): its sinks and the dead-letter topic, in write order.
	Outputs map[string][]Record
	// Stores holds the final content of every store, sorted by key.
	Stores map[string][]StoreEntry
	// Errors lists the records whose processing failed without an error
	// policy absorbing it (the driver then went on with the next record).
	Errors []RecordError
	// Piped counts the recorded records fed to the topology; Ignored
	// those of topics it does not read.
	Piped, Ignored int
}

// StoreEntry is a key of a store with its serialized value (for a table
// store, without the timestamp the store keeps with it).
type StoreEntry struct {
	Key, Value []byte
}

// RecordError is a recorded record whose processing failed.
type RecordError struct {
	Topic     string
	Partition int32
	Offset    int64
	Err       string
}

// Run replays rec through topo with the test driver: each recorded
// topic keeps its partition count and each record its partition, and the
// partitions are merged in timestamp order (a partition's records stay in
// offset order; equal timestamps go by topic, partition and offset), so a
// replay is deterministic. cfg is the App's configuration (its
// ApplicationID and error policies matter); opts go to the driver (e.g.
// partition counts of output topics).
func Run(topo *runtime.Topology, cfg runtime.Config, rec *Recording, opts ...choreotest.Option) (*Result, error) {
	for topic, n := range rec.Partitions {
		opts = append([]choreotest.Option{choreotest.WithPartitions(topic, n)}, opts...)
	}
	d, err := choreotest.New(topo, cfg, opts...)
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	defer d.Close()
	res := &Result{Outputs: make(map[string][]Record), Stores: make(map[string][]StoreEntry)}
	inputs := make(map[string]bool)
	for _, r := range merge(rec.Records) {
		inputs[r.Topic] = true
		kr := r.Kafka()
		if n, ok := d.Partitions(r.Topic); !ok || kr.Partition >= n {
			kr.Partition = -1 // not read, or fewer partitions than recorded: let Pipe decide
		}
		err := d.PipeRecord(kr)
		switch {
		case err == nil:
			res.Piped++
		case errors.Is(err, choreotest.ErrUnknownTopic):
			res.Ignored++
		default:
			res.Piped++
			res.Errors = append(res.Errors, RecordError{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Err: err.Error()})
		}
	}
	internal := d.InternalTopics()
	for _, topic := range d.Topics() {
		if inputs[topic] || slices.Contains(internal, topic) {
			continue
		}
		for _, r := range d.Records(topic) {
			res.Outputs[topic] = append(res.Outputs[topic], FromKafka(r))
		}
	}
	for _, name := range d.Stores() {
		entries, err := d.RawStore(name)
		if err != nil {
			return nil, fmt.Errorf("replay: store %s: %w", name, err)
		}
		table := d.IsTableStore(name)
		for _, e := range entries {
			v := e.Value
			if table {
				if _, v, err = runtimelink.DecodeTableValue(v); err != nil {
					return nil, fmt.Errorf("replay: store %s: %w", name, err)
				}
			}
			res.Stores[name] = append(res.Stores[name], StoreEntry{Key: e.Key, Value: v})
		}
	}
	return res, nil
}

// merge orders the records for replay: per partition in offset order,
// across partitions by timestamp.
func merge(recs []Record) []Record {
	type tp struct {
		topic string
		part  int32
	}
	byTP := make(map[tp][]Record)
	for _, r := range recs {
		k := tp{r.Topic, r.Partition}
		byTP[k] = append(byTP[k], r)
	}
	h := &mergeHeap{}
	for _, q := range byTP {
		slices.SortStableFunc(q, func(a, b Record) int { return cmp.Compare(a.Offset, b.Offset) })
		*h = append(*h, q)
	}
	heap.Init(h)
	out := make([]Record, 0, len(recs))
	for h.Len() > 0 {
		q := (*h)[0]
		out = append(out, q[0])
		if len(q) == 1 {
			heap.Pop(h)
		} else {
			(*h)[0] = q[1:]
			heap.Fix(h, 0)
		}
	}
	return out
}

// mergeHeap holds partition queues ordered by their head record.
type mergeHeap [][]Record

func (h mergeHeap) Len() int { return len(h) }
func (h mergeHeap) Less(i, j int) bool {
	a, b := h[i][0], h[j][0]
	return cmp.Or(cmp.Compare(a.Timestamp, b.Timestamp), cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition)) < 0
}
func (h mergeHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *mergeHeap) Push(x any)   { *h = append(*h, x.([]Record)) }
func (h *mergeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
