// Command broker runs a kfake Kafka cluster as a process of its own, for
// tests that kill a broker for real (kill -9) and start it again on the same
// ports and data directory.
//
//	broker -ports 9092[,9093...] -data-dir DIR [-min-session-timeout 500ms] [-config k=v]... [-watch-stdin]
//
// It prints "ready <host:port>[,<host:port>...]" on stdout once it accepts
// connections, and closes cleanly (persisting its state) on SIGTERM or
// SIGINT. With -watch-stdin it also exits when its stdin is closed, so that
// it does not outlive a test binary that died without stopping it.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/choreo-go/choreo/internal/testbroker"
)

type configFlag map[string]string

func (c configFlag) String() string { return fmt.Sprint(map[string]string(c)) }

func (c configFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	c[k] = v
	return nil
}

func main() {
	var (
		portsFlag  = flag.String("ports", "", "comma-separated ports, one per broker (required)")
		dataDir    = flag.String("data-dir", "", "directory persisting the cluster (required)")
		minSession = flag.Duration("min-session-timeout", 500*time.Millisecond, "lowest group session timeout accepted")
		watchStdin = flag.Bool("watch-stdin", false, "exit when stdin is closed")
		configs    = configFlag{}
	)
	flag.Var(configs, "config", "broker config key=value (repeatable)")
	flag.Parse()
	if err := run(*portsFlag, *dataDir, *minSession, configs, *watchStdin); err != nil {
		fmt.Fprintln(os.Stderr, "broker:", err)
		os.Exit(1)
	}
}

func run(portsFlag, dataDir string, minSession time.Duration, configs map[string]string, watchStdin bool) error {
	if portsFlag == "" || dataDir == "" {
		return fmt.Errorf("-ports and -data-dir are required")
	}
	var ports []int
	for _, s := range strings.Split(portsFlag, ",") {
		p, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || p <= 0 || p > 65535 {
			return fmt.Errorf("bad port %q", s)
		}
		ports = append(ports, p)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)

	b, err := testbroker.Start(testbroker.Options{
		Brokers:           len(ports),
		Ports:             ports,
		DataDir:           dataDir,
		MinSessionTimeout: minSession,
		BrokerConfigs:     configs,
	})
	if err != nil {
		return err
	}
	defer b.Close()

	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(out, "ready %s\n", strings.Join(b.Addrs(), ","))
	if err := out.Flush(); err != nil {
		return err
	}

	stdinClosed := make(chan struct{})
	if watchStdin {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			close(stdinClosed)
		}()
	}
	select {
	case s := <-stop:
		fmt.Fprintln(os.Stderr, "broker: stopping on", s)
	case <-stdinClosed:
		fmt.Fprintln(os.Stderr, "broker: stdin closed, stopping")
	}
	return nil
}
