package faultproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Proxy is a TCP proxy from its listening address to a target, subject to
// its network's faults.
type Proxy struct {
	n      *Network
	own    bool
	ln     net.Listener
	target string

	mu     sync.Mutex
	closed bool
	links  map[*link]struct{}
	wg     sync.WaitGroup
}

// Start starts a proxy to target on an ephemeral loopback port, with a
// network of its own: use the Proxy's methods to inject faults.
func Start(target string) (*Proxy, error) { return StartOn("127.0.0.1:0", target) }

// StartOn is Start listening on addr (e.g. "127.0.0.1:9092").
func StartOn(addr, target string) (*Proxy, error) {
	n := NewNetwork()
	p, err := n.Proxy(addr, target)
	if err != nil {
		n.Close()
		return nil, err
	}
	p.own = true
	return p, nil
}

// Proxy starts a proxy from addr to target whose connections are subject
// to n's faults.
func (n *Network) Proxy(addr, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return n.serveProxy(ln, target)
}

func (n *Network) serveProxy(ln net.Listener, target string) (*Proxy, error) {
	p := &Proxy{n: n, ln: ln, target: target, links: make(map[*link]struct{})}
	if !n.addCloser(p) {
		_ = ln.Close()
		return nil, ErrClosed
	}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// ProxyListen has the signature of net.Listen, for kfake.ListenFn: it runs
// a proxy on address (the address kfake asked for) to a new listener on an
// ephemeral port of the same host, and returns that listener for kfake to
// serve, reporting the proxy's address as its own so that kfake advertises
// the proxy. Closing the returned listener closes the proxy.
func (n *Network) ProxyListen(network, address string) (net.Listener, error) {
	front, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	host, _, err := net.SplitHostPort(front.Addr().String())
	if err != nil {
		_ = front.Close()
		return nil, err
	}
	back, err := net.Listen(network, net.JoinHostPort(host, "0"))
	if err != nil {
		_ = front.Close()
		return nil, err
	}
	p, err := n.serveProxy(front, back.Addr().String())
	if err != nil {
		_ = back.Close()
		return nil, err
	}
	return &proxiedListener{Listener: back, p: p}, nil
}

type proxiedListener struct {
	net.Listener
	p *Proxy
}

// Addr is the proxy's address, which kfake advertises.
func (l *proxiedListener) Addr() net.Addr { return l.p.ln.Addr() }

func (l *proxiedListener) Close() error {
	err := l.Listener.Close()
	l.p.closeFromNetwork()
	return err
}

// Addr is the address clients dial.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Network returns the network whose faults apply to this proxy.
func (p *Proxy) Network() *Network { return p.n }

// Blackhole stalls every connection, current and new (see Network.Blackhole).
func (p *Proxy) Blackhole() { p.n.Blackhole() }

// Reset closes every connection with an RST (see Network.Reset).
func (p *Proxy) Reset() { p.n.Reset() }

// Delay adds latency per forwarded chunk (see Network.Delay).
func (p *Proxy) Delay(d time.Duration) { p.n.Delay(d) }

// Heal restores normal forwarding (see Network.Heal).
func (p *Proxy) Heal() { p.n.Heal() }

// Close stops the proxy, closes its connections and waits for its
// goroutines. A proxy made by Start closes its network too.
func (p *Proxy) Close() error {
	if p.own {
		p.n.Close()
	} else {
		p.closeFromNetwork()
	}
	return nil
}

func (p *Proxy) closeFromNetwork() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return
	}
	p.closed = true
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	p.n.removeCloser(p)
	_ = p.ln.Close()
	for _, l := range links {
		l.close()
	}
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors and the like: try again shortly.
			t := time.NewTimer(10 * time.Millisecond)
			select {
			case <-t.C:
			case <-p.n.done:
				t.Stop()
				return
			}
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		l := &link{p: p, client: c, addr: c.RemoteAddr(), done: make(chan struct{}), cancel: cancel}
		p.mu.Lock()
		if p.closed || !p.n.track(l) {
			p.mu.Unlock()
			cancel()
			resetConn(c)
			continue
		}
		p.links[l] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go l.serve(ctx)
	}
}

// link is one proxied connection: client ↔ proxy ↔ target.
type link struct {
	p      *Proxy
	client net.Conn
	addr   net.Addr
	done   chan struct{}
	cancel context.CancelFunc

	mu     sync.Mutex
	target net.Conn
	once   sync.Once
}

func (l *link) serve(ctx context.Context) {
	defer l.p.wg.Done()
	defer l.close()
	n := l.p.n
	// During a cut nothing reaches the target, not even the dial.
	if err := n.gate(l.done, l.addr); err != nil {
		return
	}
	var d net.Dialer
	target, err := d.DialContext(ctx, "tcp", l.p.target)
	if err != nil {
		l.reset() // the target refused: so does the proxy
		return
	}
	l.mu.Lock()
	select {
	case <-l.done:
		l.mu.Unlock()
		_ = target.Close()
		return
	default:
	}
	l.target = target
	l.mu.Unlock()

	var wg sync.WaitGroup
	wg.Go(func() { l.pump(target, l.client) })
	l.pump(l.client, target)
	wg.Wait()
}

// pump copies src to dst. What src yields during a blackhole (data, end of
// stream, a reset) is held until it ends; an end of stream is forwarded as
// a half-close, an error as a reset of the whole link.
func (l *link) pump(src, dst net.Conn) {
	n := l.p.n
	buf := make([]byte, 32<<10)
	for {
		nr, err := src.Read(buf)
		if perr := n.pass(l.done, l.addr); perr != nil {
			return
		}
		if nr > 0 {
			if _, werr := dst.Write(buf[:nr]); werr != nil {
				l.reset()
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				if cw, ok := dst.(interface{ CloseWrite() error }); ok {
					_ = cw.CloseWrite()
					return
				}
			}
			l.reset()
			return
		}
	}
}

func (l *link) clientAddr() net.Addr { return l.addr }

func (l *link) close() { l.shut(false) }

func (l *link) reset() { l.shut(true) }

func (l *link) shut(rst bool) {
	l.once.Do(func() {
		l.mu.Lock()
		close(l.done)
		target := l.target
		l.mu.Unlock()
		l.cancel()
		for _, c := range []net.Conn{l.client, target} {
			if c == nil {
				continue
			}
			if rst {
				resetConn(c)
			} else {
				_ = c.Close()
			}
		}
		l.p.n.untrack(l)
		l.p.mu.Lock()
		delete(l.p.links, l)
		l.p.mu.Unlock()
	})
}
