package engine

import (
	"sync"
	"sync/atomic"
	"time"
)

// State is the lifecycle state of an app, as in Kafka Streams.
type State int32

const (
	// Created: New returned, Run not called yet.
	Created State = iota
	// Rebalancing: joining the group, restoring, or moving partitions.
	Rebalancing
	// Running: processing its tasks.
	Running
	// PendingShutdown: Run's context was cancelled; committing and leaving.
	PendingShutdown
	// NotRunning: Run returned after a clean shutdown.
	NotRunning
	// Error: a fatal error stopped the app; Run returned it.
	Error
)

func (s State) String() string {
	switch s {
	case Created:
		return "CREATED"
	case Rebalancing:
		return "REBALANCING"
	case Running:
		return "RUNNING"
	case PendingShutdown:
		return "PENDING_SHUTDOWN"
	case NotRunning:
		return "NOT_RUNNING"
	case Error:
		return "ERROR"
	}
	return "UNKNOWN"
}

// lifecycle tracks the app state and broker reachability for the probes.
type lifecycle struct {
	mu            sync.Mutex
	state         State
	assignedOnce  bool
	lastBrokerOK  time.Time
	listener      func(from, to State)
	now           func() time.Time
	readyFreshFor time.Duration
	// stuck counts broker operations (flush, offset commit, transaction
	// end) running longer than stuckAfter: brokers that answer but make
	// no progress (retriable errors) are an outage too.
	stuck atomic.Int32
}

// stuckAfter is how long a broker operation may take before readiness drops.
const stuckAfter = 2 * time.Second

// watch marks the app not ready while op takes longer than stuckAfter; call
// the returned func when op completes.
func (l *lifecycle) watch() (done func()) {
	var fired atomic.Bool
	t := time.AfterFunc(stuckAfter, func() {
		fired.Store(true)
		l.stuck.Add(1)
	})
	return func() {
		if !t.Stop() && fired.Load() {
			l.stuck.Add(-1)
		}
	}
}

func (l *lifecycle) set(to State) {
	l.mu.Lock()
	from := l.state
	if from == to || from == Error || (from == NotRunning && to != Error) {
		l.mu.Unlock()
		return
	}
	l.state = to
	if to == Running {
		l.assignedOnce = true
	}
	fn := l.listener
	l.mu.Unlock()
	if fn != nil {
		fn(from, to)
	}
}

func (l *lifecycle) get() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state
}

func (l *lifecycle) brokerOK() {
	now := l.now()
	l.mu.Lock()
	l.lastBrokerOK = now
	l.mu.Unlock()
}

// ready: running (or rebalancing after the first assignment) and a broker
// round trip succeeded recently.
func (l *lifecycle) ready() bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	ok := l.state == Running || (l.state == Rebalancing && l.assignedOnce)
	return ok && now.Sub(l.lastBrokerOK) <= l.readyFreshFor && l.stuck.Load() == 0
}

func (l *lifecycle) alive() bool { return l.get() != Error }
