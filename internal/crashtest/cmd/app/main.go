//go:build unix

// Command app is the program the crash test (package crashtest) runs as a
// real child process and kills with SIGKILL. It runs one choreo App until
// SIGTERM or SIGINT (a clean stop: final commit, leave the group, exit 0).
//
// Topologies (-topology):
//
//   - count: seq-in (key k<n>, value the decimal sequence number of the
//     event) → a processor that keeps a count per key in the logged store
//     "counts" and emits, for every input, the new count (Int64 value) with
//     the input's sequence number in the header "seq" → seq-out.
//   - orders: the order-portfolio topology of examples/orders.
//
// It reports on stdout, one line per event, for the parent to parse:
//
//	running <ms since start>                       the app reached RUNNING
//	restore-start <task> <store> <from> <to>       a store's replay began
//	restored <task> <store> <n>                    a store's replay ended: n records
//	suspended <task> <store> <n>                   a replay stopped early after n records
//	armed <point>                                  SIGUSR1 armed the crash hook
//	crashed <error>                                the armed crash happened (then waits for SIGKILL or SIGTERM)
//	stopped                                        clean stop; exit 0
//	error <error>                                  Run failed; exit 1
//
// With -crash-on-usr1 after-flush|after-store-commit, SIGUSR1 arms the
// runtime's test hook: the next commit stops at that point and the app
// abandons its work as a killed process would; the program then prints
// "crashed" and waits to be killed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/choreo-go/choreo/examples/orders/orders"
	"github.com/choreo-go/choreo/internal/apptest"
	"github.com/choreo-go/choreo/runtime"
)

// Names of the count topology.
const (
	CountApp   = "crash-count"
	CountIn    = "seq-in"
	CountOut   = "seq-out"
	CountStore = "counts"
	SeqHeader  = "seq"
)

var start = time.Now()

// out serializes the report lines.
var out = &reporter{}

type reporter struct{ mu sync.Mutex }

func (r *reporter) printf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(os.Stdout, format+"\n", args...)
}

func main() { os.Exit(run()) }

