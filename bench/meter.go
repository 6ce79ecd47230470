package bench

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// meter counts, through franz-go hooks on every client of the code under
// test, the records fetched and produced per topic, and times the measured
// window: it opens at the first batch fetched from an input topic and
// closes at the last batch written to an output topic (or when mark is
// called). At both ends it reads the process CPU time, so the CPU of the
// window is exact up to one batch. Hooks run on franz-go's goroutines.
type meter struct {
	inputs  map[string]bool
	outputs map[string]bool

	outN atomic.Int64 // output records written

	mu       sync.Mutex
	fetched  map[string]int64
	produced map[string]int64
	started  bool
	t0       time.Time
	cpu0     time.Duration
	t1       time.Time
	cpu1     time.Duration
	want     int64
	done     chan struct{}
	closed   bool
	waiters  []outWaiter
}

type outWaiter struct {
	n  int64
	ch chan struct{}
}

var (
	_ kgo.HookFetchBatchRead      = (*meter)(nil)
	_ kgo.HookProduceBatchWritten = (*meter)(nil)
)

// newMeter returns a meter whose window opens at the first fetch from one
// of inputs and whose outputs are the records written to outputs; done
// closes when want output records were written (want 0: never).
func newMeter(inputs, outputs []string, want int64) *meter {
	m := &meter{
		inputs:   set(inputs),
		outputs:  set(outputs),
		fetched:  make(map[string]int64),
		produced: make(map[string]int64),
		want:     want,
		done:     make(chan struct{}),
	}
	return m
}

func set(ss []string) map[string]bool {
	m := make(map[string]bool, len(ss))
	for _, s := range ss {
		m[s] = true
	}
	return m
}

// OnFetchBatchRead implements kgo.HookFetchBatchRead.
func (m *meter) OnFetchBatchRead(_ kgo.BrokerMetadata, topic string, _ int32, fm kgo.FetchBatchMetrics) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.started && m.inputs[topic] {
		m.started = true
		m.t0, m.cpu0 = time.Now(), processCPU()
	}
	m.fetched[topic] += int64(fm.NumRecords)
}

// OnProduceBatchWritten implements kgo.HookProduceBatchWritten.
func (m *meter) OnProduceBatchWritten(_ kgo.BrokerMetadata, topic string, _ int32, pm kgo.ProduceBatchMetrics) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.produced[topic] += int64(pm.NumRecords)
	if !m.outputs[topic] {
		return
	}
	n := m.outN.Add(int64(pm.NumRecords))
	if !m.closed {
		m.t1, m.cpu1 = time.Now(), processCPU()
	}
	if m.want > 0 && n >= m.want && !m.closed {
		m.closed = true
		close(m.done)
	}
	m.notify(n)
}

// notify releases the waiters whose count is reached; mu is held.
func (m *meter) notify(n int64) {
	kept := m.waiters[:0]
	for _, w := range m.waiters {
		if n >= w.n {
			close(w.ch)
		} else {
			kept = append(kept, w)
		}
	}
	m.waiters = kept
}

// mark closes the window now (for windows that do not end with an output,
// such as a restore) and closes done.
func (m *meter) mark() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	m.t1, m.cpu1 = time.Now(), processCPU()
	m.closed = true
	close(m.done)
}

// touch moves the window's end to now (a restore's partition ended).
func (m *meter) touch() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		m.t1, m.cpu1 = time.Now(), processCPU()
	}
}

// start opens the window now unless a fetch did (for windows that do not
// begin with a fetch, such as raw Pebble writes).
func (m *meter) start() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.started {
		m.started = true
		m.t0, m.cpu0 = time.Now(), processCPU()
	}
}

// waitOutputs returns when n output records were written, or ctx ends.
func (m *meter) waitOutputs(ctx context.Context, n int64) error {
	m.mu.Lock()
	if m.outN.Load() >= n {
		m.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	m.waiters = append(m.waiters, outWaiter{n: n, ch: ch})
	m.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// window is what a meter measured.
type window struct {
	Start, End  time.Time
	CPU         time.Duration
	Fetched     int64
	Produced    int64
	Outputs     int64
	PerTopicIn  map[string]int64
	PerTopicOut map[string]int64
}

// Seconds is the length of the window.
func (w window) Seconds() float64 { return w.End.Sub(w.Start).Seconds() }

// Moved is every record fetched or produced by the clients under test.
func (w window) Moved() int64 { return w.Fetched + w.Produced }

func (m *meter) window() window {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := window{Start: m.t0, End: m.t1, CPU: m.cpu1 - m.cpu0, Outputs: m.outN.Load(),
		PerTopicIn: make(map[string]int64), PerTopicOut: make(map[string]int64)}
	for t, n := range m.fetched {
		w.Fetched += n
		w.PerTopicIn[t] = n
	}
	for t, n := range m.produced {
		w.Produced += n
		w.PerTopicOut[t] = n
	}
	return w
}
