package runtime_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/runtime"
)

// batcher collects the values of every key in a store and, on a stream-time
// punctuator, emits each key's collected values and clears the store.
type batcher struct {
	ctx    runtime.ProcessorContext[string, string]
	ref    runtime.StoreRef[string, string]
	store  *runtime.KVStore[string, string]
	closed *int
	meta   *[]string
}

func (p *batcher) Init(ctx runtime.ProcessorContext[string, string]) error {
	p.ctx = ctx
	st, err := runtime.OpenStore(ctx, p.ref)
	if err != nil {
		return err
	}
	p.store = st
	ctx.Schedule(10*time.Millisecond, runtime.StreamTime, p.flush)
	return nil
}

func (p *batcher) Process(r runtime.Record[string, string]) error {
	topic, part, off, ok := p.ctx.RecordMetadata()
	if ok {
		*p.meta = append(*p.meta, topic+"/"+string(rune('0'+part))+"/"+string(rune('0'+off)))
	}
	cur, _, err := p.store.Get(r.Key)
	if err != nil {
		return err
	}
	if cur != "" {
		cur += ","
	}
	return p.store.Put(r.Key, cur+r.Value)
}

func (p *batcher) flush(ts int64) error {
	if _, _, _, ok := p.ctx.RecordMetadata(); ok {
		*p.meta = append(*p.meta, "metadata inside punctuator")
	}
	var keys []string
	var vals []string
	if err := p.store.Range(nil, nil, func(k, v string) bool {
		keys = append(keys, k)
		vals = append(vals, v)
		return true
	}); err != nil {
		return err
	}
	for i, k := range keys {
		if err := p.ctx.Forward(runtime.Record[string, string]{Key: k, Value: vals[i], Timestamp: ts}); err != nil {
			return err
		}
		if err := p.store.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func (p *batcher) Close() error { *p.closed++; return nil }

func TestProcessorAPI(t *testing.T) {
	b := runtime.NewBuilder()
	ref := runtime.AddStore(b, "batches", runtime.String(), runtime.String())
	in := runtime.StreamOf(b, "in", runtime.String(), runtime.String())
	closed := 0
	var meta []string
	out := runtime.Process(in, func() runtime.Processor[string, string, string, string] {
		return &batcher{ref: ref, closed: &closed, meta: &meta}
	}, []string{ref.Name()}, runtime.Named("batcher"))
	out.To("batches")
	h := newHarness(t, b, 1)
	if spec := h.topo.Graph.Stores["batches"]; spec == nil || !spec.Logged || spec.Table {
		t.Fatalf("store spec %+v", spec)
	}

	h.mustPipe("in", bs("a"), bs("1"), 100) // stream time starts at 100
	h.mustPipe("in", bs("b"), bs("2"), 105)
	h.mustPipe("in", bs("a"), bs("3"), 108)
	eq(t, "before punctuation", len(h.sent["batches"]), 0)
	h.mustPipe("in", bs("a"), bs("4"), 110) // stream time 110: fires
	eq(t, "first flush", kv(h.output("batches")), []string{"a=1,3,4", "b=2"})
	h.mustPipe("in", bs("c"), bs("5"), 115)
	h.mustPipe("in", bs("c"), bs("6"), 104) // late record: stream time stays 115
	eq(t, "no flush", len(h.sent["batches"]), 0)
	h.mustPipe("in", bs("d"), bs("7"), 121)
	recs := h.output("batches")
	eq(t, "second flush", kv(recs), []string{"c=5,6", "d=7"})
	if recs[0].Timestamp != 121 {
		t.Errorf("punctuator timestamp %d", recs[0].Timestamp)
	}
	if h.storeLen("batches") != 0 {
		t.Errorf("store not cleared")
	}
	eq(t, "metadata", meta[:2], []string{"in/0/0", "in/0/1"})
	if strings.Contains(strings.Join(meta, " "), "inside") {
		t.Error("RecordMetadata ok inside a punctuator")
	}
	// The processor may change the key: grouping downstream repartitions.
	b2 := runtime.NewBuilder()
	in2 := runtime.StreamOf(b2, "in", runtime.String(), runtime.String())
	p2 := runtime.Process(in2, func() runtime.Processor[string, string, string, string] { return &passthrough{} }, nil)
	runtime.Count(p2.GroupByKey(), runtime.Named("n")).ToStream().To("out")
	if topo := build(t, b2).Graph(); len(topo.Repartitions) != 1 {
		t.Errorf("no repartition after Process:\n%s", topo.Describe())
	}
}

func TestProcessorClose(t *testing.T) {
	b := runtime.NewBuilder()
	in := runtime.StreamOf(b, "in", runtime.String(), runtime.String())
	closed := 0
	var meta []string
	ref := runtime.AddStore(b, "s", runtime.String(), runtime.String())
	runtime.Process(in, func() runtime.Processor[string, string, string, string] {
		return &batcher{ref: ref, closed: &closed, meta: &meta}
	}, []string{"s"}).To("out")
	topo := build(t, b).Graph()
	h := newHarness(t, b, 2)
	if err := h.close(); err != nil {
		t.Fatal(err)
	}
	if closed != 2 || len(topo.Subtopologies) != 1 {
		t.Errorf("closed %d instances, want one per task", closed)
	}
}

type passthrough struct {
	ctx runtime.ProcessorContext[string, string]
}

func (p *passthrough) Init(ctx runtime.ProcessorContext[string, string]) error {
	p.ctx = ctx
	return nil
}
func (p *passthrough) Process(r runtime.Record[string, string]) error { return p.ctx.Forward(r) }
func (p *passthrough) Close() error                                   { return nil }

// undeclared asks for a store it did not list in Process.
type undeclared struct{ passthrough }

func (p *undeclared) Init(ctx runtime.ProcessorContext[string, string]) error {
	_, err := ctx.Store("other")
	return err
}

func TestProcessorUndeclaredStore(t *testing.T) {
	b := runtime.NewBuilder()
	other := runtime.AddStore(b, "other", runtime.String(), runtime.String())
	in := runtime.StreamOf(b, "in", runtime.String(), runtime.String())
	closed := 0
	var meta []string
	runtime.Process(in, func() runtime.Processor[string, string, string, string] {
		return &batcher{ref: other, closed: &closed, meta: &meta}
	}, []string{"other"}).To("o1")
	runtime.Process(in, func() runtime.Processor[string, string, string, string] { return &undeclared{} }, nil,
		runtime.Named("sneaky")).To("o2")
	_, err := startHarness(t, b, 1)
	if err == nil || !strings.Contains(err.Error(), `processor "sneaky" did not declare store "other"`) {
		t.Fatalf("error %v", err)
	}
}

// heartbeat forwards a record on every wall-clock punctuation until
// cancelled after the second.
type heartbeat struct {
	passthrough
	n int
}

func (p *heartbeat) Init(ctx runtime.ProcessorContext[string, string]) error {
	p.ctx = ctx
	var cancel func()
	cancel = ctx.Schedule(time.Second, runtime.WallClockTime, func(ts int64) error {
		p.n++
		if p.n == 2 {
			cancel()
		}
		if ts != ctx.Now().UnixMilli() {
			return errors.New("punctuation time is not the wall clock")
		}
		return ctx.Forward(runtime.Record[string, string]{Key: "beat", Value: strconv.Itoa(p.n), Timestamp: ts})
	})
	return nil
}

func TestWallClockPunctuator(t *testing.T) {
	b := runtime.NewBuilder()
	in := runtime.StreamOf(b, "in", runtime.String(), runtime.String())
	runtime.Process(in, func() runtime.Processor[string, string, string, string] { return &heartbeat{} }, nil).To("beats")
	h := newHarness(t, b, 1)
	for range 4 {
		if err := h.advance(600 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	eq(t, "beats", kv(h.output("beats")), []string{"beat=1", "beat=2"})
}