func run() int {
	var (
		brokers   = flag.String("brokers", "", "comma-separated seed brokers (required)")
		stateDir  = flag.String("state", "", "state directory (required)")
		instance  = flag.String("instance", "", "instance id (static membership, transactional id); empty: the id file in the state dir")
		guarantee = flag.String("guarantee", "at-least-once", "at-least-once or exactly-once")
		topo      = flag.String("topology", "count", "count or orders")
		appID     = flag.String("app", "", "application id (default crash-count, or orders for the orders topology)")
		commit    = flag.Duration("commit-interval", 100*time.Millisecond, "commit interval")
		session   = flag.Duration("session-timeout", 2*time.Second, "group session timeout")
		txn       = flag.Duration("transaction-timeout", 0, "transaction timeout (0: the runtime's default)")
		logLevel  = flag.String("log", "", "log level for slog text logs on stderr (debug, info, warn, error); empty: no logs")
		crashOn   = flag.String("crash-on-usr1", "", "after-flush or after-store-commit: SIGUSR1 arms a crash at that commit step")
	)
	flag.Parse()
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "app: "+format+"\n", args...)
		return 2
	}
	if *brokers == "" || *stateDir == "" {
		return fail("-brokers and -state are required")
	}
	cfg := runtime.Config{
		Brokers:            strings.Split(*brokers, ","),
		InstanceID:         *instance,
		StateDir:           *stateDir,
		CommitInterval:     *commit,
		SessionTimeout:     *session,
		TransactionTimeout: *txn,
		RestoreListener:    restoreReporter{},
		Logger:             slog.New(slog.DiscardHandler),
	}
	if *logLevel != "" {
		var lvl slog.Level
		if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
			return fail("-log %q: %v", *logLevel, err)
		}
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	}
	switch *guarantee {
	case "at-least-once":
		cfg.Guarantee = runtime.AtLeastOnce
	case "exactly-once":
		cfg.Guarantee = runtime.ExactlyOnce
	default:
		return fail("-guarantee %q: want at-least-once or exactly-once", *guarantee)
	}
	b := runtime.NewBuilder()
	switch *topo {
	case "count":
		cfg.ApplicationID = CountApp
		countTopology(b)
	case "orders":
		cfg.ApplicationID = orders.AppID
		orders.Topology(b)
	default:
		return fail("-topology %q: want count or orders", *topo)
	}
	if *appID != "" {
		cfg.ApplicationID = *appID
	}
	crashPoint := 0
	switch *crashOn {
	case "":
	case "after-flush":
		crashPoint = apptest.AfterFlush
	case "after-store-commit":
		crashPoint = apptest.AfterStoreCommit
	default:
		return fail("-crash-on-usr1 %q: want after-flush or after-store-commit", *crashOn)
	}
	app, err := runtime.New(b, cfg)
	if err != nil {
		return fail("%v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	var armed bool
	var armedMu sync.Mutex
	if crashPoint != 0 {
		usr1 := make(chan os.Signal, 1)
		signal.Notify(usr1, syscall.SIGUSR1)
		go func() {
			for range usr1 {
				armedMu.Lock()
				armed = true
				armedMu.Unlock()
				apptest.CrashAt(app, crashPoint)
				out.printf("armed %s", *crashOn)
			}
		}()
	}

	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	// Report every entry into RUNNING (polled: the state listener would
	// do, but polling is what an operator's probe sees).
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	wasRunning := false
	for {
		select {
		case err := <-done:
			armedMu.Lock()
			crashed := armed
			armedMu.Unlock()
			switch {
			case crashed && err != nil:
				out.printf("crashed %s", oneLine(err))
				// As a killed process: no more work; wait for SIGKILL
				// (or SIGTERM).
				<-ctx.Done()
				return 3
			case err != nil:
				out.printf("error %s", oneLine(err))
				return 1
			default:
				out.printf("stopped")
				return 0
			}
		case <-tick.C:
			running := app.State() == runtime.Running
			if running && !wasRunning {
				out.printf("running %d", time.Since(start).Milliseconds())
			}
			wasRunning = running
		}
	}
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", " | ") }

// restoreReporter prints the restore events.
type restoreReporter struct{}

func (restoreReporter) OnRestoreStart(task, store, _ string, _ int32, from, to int64) {
	out.printf("restore-start %s %s %d %d", task, store, from, to)
}

func (restoreReporter) OnBatchRestored(string, string, string, int32, int64, int64) {}

func (restoreReporter) OnRestoreEnd(task, store, _ string, _ int32, total int64) {
	out.printf("restored %s %s %d", task, store, total)
}

func (restoreReporter) OnRestoreSuspended(task, store, _ string, _ int32, total int64) {
	out.printf("suspended %s %s %d", task, store, total)
}

// countTopology: seq-in → count per key (store "counts") → seq-out, with
// the input's sequence number in the header "seq" of every output.
func countTopology(b *runtime.Builder) {
	ref := runtime.AddStore(b, CountStore, runtime.String(), runtime.Int64())
	in := runtime.StreamOf(b, CountIn, runtime.String(), runtime.String(), runtime.Named("seq-source"))
	runtime.Process(in, func() runtime.Processor[string, string, string, int64] { return &counter{ref: ref} },
		[]string{ref.Name()}, runtime.Named("count"),
		runtime.WithKeySerde(runtime.String()), runtime.WithValueSerde(runtime.Int64())).
		To(CountOut, runtime.Named("seq-sink"))
}

type counter struct {
	ref   runtime.StoreRef[string, int64]
	ctx   runtime.ProcessorContext[string, int64]
	store *runtime.KVStore[string, int64]
}

func (c *counter) Init(ctx runtime.ProcessorContext[string, int64]) error {
	c.ctx = ctx
	st, err := runtime.OpenStore(ctx, c.ref)
	if err != nil {
		return err
	}
	c.store = st
	return nil
}

func (c *counter) Process(r runtime.Record[string, string]) error {
	if _, err := strconv.ParseInt(r.Value, 10, 64); err != nil {
		return errors.New("input value is not a sequence number: " + strconv.Quote(r.Value))
	}
	n, _, err := c.store.Get(r.Key)
	if err != nil {
		return err
	}
	n++
	if err := c.store.Put(r.Key, n); err != nil {
		return err
	}
	return c.ctx.Forward(runtime.Record[string, int64]{
		Key:       r.Key,
		Value:     n,
		Timestamp: r.Timestamp,
		Headers:   []runtime.Header{{Key: SeqHeader, Value: []byte(r.Value)}},
	})
}

func (c *counter) Close() error { return nil }
