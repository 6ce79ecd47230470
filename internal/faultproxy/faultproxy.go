// Package faultproxy injects network faults between Kafka clients and a
// broker in tests, on loopback: a blackhole (a network cut that drops
// packets: nothing is forwarded, nothing is closed), a reset (every current
// connection is closed with a TCP RST) and added latency.
//
// Faults are switched on a Network, which applies them to every connection
// that passes through the listeners and proxies created from it:
//
//   - Network.Listen wraps a listener in place (a kfake.ListenFn): the
//     broker's side of every accepted connection is gated. This is the
//     simplest way to cut a kfake broker off: kfake advertises the address
//     of the listener it got, so clients that learn brokers from metadata
//     still go through the wrapper.
//   - Network.ProxyListen (also a kfake.ListenFn) puts a real TCP proxy hop
//     in front of the broker: the proxy listens on the address kfake asked
//     for, which is also the address kfake advertises, and forwards to a
//     listener on an ephemeral port that kfake serves.
//   - Start / Network.Proxy run a plain TCP proxy in front of any target.
//     A Kafka client only stays behind it if the broker advertises the
//     proxy's address, hence the two ListenFn forms above.
//
// # Semantics
//
// Blackhole stops forwarding in both directions on every affected
// connection, existing and new, without closing anything: reads and writes
// block, and so do end-of-stream and resets (a FIN sent into the cut is held
// like data). The kernel still completes TCP handshakes, so a dial succeeds
// but the connection then stays silent, as behind a firewall that drops
// packets after the SYN-ACK. Heal resumes forwarding: what was held is
// delivered, as TCP retransmission would after a short cut; clients have
// usually given up on those connections by then and reconnect. Reset closes
// every affected connection with an RST (SO_LINGER 0) and leaves the mode
// as it is. Delay adds a latency to every chunk forwarded (every Read or
// Write on a wrapped connection). Heal also clears the delay.
//
// Filter restricts faults to connections whose client address matches,
// e.g. to cut the application under test but not the test's own producer
// (which then dials from another loopback address such as 127.0.0.2).
//
// Everything is safe for concurrent use, and Close leaves no goroutine
// behind.
package faultproxy

import (
	"net"
	"sync"
	"time"
)

// ErrClosed is returned by reads and writes on a connection closed while it
// was held by a fault.
var ErrClosed = net.ErrClosed

// Network is the fault switchboard shared by the listeners and proxies
// created from it.
type Network struct {
	mu        sync.Mutex
	blackhole bool
	delay     time.Duration
	filter    func(client net.Addr) bool
	changed   chan struct{} // closed and replaced on every change of the fields above
	conns     map[tracked]struct{}
	closers   map[closer]struct{}
	closed    bool
	done      chan struct{}
}

// tracked is a connection the network can reset or close.
type tracked interface {
	clientAddr() net.Addr
	reset()
	close()
}

type closer interface{ closeFromNetwork() }

// NewNetwork returns a network that forwards normally.
func NewNetwork() *Network {
	return &Network{
		changed: make(chan struct{}),
		conns:   make(map[tracked]struct{}),
		closers: make(map[closer]struct{}),
		done:    make(chan struct{}),
	}
}

// notifyLocked wakes every waiter so it re-reads the state. n.mu held.
func (n *Network) notifyLocked() {
	close(n.changed)
	n.changed = make(chan struct{})
}

// Blackhole stops forwarding on every affected connection, current and new,
// without closing any: a network cut that drops packets.
func (n *Network) Blackhole() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.blackhole = true
	n.notifyLocked()
}

// Heal ends a blackhole and removes any delay. Held bytes are delivered.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.blackhole = false
	n.delay = 0
	n.notifyLocked()
}

// Delay adds d of latency to every chunk forwarded on affected connections
// (0 removes it).
func (n *Network) Delay(d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.delay = max(d, 0)
	n.notifyLocked()
}

// Filter makes faults apply only to connections whose client (remote, as
// seen by the listener) address satisfies match; nil applies them to all.
func (n *Network) Filter(match func(client net.Addr) bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.filter = match
	n.notifyLocked()
}

// Reset closes every affected connection with a TCP RST.
func (n *Network) Reset() {
	n.mu.Lock()
	var victims []tracked
	for c := range n.conns {
		if n.affectsLocked(c.clientAddr()) {
			victims = append(victims, c)
		}
	}
	n.mu.Unlock()
	for _, c := range victims {
		c.reset()
	}
}

// Blackholed reports whether a blackhole is in effect.
func (n *Network) Blackholed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.blackhole
}

// Conns is the number of open connections through this network.
func (n *Network) Conns() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.conns)
}

// Close closes every listener and proxy created from n and every
// connection through them, and waits for the proxies' goroutines.
func (n *Network) Close() {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	close(n.done)
	cls := make([]closer, 0, len(n.closers))
	for c := range n.closers {
		cls = append(cls, c)
	}
	conns := make([]tracked, 0, len(n.conns))
	for c := range n.conns {
		conns = append(conns, c)
	}
	n.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
	for _, c := range cls {
		c.closeFromNetwork()
	}
}

func (n *Network) affectsLocked(client net.Addr) bool {
	return n.filter == nil || n.filter(client)
}

// track registers c; false if the network is closed.
func (n *Network) track(c tracked) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false
	}
	n.conns[c] = struct{}{}
	return true
}

func (n *Network) untrack(c tracked) {
	n.mu.Lock()
	delete(n.conns, c)
	n.mu.Unlock()
}

func (n *Network) addCloser(c closer) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false
	}
	n.closers[c] = struct{}{}
	return true
}

func (n *Network) removeCloser(c closer) {
	n.mu.Lock()
	delete(n.closers, c)
	n.mu.Unlock()
}

// gate blocks while the connection of client is blackholed. It returns
// ErrClosed if done (the connection's) or the network closes first.
func (n *Network) gate(done <-chan struct{}, client net.Addr) error {
	for {
		n.mu.Lock()
		held := n.blackhole && n.affectsLocked(client)
		changed := n.changed
		n.mu.Unlock()
		if !held {
			return nil
		}
		select {
		case <-changed:
		case <-done:
			return ErrClosed
		case <-n.done:
			return ErrClosed
		}
	}
}

// pass waits for the gate and then for the configured delay.
func (n *Network) pass(done <-chan struct{}, client net.Addr) error {
	if err := n.gate(done, client); err != nil {
		return err
	}
	n.mu.Lock()
	d := time.Duration(0)
	if n.affectsLocked(client) {
		d = n.delay
	}
	n.mu.Unlock()
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-done:
		return ErrClosed
	case <-n.done:
		return ErrClosed
	}
	// A blackhole may have started during the delay.
	return n.gate(done, client)
}

// resetConn closes c with an RST if it is a TCP connection.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
