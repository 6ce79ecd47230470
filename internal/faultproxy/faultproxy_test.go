package faultproxy_test

import (
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/choreo-go/choreo/internal/faultproxy"
)

// noLeaks fails the test if goroutines started during it outlive it. Call
// it first, so that its cleanup runs last.
func noLeaks(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			now := runtime.NumGoroutine()
			if now <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Fatalf("goroutines: %d before, %d after\n%s", before, now, buf)
			}
			time.Sleep(20 * time.Millisecond) // polling interval
		}
	})
}

// echoServer echoes every connection accepted from ln until closed.
type echoServer struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func serveEcho(t *testing.T, ln net.Listener) *echoServer {
	e := &echoServer{ln: ln, conns: map[net.Conn]struct{}{}}
	e.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			e.conns[c] = struct{}{}
			e.mu.Unlock()
			e.wg.Go(func() {
				_, _ = io.Copy(c, c)
				_ = c.Close()
				e.mu.Lock()
				delete(e.conns, c)
				e.mu.Unlock()
			})
		}
	})
	t.Cleanup(e.close)
	return e
}

func (e *echoServer) close() {
	_ = e.ln.Close()
	e.mu.Lock()
	for c := range e.conns {
		_ = c.Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
}

type faults interface {
	Blackhole()
	Reset()
	Delay(time.Duration)
	Heal()
	Close() error
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// setups returns, per mode, the fault switch and the address to dial for an
// echo server behind it.
var setups = map[string]func(t *testing.T) (faults, string){
	"proxy": func(t *testing.T) (faults, string) {
		e := serveEcho(t, listen(t))
		p, err := faultproxy.Start(e.ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return p, p.Addr()
	},
	"listener": func(t *testing.T) (faults, string) {
		l := faultproxy.Wrap(listen(t))
		serveEcho(t, l)
		return l, l.Addr().String()
	},
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// roundTrip writes msg and reads it back within d.
func roundTrip(c net.Conn, msg string, d time.Duration) error {
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	return expect(c, msg, d)
}

func expect(c net.Conn, msg string, d time.Duration) error {
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return errors.New("got " + string(buf) + ", want " + msg)
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestFaults(t *testing.T) {
	for mode, setup := range setups {
		t.Run(mode, func(t *testing.T) {
			noLeaks(t)
			f, addr := setup(t)
			defer f.Close()

			c1 := dial(t, addr)
			if err := roundTrip(c1, "hello", 2*time.Second); err != nil {
				t.Fatalf("normal forwarding: %v", err)
			}

			// Blackhole: nothing comes back on an existing connection, nor
			// on a new one, and nothing is closed.
			f.Blackhole()
			if err := roundTrip(c1, "held1", 300*time.Millisecond); !isTimeout(err) {
				t.Fatalf("existing connection during blackhole: %v, want a timeout", err)
			}
			c2 := dial(t, addr) // the kernel completes the handshake
			if err := roundTrip(c2, "held2", 300*time.Millisecond); !isTimeout(err) {
				t.Fatalf("new connection during blackhole: %v, want a timeout", err)
			}

			// Heal: what was held is delivered, as after TCP retransmission.
			f.Heal()
			if err := expect(c1, "held1", 2*time.Second); err != nil {
				t.Fatalf("held bytes after heal: %v", err)
			}
			if err := expect(c2, "held2", 2*time.Second); err != nil {
				t.Fatalf("held bytes of the new connection after heal: %v", err)
			}

			// Delay: per chunk, so a round trip takes at least the delay.
			f.Delay(150 * time.Millisecond)
			start := time.Now()
			if err := roundTrip(c1, "slow", 3*time.Second); err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took < 150*time.Millisecond {
				t.Fatalf("round trip with 150ms delay took %v", took)
			}
			f.Heal()
			start = time.Now()
			if err := roundTrip(c1, "fast", 3*time.Second); err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took > 140*time.Millisecond {
				t.Fatalf("round trip after heal took %v", took)
			}

			// Reset: current connections get an RST; new ones work.
			f.Reset()
			_ = c1.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := c1.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("read after Reset: %v, want ECONNRESET", err)
			}
			c3 := dial(t, addr)
			if err := roundTrip(c3, "again", 2*time.Second); err != nil {
				t.Fatalf("new connection after Reset: %v", err)
			}

			// A blackholed connection is still released by Close.
			f.Blackhole()
			c4 := dial(t, addr)
			if _, err := c4.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			_ = c3.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := c3.Read(make([]byte, 1)); err == nil || isTimeout(err) {
				t.Fatalf("read after Close: %v, want the connection closed", err)
			}
		})
	}
}

func TestConcurrentCommandsUnderTraffic(t *testing.T) {
	for mode, setup := range setups {
		t.Run(mode, func(t *testing.T) {
			noLeaks(t)
			f, addr := setup(t)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						c, err := net.DialTimeout("tcp", addr, time.Second)
						if err != nil {
							continue
						}
						for range 20 {
							if roundTrip(c, "ping", 50*time.Millisecond) != nil {
								break
							}
						}
						_ = c.Close()
					}
				})
			}
			wg.Go(func() {
				cmds := []func(){f.Blackhole, f.Heal, f.Reset, func() { f.Delay(time.Millisecond) }, f.Heal}
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					cmds[i%len(cmds)]()
					time.Sleep(7 * time.Millisecond) // pacing the commands
				}
			})
			time.Sleep(time.Second) // let traffic and commands interleave
			close(stop)
			f.Heal() // release held connections so the clients notice stop
			wg.Wait()
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// kfakeModes are the two ways to put a fault network in front of kfake.
var kfakeModes = map[string]func(n *faultproxy.Network) kfake.Opt{
	"wrapped-listener": func(n *faultproxy.Network) kfake.Opt { return kfake.ListenFn(n.Listen) },
	"proxy-hop":        func(n *faultproxy.Network) kfake.Opt { return kfake.ListenFn(n.ProxyListen) },
}

func loopbackDialer(ip string) kgo.Opt {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return kgo.Dialer(d.DialContext)
}

func TestKafkaClientThroughFaults(t *testing.T) {
	for mode, opt := range kfakeModes {
		t.Run(mode, func(t *testing.T) {
			noLeaks(t)
			n := faultproxy.NewNetwork()
			defer n.Close()
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"), opt(n))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			addrs := c.ListenAddrs()
			newClient := func(opts ...kgo.Opt) *kgo.Client {
				cl, err := kgo.NewClient(append([]kgo.Opt{
					kgo.SeedBrokers(addrs...), kgo.DefaultProduceTopic("t"),
					kgo.RetryBackoffFn(func(int) time.Duration { return 100 * time.Millisecond }),
				}, opts...)...)
				if err != nil {
					t.Fatal(err)
				}
				return cl
			}
			cl := newClient()
			defer cl.Close()
			// A second client dialing from 127.0.0.2, exempted by a filter later.
			other := newClient(loopbackDialer("127.0.0.2"))
			defer other.Close()

			// produce waits at most d for the record's outcome. A produce
			// whose request is in flight into a cut is not failed by its
			// context until franz-go's request timeout, so do not wait for
			// that: no success within d is what counts.
			produce := func(cl *kgo.Client, d time.Duration) error {
				ctx, cancel := context.WithTimeout(context.Background(), d)
				defer cancel()
				res := make(chan error, 1)
				cl.Produce(ctx, kgo.StringRecord("v"), func(_ *kgo.Record, err error) { res <- err })
				select {
				case err := <-res:
					return err
				case <-time.After(d + 500*time.Millisecond):
					return errors.New("no answer")
				}
			}
			if err := produce(cl, 10*time.Second); err != nil {
				t.Fatalf("produce: %v", err)
			}
			if err := produce(other, 10*time.Second); err != nil {
				t.Fatalf("produce: %v", err)
			}
			if n.Conns() == 0 {
				t.Fatal("no connection went through the fault network")
			}
			// Metadata advertises the address behind the faults.
			meta, err := kmsg.NewPtrMetadataRequest().RequestWith(context.Background(), cl)
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range meta.Brokers {
				if got := net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port))); got != addrs[0] {
					t.Fatalf("broker advertised as %s, want %s", got, addrs[0])
				}
			}

			// Blackhole: a produce with a 1 s context does not succeed.
			n.Blackhole()
			start := time.Now()
			err = produce(cl, time.Second)
			if err == nil {
				t.Fatal("produce succeeded during the blackhole")
			}
			t.Logf("produce during the blackhole: %v after %v", err, time.Since(start).Round(time.Millisecond))

			// Heal: the same client produces again.
			n.Heal()
			if err := produce(cl, 30*time.Second); err != nil {
				t.Fatalf("produce after heal: %v", err)
			}

			// Reset: clients reconnect by themselves.
			n.Reset()
			if err := produce(cl, 30*time.Second); err != nil {
				t.Fatalf("produce after reset: %v", err)
			}

			// Filter: cut only clients that do not dial from 127.0.0.2.
			n.Filter(func(a net.Addr) bool { return !a.(*net.TCPAddr).IP.Equal(net.ParseIP("127.0.0.2")) })
			n.Blackhole()
			if err := produce(other, 10*time.Second); err != nil {
				t.Fatalf("produce by the exempt client during a filtered blackhole: %v", err)
			}
			if err := produce(cl, time.Second); err == nil {
				t.Fatal("produce by the cut client succeeded during a filtered blackhole")
			}
			n.Heal()
			if err := produce(cl, 30*time.Second); err != nil {
				t.Fatalf("produce after heal: %v", err)
			}
			cl.Close()
			other.Close()
			c.Close()
			n.Close()
		})
	}
}

func TestStartOnFixedPortAndRefusedTarget(t *testing.T) {
	noLeaks(t)
	ln := listen(t)
	addr := ln.Addr().String()
	_ = ln.Close()
	// A proxy to nothing: connections are reset, like a refused dial.
	p, err := faultproxy.StartOn(addr, "127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Addr() != addr {
		t.Fatalf("Addr %s, want %s", p.Addr(), addr)
	}
	// The RST may even beat the dialer's check of the handshake.
	if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = c.Read(make([]byte, 1))
		_ = c.Close()
		if err == nil || isTimeout(err) {
			t.Fatalf("read through a proxy to a dead target: %v", err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("dial after Close succeeded")
	}
}
