// Command orders runs the order-portfolio scenario of ORDERS.md: it
// generates order-line events (unless the topics already hold some),
// processes them with choreo into an always-current portfolio per
// customer, waits until everything is processed, stops, and checks the
// order-portfolio topic and the final contents of the portfolio and lines
// tables (read from their changelog topics) against a model computed from
// the input topics.
//
// With no -brokers it starts an embedded Kafka-protocol broker (kfake)
// that keeps its data in <state>/broker on a port remembered in
// <state>/broker.port, so a second run sees the first run's topics, group
// offsets and state, and continues where it stopped.
//
//	go run ./examples/orders                 # default load: 140,000 events as a burst
//	go run ./examples/orders -rate peak      # the same at the peak-hour rate (39/s)
//	go run ./examples/orders                 # again: no new events, just check
//	go run ./examples/orders -count 10000    # 10,000 more events
//
// While it runs, the HTTP server (-http, default localhost:8080) serves
// /healthz, /readyz, /topology and GET /portfolio/{customer}, an
// interactive query of the portfolio table: 200 with the portfolio as JSON
// when this instance owns the customer, 404 when it owns a customer with
// no portfolio, a 307 redirect to the owner's -advertise address when
// another instance owns it, 503 while the answer is not available here
// (starting, rebalancing, restoring). -serve keeps the app running after
// the check, serving queries until interrupted:
//
//	go run ./examples/orders -serve &
//	curl -L localhost:8080/portfolio/C0001
//
// Instances sharing a broker (-brokers) form one group; each advertises
// -advertise (default: the -http address) so the others can name it.
//
// On a secure cluster, pass -brokers with the TLS and SASL settings, as
// flags (-tls, -tls-ca, -tls-cert, -tls-key, -tls-server-name,
// -sasl-mechanism, -sasl-user, -sasl-password-file) or in the environment
// (CHOREO_TLS, CHOREO_TLS_CA, ..., CHOREO_SASL_PASSWORD); the password is
// never a flag. The principal needs the ACLs of runtime.App.RequiredACLs,
// plus create and write rights on the input topics to set them up.
//
// The exit code is 0 when the portfolio and the lines equal the model, 1
// when they do not or something failed, 2 for bad flags and 130 when
// interrupted.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/examples/orders/orders"
	"github.com/choreo-go/choreo/internal/testbroker"
	"github.com/choreo-go/choreo/runtime"
)

type config struct {
	brokers      []string
	state        string
	count        int
	countSet     bool
	rate         float64
	seed         uint64
	skew         float64
	partitions   int
	priceChanges int
	deletes      int
	guarantee    runtime.Guarantee
	httpAddr     string
	advertise    string
	serve        bool
	threads      int
	// security applies to every client: the app's and the scenario's own.
	security runtime.Security
}

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg, err := parseFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "orders:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := scenario(ctx, log, cfg); err != nil {
		if ctx.Err() != nil {
			log.Warn("interrupted", "err", err)
			return 130
		}
		log.Error("orders failed", "err", err)
		return 1
	}
	return 0
}

