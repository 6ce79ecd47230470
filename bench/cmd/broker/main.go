// Command broker runs franz-go's Kafka-protocol broker (kfake) as a process
// of its own, so that a benchmark measures choreo as a client of a broker,
// as in production, and the broker's CPU and memory stay out of the
// measuring process.
//
//	go run ./bench/cmd/broker -ports 9092 -data-dir /tmp/kfake
//
// It prints one line "LISTEN host:port[,host:port...]" on stdout once every
// broker accepts connections, then runs until SIGTERM or SIGINT, when it
// closes the cluster (flushing the data directory) and exits 0. Topics are
// not created automatically: clients create what they need.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
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
		brokers    = fs.Int("brokers", 1, "number of brokers in the cluster")
		minSession = fs.Duration("min-session-timeout", time.Second, "lowest group session timeout the broker accepts")
		cpuprofile = fs.String("cpuprofile", "", "write a CPU profile of the broker's whole life to this file")
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
	opts := []kfake.Opt{
		kfake.NumBrokers(*brokers),
		kfake.GroupMinSessionTimeout(*minSession),
	}
	if *ports != "" {
		var ps []int
		for _, s := range strings.Split(*ports, ",") {
			p, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || p < 0 || p > 65535 {
				fmt.Fprintf(os.Stderr, "broker: bad port %q\n", s)
				return 2
			}
			ps = append(ps, p)
		}
		if len(ps) != *brokers {
			fmt.Fprintf(os.Stderr, "broker: %d ports for %d brokers\n", len(ps), *brokers)
			return 2
		}
		opts = append(opts, kfake.Ports(ps...))
	}
	if *dataDir != "" {
		opts = append(opts, kfake.DataDir(*dataDir))
	}
	if len(configs) > 0 {
		opts = append(opts, kfake.BrokerConfigs(configs))
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

	c, err := kfake.NewCluster(opts...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "broker: %v\n", err)
		return 1
	}
	fmt.Printf("LISTEN %s\n", strings.Join(c.ListenAddrs(), ","))
	s := <-sig
	fmt.Fprintf(os.Stderr, "broker: %v: shutting down\n", s)
	c.Close()
	return 0
}
