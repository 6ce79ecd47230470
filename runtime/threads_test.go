package runtime_test

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/runtime"
)

// meeter proves tasks run at once: the first record of each task waits
// until another task is waiting at the same time (or gives up after a
// deadline).
type meeter struct {
	entered *atomic.Int32
	met     *atomic.Bool
	first   bool
	ctx     runtime.ProcessorContext[string, string]
}

func (m *meeter) Init(ctx runtime.ProcessorContext[string, string]) error {
	m.ctx, m.first = ctx, true
	return nil
}

func (m *meeter) Process(r runtime.Record[string, string]) error {
	if m.first {
		m.first = false
		m.entered.Add(1)
		deadline := time.Now().Add(10 * time.Second)
		for m.entered.Load() < 2 && !m.met.Load() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond) // polling interval
		}
		if m.entered.Load() >= 2 {
			m.met.Store(true)
		}
		m.entered.Add(-1) // counts the tasks inside this wait right now
	}
	return m.ctx.Forward(r)
}

func (m *meeter) Close() error { return nil }

// TestAppProcessingThreads runs a count behind a repartition with tasks on
// three goroutines: two tasks are seen processing at the same time, and
// the counts are exact (run with -race, it also checks the engine shares
// nothing unsynchronized between tasks).
func TestAppProcessingThreads(t *testing.T) {
	c := newCluster(t)
	c.createTopic("in", 4)
	c.createTopic("out", 4)
	var entered atomic.Int32
	var met atomic.Bool
	b := runtime.NewBuilder()
	in := runtime.StreamOf(b, "in", runtime.String(), runtime.String())
	slow := runtime.Process(in, func() runtime.Processor[string, string, string, string] {
		return &meeter{entered: &entered, met: &met}
	}, nil, runtime.WithKeySerde(runtime.String()), runtime.WithValueSerde(runtime.String()))
	byValue := runtime.GroupBy(slow, func(_ string, v string) string {
		n, _ := strconv.Atoi(v)
		return "k" + strconv.Itoa(n%37)
	}, runtime.Named("by-mod"))
	runtime.Count(byValue, runtime.Named("counts")).ToStream().To("out")

	const n = 8000
	want := map[string]int64{}
	var recs []*kgo.Record
	for i := range n {
		want["k"+strconv.Itoa(i%37)]++
		recs = append(recs, &kgo.Record{Key: []byte(strconv.Itoa(i)), Value: []byte(strconv.Itoa(i))})
	}
	c.produce("in", recs...)
	cfg := c.config(t.TempDir(), "i1")
	cfg.ProcessingThreads = 3
	app, err := runtime.New(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := running(t, app)
	eventually(t, 60*time.Second, "counts", equalCounts(c, want))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if !met.Load() {
		t.Error("no two tasks processed at the same time with ProcessingThreads = 3")
	}

	cfg.ProcessingThreads = -1
	if _, err := runtime.New(b, cfg); err == nil {
		t.Error("negative ProcessingThreads accepted")
	}
}