func parseFlags(args []string) (config, error) {
	var (
		c         config
		brokers   string
		rate      string
		guarantee string
	)
	fs := flag.NewFlagSet("orders", flag.ContinueOnError)
	fs.StringVar(&brokers, "brokers", "", "comma-separated seed brokers; empty starts an embedded broker in <state>/broker")
	fs.StringVar(&c.state, "state", "./orders-state", "state directory (app stores; embedded broker data)")
	fs.IntVar(&c.count, "count", orders.DefaultEvents, "order-line events to generate (0: generate nothing); by default none when order-lines already holds events")
	fs.StringVar(&rate, "rate", "0", "events per second, or \"peak\" (39/s); 0 = as fast as possible")
	fs.Uint64Var(&c.seed, "seed", 1, "generator seed: the same seed gives the same load")
	fs.Float64Var(&c.skew, "skew", orders.DefaultSkew, "Zipf exponent (> 1) of orders per customer; 0 = uniform")
	fs.StringVar(&guarantee, "guarantee", "at-least-once", "processing guarantee: at-least-once or exactly-once")
	fs.StringVar(&c.httpAddr, "http", "localhost:8080", "address of the HTTP server with /healthz, /readyz, /topology, /metrics and GET /portfolio/{customer} (empty: none)")
	fs.StringVar(&c.advertise, "advertise", "", "host:port other instances reach this one's HTTP server at, for interactive queries (default: the -http address)")
	fs.BoolVar(&c.serve, "serve", false, "keep running after the check, serving queries, until interrupted")
	fs.IntVar(&c.threads, "threads", 1, "goroutines processing tasks at once (Config.ProcessingThreads)")
	fs.IntVar(&c.partitions, "partitions", 6, "partitions of the input topics when creating them")
	fs.IntVar(&c.priceChanges, "price-changes", 0, "product price changes produced mid-stream")
	fs.IntVar(&c.deletes, "deletes", 0, "products deleted (tombstone) mid-stream")
	sec, err := runtime.SecurityFromEnv()
	if err != nil {
		return c, err
	}
	c.security = sec
	c.security.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	fs.Visit(func(f *flag.Flag) { c.countSet = c.countSet || f.Name == "count" })
	for _, b := range strings.Split(brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			c.brokers = append(c.brokers, b)
		}
	}
	switch rate {
	case "peak":
		c.rate = orders.PeakRate
	default:
		r, err := strconv.ParseFloat(rate, 64)
		if err != nil || r < 0 {
			return c, fmt.Errorf("-rate %q: want events per second or \"peak\"", rate)
		}
		c.rate = r
	}
	switch guarantee {
	case "at-least-once":
		c.guarantee = runtime.AtLeastOnce
	case "exactly-once":
		c.guarantee = runtime.ExactlyOnce
	default:
		return c, fmt.Errorf("-guarantee %q: want at-least-once or exactly-once", guarantee)
	}
	if c.security.Enabled() && len(c.brokers) == 0 {
		return c, errors.New("TLS and SASL settings need -brokers: the embedded broker is plaintext")
	}
	if c.count < 0 || c.partitions <= 0 || c.priceChanges < 0 || c.deletes < 0 {
		return c, errors.New("-count, -price-changes and -deletes must not be negative, -partitions must be positive")
	}
	return c, nil
}

