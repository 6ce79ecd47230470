// Command bench runs choreo's benchmark suite (package bench): it starts a
// standalone broker process (or, with -brokers, uses an existing cluster),
// measures the baselines and the workloads W1–W5
// in this process, prints a progress line while running, and writes
// results.md, results.json and plot.svg into <out>/<timestamp>/.
//
//	go run ./bench/cmd/bench                    # the whole suite (≤ 15 min on 2 cores)
//	go run ./bench/cmd/bench -quick             # a smaller run (≤ 2 min)
//	go run ./bench/cmd/bench -workloads w2,w4   # some workloads (and their baselines)
//	go run ./bench/cmd/bench -cpuprofile        # plus a CPU profile per phase and of the broker
//
// Run it from inside the choreo module: it builds internal/testbroker/cmd/broker and bench/cmd/load
// with the go command.
//
// Against an existing cluster, TLS and SASL are set like the order
// example's: the CHOREO_TLS* and CHOREO_SASL* environment variables,
// overridden by -tls, -tls-ca, -tls-cert, -tls-key, -tls-server-name,
// -sasl-mechanism, -sasl-user and -sasl-password-file (the password only
// in CHOREO_SASL_PASSWORD or a file). They need -brokers: the bench's own
// broker is plaintext. With -readme it also replaces the results section
// of that README (between the markers <!-- results:start --> and
// <!-- results:end -->).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/choreo-go/choreo/bench"
	"github.com/choreo-go/choreo/runtime"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var (
		quick      = fs.Bool("quick", false, "a smaller run (≤ 2 minutes)")
		workloads  = fs.String("workloads", "", "comma-separated workloads: "+strings.Join(bench.AllWorkloads, ",")+" (default all)")
		guarantees = fs.String("guarantees", "alos,eos", "comma-separated processing guarantees: alos, eos (W5 and rss run under the first only)")
		out        = fs.String("out", "bench/results", "folder that receives a <timestamp> folder with the results")
		cpuprofile = fs.Bool("cpuprofile", false, "write a CPU profile per phase (and of the broker) next to the results")
		traceFlag  = fs.Bool("trace", false, "write a Go execution trace per phase next to the results (go tool trace)")
		noLatency  = fs.Bool("no-latency", false, "skip W4's latency runs (the burst only)")
		seed       = fs.Uint64("seed", 1, "seed of every generated load")
		readme     = fs.String("readme", "", "README whose results section to replace with this run's table")
		scale      = fs.String("scale", "", "full, quick or tiny (overrides -quick)")
		appLog     = fs.String("applog", "", "write the debug logs of every app under test to this file")
		threads    = fs.Int("threads", goruntime.GOMAXPROCS(0), "Config.ProcessingThreads of the apps under test (default GOMAXPROCS)")
		repeat     = fs.Int("repeat", 0, "attempts per baseline, W1 and W2 measurement, keeping the fastest (default 3 at full scale, 1 otherwise)")
		brokers    = fs.String("brokers", "", "comma-separated seed brokers of an existing cluster to run against (default: start internal/testbroker/cmd/broker)")
	)
	sec, err := runtime.SecurityFromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	sec.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	o := bench.Options{Scale: bench.Full, Out: *out, CPUProfile: *cpuprofile, Trace: *traceFlag, NoLatency: *noLatency, Seed: *seed, Repeat: *repeat, Threads: *threads, Security: sec}
	for _, b := range strings.Split(*brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			o.Brokers = append(o.Brokers, b)
		}
	}
	if sec.Enabled() && len(o.Brokers) == 0 {
		fmt.Fprintln(os.Stderr, "bench: TLS and SASL settings need -brokers: the bench's own broker is plaintext")
		return 2
	}
	if *quick {
		o.Scale = bench.Quick
	}
	if *scale != "" {
		o.Scale = bench.Scale(*scale)
	}
	if *appLog != "" {
		f, err := os.Create(*appLog)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
		defer f.Close()
		o.AppLog = f
	}
	if *workloads != "" {
		o.Workloads = strings.Split(*workloads, ",")
	}
	for _, g := range strings.Split(*guarantees, ",") {
		o.Guarantees = append(o.Guarantees, bench.Guarantee(strings.TrimSpace(g)))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := bench.Run(ctx, o)
	if rep != nil {
		fmt.Println(rep.Markdown())
		fmt.Printf("results in %s\n", rep.Dir)
		if *readme != "" {
			cmd := "go run ./bench/cmd/bench"
			if o.Scale != bench.Full {
				cmd += " -scale " + string(o.Scale)
			}
			if *workloads != "" {
				cmd += " -workloads " + *workloads
			}
			if *threads != goruntime.GOMAXPROCS(0) {
				cmd += " -threads " + strconv.Itoa(*threads)
			}
			if *guarantees != "alos,eos" {
				cmd += " -guarantees " + *guarantees
			}
			if *cpuprofile {
				cmd += " -cpuprofile"
			}
			if uerr := bench.UpdateReadme(*readme, rep, cmd, filepath.ToSlash(rep.Dir)); uerr != nil {
				fmt.Fprintln(os.Stderr, "bench:", uerr)
				err = errors.Join(err, uerr)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		if ctx.Err() != nil {
			return 130
		}
		return 1
	}
	return 0
}
