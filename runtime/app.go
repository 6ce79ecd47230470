package runtime

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/choreo-go/choreo/internal/apptest"
	"github.com/choreo-go/choreo/internal/engine"
)

// Sentinel errors of the App.
var (
	// ErrInvalidConfig wraps every configuration error returned by New or Run.
	ErrInvalidConfig = engine.ErrInvalidConfig
	// ErrMissingTopic is returned by Run when a source or sink topic does not exist.
	ErrMissingTopic = engine.ErrMissingTopic
	// ErrPanic wraps a panic recovered from user code.
	ErrPanic = engine.ErrPanic
	// ErrCloseTimeout is returned by Run when the final commit could not
	// complete within Config.CloseTimeout.
	ErrCloseTimeout = engine.ErrCloseTimeout
	// ErrAlreadyRunning is returned by a second Run.
	ErrAlreadyRunning = engine.ErrAlreadyRunning
)

// App runs a topology as one instance of an application. Start as many
// instances with the same ApplicationID as you like: the partitions (tasks)
// and their state spread across them through the consumer group.
type App struct {
	topo *Topology
	eng  *engine.Engine
	// gatherer serves /metrics: the App's own registry, or the user's
	// registerer when it can gather.
	gatherer prometheus.Gatherer

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// New builds the topology and validates cfg. It does not touch the network:
// unreachable brokers are an outage that Run rides out, not an error here.
func New(b *Builder, cfg Config) (*App, error) {
	topo, err := b.Build()
	if err != nil {
		return nil, err
	}
	return NewWithTopology(topo, cfg)
}

// NewWithTopology is New for an already built topology.
func NewWithTopology(topo *Topology, cfg Config) (*App, error) {
	ecfg, err := cfg.engineConfig()
	if err != nil {
		return nil, fmt.Errorf("choreo: %w", err)
	}
	eng, err := engine.New(topo.Graph(), ecfg)
	if err != nil {
		return nil, fmt.Errorf("choreo: %w", err)
	}
	a := &App{topo: topo, eng: eng, done: make(chan struct{})}
	reg := cfg.MetricsRegisterer
	if reg == nil {
		own := prometheus.NewRegistry()
		own.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		reg, a.gatherer = own, own
	} else if g, ok := reg.(prometheus.Gatherer); ok {
		a.gatherer = g
	} else {
		// Serve the app's metrics alone; the user serves the rest.
		own := prometheus.NewRegistry()
		own.MustRegister(eng.Collector())
		a.gatherer = own
	}
	if err := reg.Register(eng.Collector()); err != nil {
		return nil, fmt.Errorf("choreo: %w: registering metrics: %w", ErrInvalidConfig, err)
	}
	return a, nil
}

// Run joins the group and processes until ctx is cancelled or Close is
// called, then commits, closes the stores and leaves the group, and returns
// nil. It returns the cause when a fatal error stops the app (the state is
// then Error). Broker outages are not fatal: Run keeps retrying.
func (a *App) Run(ctx context.Context) error {
	a.mu.Lock()
	if a.cancel != nil {
		a.mu.Unlock()
		return ErrAlreadyRunning
	}
	ctx, cancel := context.WithCancel(ctx)
	a.cancel = cancel
	a.mu.Unlock()
	defer close(a.done)
	defer cancel()
	err := a.eng.Run(ctx)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// Close stops a running app gracefully and waits for Run to return.
func (a *App) Close() {
	a.mu.Lock()
	cancel := a.cancel
	a.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-a.done
}

// State returns the lifecycle state.
func (a *App) State() State { return a.eng.State() }

// Ready reports whether the app is running (or rebalancing after its first
// assignment) and reached a broker within the last few seconds.
func (a *App) Ready() bool { return a.eng.Ready() }

// Alive reports whether the app is not in the Error state.
func (a *App) Alive() bool { return a.eng.Alive() }

// InstanceID is the stable id of this instance (static group membership).
func (a *App) InstanceID() string { return a.eng.InstanceID() }

// SkippedRecords counts records dropped by a SkipOnError policy.
func (a *App) SkippedRecords() int64 { return a.eng.Skipped() }

// DeadLetteredRecords counts records sent to the dead-letter topic.
func (a *App) DeadLetteredRecords() int64 { return a.eng.DeadLettered() }

// MetricsCollector returns a collector of the app's metrics (the choreo_*
// metrics listed in the README), for users who assemble their own
// registries. Each call returns a new collector of the same metrics.
func (a *App) MetricsCollector() prometheus.Collector { return a.eng.Collector() }

// MetricsGatherer returns the gatherer App.Handler serves /metrics from:
// the App's own registry (app, Go runtime and process metrics) by default,
// or Config.MetricsRegisterer when it is a prometheus.Gatherer.
func (a *App) MetricsGatherer() prometheus.Gatherer { return a.gatherer }

// Topology returns the app's topology.
func (a *App) Topology() *Topology { return a.topo }

func init() {
	apptest.CrashOnClose = func(app any) { app.(*App).eng.SetCrashOnClose() }
	apptest.CrashAt = func(app any, point int) { app.(*App).eng.ArmCrash(engine.CrashPoint(point)) }
}
