package bench

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress shows one progress line for the running phase: redrawn in
// place on a terminal, printed every few seconds otherwise.
type progress struct {
	w    io.Writer
	tty  bool
	mu   sync.Mutex
	quit chan struct{}
	wg   sync.WaitGroup
	line bool // a progress line is on screen (tty)
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

// linef prints a line of its own (clearing the progress line).
func (p *progress) linef(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	fmt.Fprintf(p.w, format+"\n", args...)
}

func (p *progress) clear() {
	if p.tty && p.line {
		fmt.Fprint(p.w, "\r\033[K")
		p.line = false
	}
}

// start shows the progress of title: count() of total records (total 0:
// unknown), with the rate since the phase started.
func (p *progress) start(title string, total int64, count func() int64) {
	p.quit = make(chan struct{})
	quit := p.quit
	t0 := time.Now()
	every := 250 * time.Millisecond
	if !p.tty {
		every = 5 * time.Second
	}
	p.wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
			}
			var n int64
			if count != nil {
				n = count()
			}
			el := time.Since(t0)
			var b strings.Builder
			fmt.Fprintf(&b, "%-44s %s", title, fmtCount(n))
			if total > 0 {
				fmt.Fprintf(&b, "/%s (%3.0f%%)", fmtCount(total), 100*float64(n)/float64(total))
			}
			fmt.Fprintf(&b, "  %5.1fs", el.Seconds())
			p.mu.Lock()
			if p.tty {
				fmt.Fprintf(p.w, "\r\033[K%s", b.String())
				p.line = true
			} else {
				fmt.Fprintln(p.w, b.String())
			}
			p.mu.Unlock()
		}
	})
}

// stop ends the current progress line.
func (p *progress) stop() {
	if p.quit != nil {
		close(p.quit)
		p.wg.Wait()
		p.quit = nil
	}
	p.mu.Lock()
	p.clear()
	p.mu.Unlock()
}

func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
}

// fmtCount prints 1234567 as 1.23M, 12345 as 12.3k.
func fmtCount(n int64) string {
	f := float64(n)
	switch {
	case n >= 10_000_000:
		return fmt.Sprintf("%.1fM", f/1e6)
	case n >= 1_000_000:
		return fmt.Sprintf("%.2fM", f/1e6)
	case n >= 10_000:
		return fmt.Sprintf("%.0fk", f/1e3)
	case n >= 1_000:
		return fmt.Sprintf("%.1fk", f/1e3)
	}
	return fmt.Sprint(n)
}
