//go:build unix

package crashtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/choreo-go/choreo/internal/gobin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	gobin.Cleanup()
	os.Exit(code)
}

// childBinary builds cmd/app once per test binary run, with -race when the
// test runs with it.
func childBinary(t *testing.T) string {
	t.Helper()
	bin, err := gobin.Build("github.com/choreo-go/choreo/internal/crashtest/cmd/app", raceEnabled)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// child is one run of the test program.
type child struct {
	name    string
	cmd     *exec.Cmd
	started time.Time
	logPath string

	notify chan struct{} // a line arrived (capacity 1)
	exited chan struct{} // closed once the process is reaped

	mu            sync.Mutex
	runningAt     time.Time // parent's clock when "running" was read
	childMs       int64     // the child's own time to RUNNING
	restoreStarts int
	restoreEnds   int
	restored      int64 // records of ended and suspended replays
	armed         bool
	crashed       bool
	stopped       bool
	errLine       string
	lines         []string // the last stdout lines
	waitErr       error
}

// startChild starts the test program with args; its stdout is parsed, its
// stderr (logs) goes to logPath.
func startChild(t *testing.T, name, bin, logPath string, args ...string) *child {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(logf, "=== %s %s: %s\n", time.Now().Format(time.RFC3339Nano), name, strings.Join(args, " "))
	c := &child{name: name, logPath: logPath, notify: make(chan struct{}, 1), exited: make(chan struct{})}
	c.cmd = exec.Command(bin, args...)
	c.cmd.Stderr = logf
	dieWithParent(c.cmd)
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		t.Fatal(err)
	}
	c.started = time.Now()
	if err := c.cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.line(sc.Text())
		}
		err := c.cmd.Wait()
		logf.Close()
		c.mu.Lock()
		c.waitErr = err
		c.mu.Unlock()
		close(c.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-c.exited:
		default:
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
	})
	return c
}

func (c *child) line(s string) {
	now := time.Now()
	f := strings.Fields(s)
	c.mu.Lock()
	if len(c.lines) >= 40 {
		c.lines = c.lines[1:]
	}
	c.lines = append(c.lines, s)
	if len(f) > 0 {
		switch f[0] {
		case "running":
			if c.runningAt.IsZero() {
				c.runningAt = now
				if len(f) > 1 {
					c.childMs, _ = strconv.ParseInt(f[1], 10, 64)
				}
			}
		case "restore-start":
			c.restoreStarts++
		case "restored", "suspended":
			if f[0] == "restored" {
				c.restoreEnds++
			}
			if len(f) == 4 {
				n, _ := strconv.ParseInt(f[3], 10, 64)
				c.restored += n
			}
		case "armed":
			c.armed = true
		case "crashed":
			c.crashed = true
		case "stopped":
			c.stopped = true
		case "error":
			c.errLine = s
		}
	}
	c.mu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// snapshot is a copy of what the child reported so far.
type snapshot struct {
	runningAt     time.Time
	childMs       int64
	restoreStarts int
	restoreEnds   int
	restored      int64
	armed         bool
	crashed       bool
	stopped       bool
	errLine       string
	exited        bool
	waitErr       error
}

func (c *child) snap() snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := snapshot{runningAt: c.runningAt, childMs: c.childMs, restoreStarts: c.restoreStarts,
		restoreEnds: c.restoreEnds, restored: c.restored, armed: c.armed, crashed: c.crashed,
		stopped: c.stopped, errLine: c.errLine, waitErr: c.waitErr}
	select {
	case <-c.exited:
		s.exited = true
	default:
	}
	return s
}

// errChildExited: the child exited while the test waited for something else.
var errChildExited = errors.New("child exited")

// waitFor waits until cond holds on the child's reports, the child exits
// (errChildExited), or d passes or ctx ends (an error).
func (c *child) waitFor(ctx context.Context, d time.Duration, what string, cond func(snapshot) bool) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		s := c.snap()
		if cond(s) {
			return nil
		}
		if s.exited {
			return fmt.Errorf("%w while waiting for %s: %v", errChildExited, what, s.waitErr)
		}
		select {
		case <-c.notify:
		case <-c.exited:
		case <-timer.C:
			return fmt.Errorf("%s: no %s within %v", c.name, what, d)
		case <-ctx.Done():
			return fmt.Errorf("%s: waiting for %s: %w", c.name, what, ctx.Err())
		}
	}
}

// kill sends SIGKILL and reaps the process.
func (c *child) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.exited
}

// term sends SIGTERM and waits up to d for a clean exit.
func (c *child) term(d time.Duration) error {
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-c.exited:
	case <-time.After(d):
		c.kill()
		return fmt.Errorf("%s did not exit within %v of SIGTERM", c.name, d)
	}
	s := c.snap()
	if s.waitErr != nil || !s.stopped {
		return fmt.Errorf("%s: unclean exit after SIGTERM: %v (%s)", c.name, s.waitErr, s.errLine)
	}
	return nil
}

// report describes the child for a failure message: its last stdout lines
// and the tail of its log file.
func (c *child) report() string {
	c.mu.Lock()
	lines := strings.Join(c.lines, "\n  ")
	c.mu.Unlock()
	return fmt.Sprintf("%s stdout (last lines):\n  %s\n%s", c.name, lines, logTail(c.logPath, 60))
}

// logTail returns the last n lines of the log file.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("log %s: %v", path, err)
	}
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return fmt.Sprintf("log %s (last %d lines):\n  %s", path, len(ls), strings.Join(ls, "\n  "))
}