func scenario(ctx context.Context, log *slog.Logger, cfg config) error {
	if err := os.MkdirAll(cfg.state, 0o755); err != nil {
		return err
	}
	if len(cfg.brokers) == 0 {
		br, err := startEmbedded(cfg.state)
		if err != nil {
			return err
		}
		defer br.Close()
		cfg.brokers = br.Addrs()
		log.Info("embedded broker", "addr", cfg.brokers[0], "data", filepath.Join(cfg.state, "broker"))
	}
	secOpts, err := cfg.security.ClientOpts()
	if err != nil {
		return err
	}
	// The helpers that read inputs and tables build their clients from
	// cl.Opts(), so they inherit TLS and SASL.
	cl, err := kgo.NewClient(append(append(orders.ProducerOpts(), kgo.SeedBrokers(cfg.brokers...)), secOpts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	if err := orders.CreateTopics(ctx, adm, int32(cfg.partitions)); err != nil {
		return err
	}
	existing, err := heldRecords(ctx, adm, orders.TopicOrderLines)
	if err != nil {
		return err
	}
	gen := orders.DefaultOptions(cfg.seed)
	gen.Skew, gen.Rate = cfg.skew, cfg.rate
	gen.PriceChanges, gen.Deletes = cfg.priceChanges, cfg.deletes
	count := cfg.count
	switch {
	case existing > 0 && !cfg.countSet:
		log.Info("order-lines already holds events: generating none", "events", existing)
		count = 0
	case existing > 0 && count > 0:
		// New orders and seqs after the existing ones.
		gen.IDBase = int(existing)
	}
	gen.Lines, gen.MaxEvents = orders.LinesFor(count), count
	if err := gen.Validate(); err != nil {
		return err
	}
	before, err := committedRecords(ctx, adm, orders.TopicOrderLines)
	if err != nil {
		return err
	}

	// The HTTP listener comes first: its address is what the app
	// advertises to the group for interactive queries.
	var ln net.Listener
	if cfg.httpAddr != "" {
		if ln, err = net.Listen("tcp", cfg.httpAddr); err != nil {
			// A busy address only costs the HTTP server, not the run.
			log.Warn("HTTP server not started", "addr", cfg.httpAddr, "err", err)
			ln = nil
		}
	}
	if cfg.advertise == "" && ln != nil {
		cfg.advertise = advertised(cfg.httpAddr, ln)
	}
	b := runtime.NewBuilder()
	portfolios := orders.Topology(b)
	app, err := runtime.New(b, runtime.Config{
		Brokers:           cfg.brokers,
		ApplicationID:     orders.AppID,
		StateDir:          cfg.state,
		Guarantee:         cfg.guarantee,
		ApplicationServer: cfg.advertise,
		Security:          cfg.security,
		ProcessingThreads: cfg.threads,
		Logger:            log,
		StateListener: func(from, to runtime.State) {
			log.Info("app state", "from", from.String(), "to", to.String())
		},
	})
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return err
	}
	if ln != nil {
		q, err := runtime.Query(app, portfolios)
		if err != nil {
			ln.Close()
			return err
		}
		serveHTTP(ctx, log, ln, newHandler(app, q, log), cfg.advertise)
	}
	start := time.Now()
	appCtx, stopApp := context.WithCancel(ctx)
	defer stopApp()
	runDone := make(chan error, 1)
	go func() { runDone <- app.Run(appCtx) }()
	log.Info("app started", "generate", count, "rate", cfg.rate, "seed", cfg.seed)

	var produced atomic.Int64
	produceDone := make(chan error, 1)
	if count > 0 {
		go func() {
			produceDone <- orders.Produce(ctx, cl, gen, func(n int) { produced.Store(int64(n)) })
		}()
	} else {
		produceDone <- nil
	}

	progress := newProgress()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var waitDone chan error
	for done := false; !done; {
		select {
		case err := <-produceDone:
			if err != nil {
				return fmt.Errorf("produce: %w", err)
			}
			log.Info("input produced; waiting until processed", "events", produced.Load())
			waitDone = make(chan error, 1)
			go func() {
				waitDone <- orders.WaitProcessed(appCtx, cl, orders.AppID, orders.SourceTopics(orders.AppID))
			}()
		case err := <-waitDone:
			if err != nil {
				return err
			}
			done = true
		case err := <-runDone:
			return fmt.Errorf("app stopped before processing everything: %v", err)
		case <-ctx.Done():
			app.Close()
			return ctx.Err()
		case <-tick.C:
			out, _ := heldRecords(ctx, adm, orders.TopicPortfolio)
			progress.show(log, produced.Load(), out)
		}
	}
	elapsed := time.Since(start)
	progress.end()
	stopped := false
	if !cfg.serve {
		app.Close()
		if err := <-runDone; err != nil {
			return fmt.Errorf("app: %w", err)
		}
		stopped = true
		log.Info("app stopped")
	}

	after, err := committedRecords(ctx, adm, orders.TopicOrderLines)
	if err != nil {
		return err
	}
	in, err := orders.ReadInputs(ctx, cl)
	if err != nil {
		return err
	}
	want, st := orders.Evaluate(in)
	got, err := orders.ReadPortfolioTopic(ctx, cl)
	if err != nil {
		return err
	}
	processed := after - before
	fmt.Printf("events: %d in order-lines (%d processed this run in %v: %.0f events/s), %d undecodable\n",
		st.Events, processed, elapsed.Round(time.Millisecond), float64(processed)/elapsed.Seconds(), in.Undecodable)
	fmt.Printf("products: %d records, %d products; dropped by the join: %d events; lines: %d; portfolio rows: %d\n",
		st.ProductRecords, st.Products, st.Dropped, st.Lines, len(got))
	printLargest(got, 5)

	// The final contents of the tables, from their changelog topics.
	portfolio, lines, err := orders.ReadTables(ctx, cl, orders.AppID)
	if err != nil {
		return err
	}
	ok := report("order-portfolio topic", "customers", len(want), orders.Diff(want, got))
	ok = report("portfolio table ("+orders.ChangelogTopic(orders.AppID, orders.NamePortfolio)+")",
		"customers", len(want), orders.Diff(want, portfolio)) && ok
	ok = report("lines table ("+orders.ChangelogTopic(orders.AppID, orders.NameLines)+")",
		"lines", st.Lines, orders.DiffLines(orders.EvaluateLines(in), lines)) && ok
	if !ok {
		return errors.New("results differ from the model")
	}
	if !stopped {
		log.Info("serving queries until interrupted", "advertised", cfg.advertise)
		select {
		case <-ctx.Done():
		case err := <-runDone:
			return fmt.Errorf("app stopped: %v", err)
		}
		app.Close()
		if err := <-runDone; err != nil {
			return fmt.Errorf("app: %w", err)
		}
		log.Info("app stopped")
	}
	return nil
}

// report prints whether what equals the model (rows of them), with the
// first differences if not, and returns whether it does.
func report(what, rows string, n int, diff []string) bool {
	if len(diff) == 0 {
		fmt.Printf("%s equals the model (%d %s)\n", what, n, rows)
		return true
	}
	fmt.Printf("%s DIFFERS from the model: %d %s\n", what, len(diff), rows)
	for _, d := range diff[:min(len(diff), 20)] {
		fmt.Println("  " + d)
	}
	return false
}

// startEmbedded starts kfake with its data in <state>/broker, on the port
// remembered in <state>/broker.port (a free one, remembered, on the first run).
func startEmbedded(state string) (*testbroker.Broker, error) {
	portFile := filepath.Join(state, "broker.port")
	opts := testbroker.Options{DataDir: filepath.Join(state, "broker")}
	if raw, err := os.ReadFile(portFile); err == nil {
		p, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", portFile, err)
		}
		opts.Ports = []int{p}
	}
	br, err := testbroker.Start(opts)
	if err != nil {
		return nil, err
	}
	addr := br.Addrs()[0]
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	if err := os.WriteFile(portFile, []byte(port+"\n"), 0o644); err != nil {
		br.Close()
		return nil, err
	}
	return br, nil
}

