package engine

import (
	"sync"
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
	return ok && now.Sub(l.lastBrokerOK) <= l.readyFreshFor
}

func (l *lifecycle) alive() bool { return l.get() != Error }
