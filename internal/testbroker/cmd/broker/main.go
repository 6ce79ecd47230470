// Command broker runs franz-go's Kafka-protocol broker (kfake) as a process
// of its own, through internal/testbroker: for benchmarks, which measure
// choreo as a client of a broker as in production (the broker's CPU and
// memory stay out of the measuring process), and for outage tests, which
// kill it for real (kill -9) and start it again on the same ports and data
// directory.
//
//	broker [-ports 9092[,9093...]] [-brokers N] [-data-dir DIR] [-min-session-timeout 1s]
//	       [-config k=v]... [-cpuprofile FILE] [-watch-stdin]
//
// It prints one line "LISTEN host:port[,host:port...]" on stdout once every
// broker accepts connections, then runs until SIGTERM or SIGINT (or, with
// -watch-stdin, until its stdin closes, so it does not outlive a test
// binary that died without stopping it), when it closes the cluster
// (flushing the data directory) and exits 0. Topics are not created
// automatically: clients create what they need.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/choreo-go/choreo/internal/testbroker"
)

// kvFlag collects repeated key=value flags.
type kvFlag map[string]string

func (f kvFlag) String() string { return "" }

func (f kvFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	f[k] = v
	return nil
}

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("broker", flag.ContinueOnError)
	var (
		ports      = fs.String("ports", "", "comma-separated loopback ports, one per broker (default: free ports)")
		dataDir    = fs.String("data-dir", "", "persist topics, offsets and groups here (default: memory only)")
		brokers    = fs.Int("brokers", 0, "number of brokers in the cluster (default: one per port, or 1)")
		minSession = fs.Duration("min-session-timeout", time.Second, "lowest group session timeout the broker accepts")
		cpuprofile = fs.String("cpuprofile", "", "write a CPU profile of the broker's whole life to this file")
		watchStdin = fs.Bool("watch-stdin", false, "exit when stdin is closed")
		configs    = kvFlag{}
	)
	fs.Var(configs, "config", "broker config key=value (repeatable), e.g. log.cleaner.backoff.ms=1000")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "broker: unexpected arguments %q\n", fs.Args())
		return 2
	}
	var ps []int
	if *ports != "" {
		for _, s := range strings.Split(*ports, ",") {
			p, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || p <= 0 || p > 65535 {
				fmt.Fprintf(os.Stderr, "broker: bad port %q\n", s)
				return 2
			}
			ps = append(ps, p)
		}
	}
	n := *brokers
	switch {
	case n == 0 && len(ps) > 0:
		n = len(ps)
	case n == 0:
		n = 1
	case len(ps) > 0 && len(ps) != n:
		fmt.Fprintf(os.Stderr, "broker: %d ports for %d brokers\n", len(ps), n)
		return 2
	}

	// Listen for signals before announcing the addresses: a parent that
	// stops us right after reading them must not kill us uncleanly.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "broker: %v\n", err)
			return 1
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(os.Stderr, "broker: %v\n", err)
			return 1
		}
		defer func() {
			pprof.StopCPUProfile()
			if err := f.Close(); err != nil {
				fmt.Fprintf(os.Stderr, "broker: %v\n", err)
			}
		}()
	}

	b, err := testbroker.Start(testbroker.Options{
		Brokers:           n,
		Ports:             ps,
		DataDir:           *dataDir,
		MinSessionTimeout: *minSession,
		BrokerConfigs:     configs,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "broker: %v\n", err)
		return 1
	}
	defer b.Close()
	fmt.Printf("LISTEN %s\n", strings.Join(b.Addrs(), ","))

	stdinClosed := make(chan struct{})
	if *watchStdin {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			close(stdinClosed)
		}()
	}
	select {
	case s := <-sig:
		fmt.Fprintf(os.Stderr, "broker: %v: shutting down\n", s)
	case <-stdinClosed:
		fmt.Fprintln(os.Stderr, "broker: stdin closed, shutting down")
	}
	return 0
}
