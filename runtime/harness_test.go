package runtime_test

// A harness over the test driver (runtime/choreotest): the engine's own
// tasks on in-memory stores, every user topic with the same number of
// partitions, the records each topic received collected per topic.

import (
	"encoding/binary"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/internal/graph"
	"github.com/choreo-go/choreo/runtime"
	"github.com/choreo-go/choreo/runtime/choreotest"
)

const appID = "app"

type sent struct {
	Topic     string
	Partition int32
	Key       []byte
	Value     []byte
	Headers   []kgo.RecordHeader
	Timestamp int64
}

type harness struct {
	t    testing.TB
	d    *choreotest.Driver
	topo *graph.Topology
	res  *graph.Resolved
	// sent holds, per topic, the records the topology wrote (sinks and
	// repartition topics; changelogs left out) not taken by output yet.
	sent   map[string][]sent
	seen   map[string]int
	piped  map[*kgo.Record]bool
	closed bool
}

func build(t testing.TB, b *runtime.Builder) *runtime.Topology {
	t.Helper()
	topo, err := b.Build()
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return topo
}

// newHarness runs the topology with every user topic having the given
// number of partitions.
func newHarness(t testing.TB, b *runtime.Builder, partitions int32) *harness {
	t.Helper()
	h, err := startHarness(t, b, partitions)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// startHarness is newHarness returning instantiation errors.
func startHarness(t testing.TB, b *runtime.Builder, partitions int32) (*harness, error) {
	t.Helper()
	topo := build(t, b)
	var opts []choreotest.Option
	for _, n := range topo.Graph().Graph.Nodes {
		switch {
		case n.Kind == graph.KindSource && !n.InternalTopic:
			for _, tp := range n.Topics {
				opts = append(opts, choreotest.WithPartitions(tp, partitions))
			}
		case n.Kind == graph.KindSink && !n.InternalTopic:
			opts = append(opts, choreotest.WithPartitions(n.Topic, partitions))
		}
	}
	opts = append(opts, choreotest.WithStartTime(time.UnixMilli(1_000_000)))
	d, err := choreotest.New(topo, runtime.Config{ApplicationID: appID}, opts...)
	if err != nil {
		return nil, err
	}
	h := &harness{
		t:     t,
		d:     d,
		topo:  topo.Graph(),
		res:   topo.Graph().Resolve(appID),
		sent:  map[string][]sent{},
		seen:  map[string]int{},
		piped: map[*kgo.Record]bool{},
	}
	t.Cleanup(func() { _ = h.close() })
	return h, nil
}

// close closes the driver: every processor's Close runs.
func (h *harness) close() error {
	if h.closed {
		return nil
	}
	h.closed = true
	return h.d.Close()
}

// collect moves what the topology wrote since the last call into sent.
func (h *harness) collect() {
	for _, topic := range h.d.Topics() {
		if slices.Contains(slices.Collect(maps.Values(h.res.Changelogs)), topic) {
			continue
		}
		recs := h.d.Records(topic)
		for _, r := range recs[h.seen[topic]:] {
			if h.piped[r] {
				continue
			}
			h.sent[topic] = append(h.sent[topic], sent{Topic: topic, Partition: r.Partition, Key: r.Key, Value: r.Value, Headers: r.Headers, Timestamp: r.Timestamp.UnixMilli()})
		}
		h.seen[topic] = len(recs)
	}
}

// pipe feeds one record to topic and processes it and everything it causes
// (repartition round trips) before returning the first error.
func (h *harness) pipe(topic string, key, value []byte, ts int64, headers ...kgo.RecordHeader) error {
	r := &kgo.Record{Topic: topic, Partition: -1, Key: key, Value: value, Timestamp: time.UnixMilli(ts), Headers: headers}
	h.piped[r] = true
	err := h.d.PipeRecord(r)
	h.collect()
	return err
}

func (h *harness) mustPipe(topic string, key, value []byte, ts int64, headers ...kgo.RecordHeader) {
	h.t.Helper()
	if err := h.pipe(topic, key, value, ts, headers...); err != nil {
		h.t.Fatalf("pipe %s: %v", topic, err)
	}
}

// advance moves the wall clock and fires wall-clock punctuators.
func (h *harness) advance(d time.Duration) error {
	err := h.d.AdvanceWallClock(d)
	h.collect()
	return err
}

// output returns the records sent to topic (real name) and forgets them.
func (h *harness) output(topic string) []sent {
	out := h.sent[topic]
	delete(h.sent, topic)
	return out
}

// storeGet reads a store key from whichever task holds it.
func (h *harness) storeGet(store string, key []byte) ([]byte, bool) {
	h.t.Helper()
	all, err := h.d.RawStore(store)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, e := range all {
		if string(e.Key) == string(key) {
			return e.Value, true
		}
	}
	return nil, false
}

// storeLen counts the keys of a store over all tasks.
func (h *harness) storeLen(store string) int {
	h.t.Helper()
	all, err := h.d.RawStore(store)
	if err != nil {
		h.t.Fatal(err)
	}
	return len(all)
}

// stored reads and decodes a table store value: [8-byte timestamp][value].
func (h *harness) stored(store string, key []byte) (int64, []byte) {
	h.t.Helper()
	raw, ok := h.storeGet(store, key)
	if !ok {
		h.t.Fatalf("%s: key %q not in store", store, key)
	}
	if len(raw) < 8 {
		h.t.Fatalf("%s: store value %x has no timestamp", store, raw)
	}
	return int64(binary.BigEndian.Uint64(raw)), raw[8:]
}
