package faultproxy

import (
	"net"
	"sync"
	"time"
)

// Listener wraps a net.Listener so that every connection it accepts is
// subject to its network's faults. It keeps net.Listener semantics: Close
// stops accepting and leaves accepted connections to their owner (kfake
// closes them itself), except for a Listener made by Wrap, whose Close
// closes its private network and with it every connection.
//
// Deadlines set on an accepted connection do not interrupt a Read or Write
// held by a blackhole.
type Listener struct {
	net.Listener
	n   *Network
	own bool

	once     sync.Once
	closeErr error
}

// Wrap wraps ln with a network of its own; use the Listener's methods to
// inject faults.
func Wrap(ln net.Listener) *Listener {
	n := NewNetwork()
	l := n.Wrap(ln)
	l.own = true
	return l
}

// Wrap wraps ln; its connections are subject to n's faults. If n is
// closed, ln is closed and Accept fails.
func (n *Network) Wrap(ln net.Listener) *Listener {
	l := &Listener{Listener: ln, n: n}
	if !n.addCloser(l) {
		l.closeFromNetwork()
	}
	return l
}

// Listen listens on address and wraps the listener. Its signature is that
// of net.Listen, so it can be given to kfake.ListenFn: kfake then
// advertises this listener's own address, and every client connection to
// the broker is gated by n.
func (n *Network) Listen(network, address string) (net.Listener, error) {
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	l := n.Wrap(ln)
	if n.isClosed() {
		return nil, ErrClosed
	}
	return l, nil
}

func (n *Network) isClosed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closed
}

// Accept waits for the next connection and returns it wrapped.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	wc := &conn{Conn: c, n: l.n, client: c.RemoteAddr(), done: make(chan struct{})}
	if !l.n.track(wc) {
		resetConn(c)
		return nil, ErrClosed
	}
	return wc, nil
}

// Close stops accepting (and, for a Listener made by Wrap, closes every
// connection it accepted).
func (l *Listener) Close() error {
	if l.own {
		l.n.Close()
	} else {
		l.closeFromNetwork()
	}
	return l.closeErr
}

func (l *Listener) closeFromNetwork() {
	l.once.Do(func() {
		l.n.removeCloser(l)
		l.closeErr = l.Listener.Close()
	})
}

// Network returns the network whose faults apply to this listener.
func (l *Listener) Network() *Network { return l.n }

// Blackhole stalls every connection (see Network.Blackhole).
func (l *Listener) Blackhole() { l.n.Blackhole() }

// Reset closes every connection with an RST (see Network.Reset).
func (l *Listener) Reset() { l.n.Reset() }

// Delay adds latency per chunk (see Network.Delay).
func (l *Listener) Delay(d time.Duration) { l.n.Delay(d) }

// Heal restores normal forwarding (see Network.Heal).
func (l *Listener) Heal() { l.n.Heal() }

// conn is the broker's side of an accepted connection.
type conn struct {
	net.Conn
	n      *Network
	client net.Addr
	done   chan struct{}
	once   sync.Once
}

// Read holds what arrives during a blackhole (data, end of stream or an
// error) until the blackhole ends, then delays it.
func (c *conn) Read(b []byte) (int, error) {
	if err := c.n.gate(c.done, c.client); err != nil {
		return 0, err
	}
	nr, err := c.Conn.Read(b)
	if perr := c.n.pass(c.done, c.client); perr != nil {
		return 0, perr
	}
	return nr, err
}

// Write is held during a blackhole and delayed.
func (c *conn) Write(b []byte) (int, error) {
	if err := c.n.pass(c.done, c.client); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

func (c *conn) Close() error {
	var err error
	c.once.Do(func() {
		close(c.done)
		c.n.untrack(c)
		err = c.Conn.Close()
	})
	return err
}

func (c *conn) clientAddr() net.Addr { return c.client }

func (c *conn) close() { _ = c.Close() }

func (c *conn) reset() {
	c.once.Do(func() {
		close(c.done)
		c.n.untrack(c)
		resetConn(c.Conn)
	})
}