// heldRecords is the number of offsets between start and end of topic.
func heldRecords(ctx context.Context, adm *kadm.Client, topic string) (int64, error) {
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return 0, err
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, err
	}
	if err := ends.Error(); err != nil {
		return 0, err
	}
	var n int64
	ends.Each(func(e kadm.ListedOffset) {
		s, _ := starts.Lookup(e.Topic, e.Partition)
		n += e.Offset - s.Offset
	})
	return n, nil
}

// committedRecords sums the app's committed offsets on topic.
func committedRecords(ctx context.Context, adm *kadm.Client, topic string) (int64, error) {
	offs, err := adm.FetchOffsetsForTopics(ctx, orders.AppID, topic)
	if err == nil {
		err = offs.Error()
	}
	if errors.Is(err, kerr.GroupIDNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var n int64
	offs.Each(func(o kadm.OffsetResponse) {
		if o.At > 0 {
			n += o.At
		}
	})
	return n, nil
}

func printLargest(got map[string]orders.Portfolio, n int) {
	rows := make([]orders.Portfolio, 0, len(got))
	for _, p := range got {
		rows = append(rows, p)
	}
	slices.SortFunc(rows, func(a, b orders.Portfolio) int {
		return cmp.Or(cmp.Compare(b.Lines(), a.Lines()), cmp.Compare(a.CustomerID, b.CustomerID))
	})
	fmt.Println("largest customers:")
	fmt.Printf("  %-8s %8s %9s %8s %9s %18s  %s\n", "customer", "open", "confirmed", "shipped", "cancelled", "open value", "last event")
	for _, p := range rows[:min(n, len(rows))] {
		fmt.Printf("  %-8s %8d %9d %8d %9d %18.2f  %s\n", p.CustomerID, p.OpenLines, p.ConfirmedLines, p.ShippedLines,
			p.CancelledLines, float64(p.OpenValueCents)/100, time.UnixMilli(p.LastEventTime).UTC().Format(time.RFC3339))
	}
}

// progress shows one line of progress: rewritten in place on a terminal,
// logged every few seconds otherwise.
type progress struct {
	tty  bool
	last time.Time
}

func newProgress() *progress {
	fi, err := os.Stderr.Stat()
	return &progress{tty: err == nil && fi.Mode()&os.ModeCharDevice != 0}
}

func (p *progress) show(log *slog.Logger, produced, out int64) {
	if p.tty {
		fmt.Fprintf(os.Stderr, "\r  events produced %9d   portfolio records out %9d ", produced, out)
		return
	}
	if time.Since(p.last) >= 5*time.Second {
		p.last = time.Now()
		log.Info("progress", "events_produced", produced, "portfolio_records_out", out)
	}
}

func (p *progress) end() {
	if p.tty {
		fmt.Fprintln(os.Stderr)
	}
}

// serveHTTP serves h on ln until ctx ends.
func serveHTTP(ctx context.Context, log *slog.Logger, ln net.Listener, h http.Handler, advertised string) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	log.Info("HTTP server", "url", "http://"+ln.Addr().String(), "advertised", advertised,
		"paths", "/healthz /readyz /topology /metrics /portfolio/{customer}")
	go func() { _ = srv.Serve(ln) }()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
}
