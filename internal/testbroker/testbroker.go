// Package testbroker starts franz-go's in-process Kafka broker (kfake) on
// loopback for tests, examples and benchmarks, and restarts it on the same
// ports and data directory so that topics, offsets and groups survive.
package testbroker

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Options configures a broker.
type Options struct {
	// Brokers is the number of brokers in the cluster (default 1).
	Brokers int
	// DataDir persists the cluster; empty keeps it in memory, in which case
	// Restart yields an empty cluster.
	DataDir string
	// Ports to listen on; empty picks free ports on the first start and
	// reuses them on restart.
	Ports []int
	// MinSessionTimeout lowers kfake's 6 s minimum group session timeout
	// (default 500 ms) so tests do not wait out long timeouts.
	MinSessionTimeout time.Duration
	// BrokerConfigs are passed through to kfake (e.g. transaction.max.timeout.ms).
	BrokerConfigs map[string]string
	// Extra kfake options applied on every start.
	Extra []kfake.Opt
}

// Broker is a kfake cluster that can be stopped and started again.
type Broker struct {
	mu   sync.Mutex
	opts Options
	c    *kfake.Cluster
}

// Start starts a broker.
func Start(opts Options) (*Broker, error) {
	if opts.Brokers <= 0 {
		opts.Brokers = 1
	}
	if opts.MinSessionTimeout <= 0 {
		opts.MinSessionTimeout = 500 * time.Millisecond
	}
	b := &Broker{opts: opts}
	if err := b.start(); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *Broker) start() error {
	if len(b.opts.Ports) == 0 {
		ports, err := freePorts(b.opts.Brokers)
		if err != nil {
			return err
		}
		b.opts.Ports = ports
	}
	// kfake's cleaner runs hourly by default, which tests keep: unlike real
	// Kafka, kfake moves the log start offset when it compacts, which
	// would make checkpoints look stale. Tests that need compaction call
	// Cluster().Compact().
	configs := map[string]string{}
	for k, v := range b.opts.BrokerConfigs {
		configs[k] = v
	}
	o := []kfake.Opt{
		kfake.NumBrokers(b.opts.Brokers),
		kfake.Ports(b.opts.Ports...),
		kfake.GroupMinSessionTimeout(b.opts.MinSessionTimeout),
		kfake.BrokerConfigs(configs),
	}
	if b.opts.DataDir != "" {
		o = append(o, kfake.DataDir(b.opts.DataDir))
	}
	o = append(o, b.opts.Extra...)
	var (
		c   *kfake.Cluster
		err error
	)
	// A port just released by Stop may linger briefly; retry the bind.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err = kfake.NewCluster(o...)
		if err == nil || time.Now().After(deadline) || !strings.Contains(err.Error(), "address already in use") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("testbroker: start kfake: %w", err)
	}
	b.mu.Lock()
	b.c = c
	b.mu.Unlock()
	return nil
}

// Addrs returns the seed broker addresses.
func (b *Broker) Addrs() []string {
	out := make([]string, len(b.opts.Ports))
	for i, p := range b.opts.Ports {
		out[i] = "127.0.0.1:" + strconv.Itoa(p)
	}
	return out
}

// Cluster returns the running kfake cluster (nil while stopped).
func (b *Broker) Cluster() *kfake.Cluster {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.c
}

// Stop closes the cluster; its ports close with it.
func (b *Broker) Stop() {
	b.mu.Lock()
	c := b.c
	b.c = nil
	b.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// Restart stops the cluster and starts it again on the same ports and data dir.
func (b *Broker) Restart() error {
	b.Stop()
	return b.start()
}

// Close stops the broker for good.
func (b *Broker) Close() { b.Stop() }

func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("testbroker: find free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Ports returns the ports the broker listens on (to restart on them later).
func (b *Broker) Ports() []int { return append([]int(nil), b.opts.Ports...) }
