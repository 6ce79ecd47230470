// Package outagetest runs choreo apps through broker outages: the
// standalone broker program (internal/testbroker/cmd/broker) killed with SIGKILL and restarted,
// in-process broker restarts, network cuts (internal/faultproxy) and
// retriable error codes injected by kfake. The tests are in outage_test.go;
// this file has the helper that builds and runs the broker program.
package outagetest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/choreo-go/choreo/internal/apptest"
	"github.com/choreo-go/choreo/internal/gobin"
)

const brokerPkg = "github.com/choreo-go/choreo/internal/testbroker/cmd/broker"

// BrokerBinary builds the broker program once per process and returns its
// path. RemoveBrokerBinary deletes it.
func BrokerBinary() (string, error) { return gobin.Build(brokerPkg, false) }

// RemoveBrokerBinary deletes the binary built by BrokerBinary (call it from
// TestMain after the tests ran).
func RemoveBrokerBinary() { gobin.Cleanup() }

// BrokerOptions configures a broker process.
type BrokerOptions struct {
	// Ports, one per broker; empty picks free ports (one broker).
	Ports []int
	// DataDir persists the cluster across kills; empty uses t.TempDir().
	DataDir string
	// MinSessionTimeout of groups (default 500 ms).
	MinSessionTimeout time.Duration
	// Configs are broker configs (key=value).
	Configs map[string]string
}

// BrokerProcess is the broker program running as a child process. It keeps
// its ports and data directory across Kill, Stop and Start.
type BrokerProcess struct {
	bin  string
	opts BrokerOptions

	mu     sync.Mutex
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	exited chan struct{}
	addrs  []string
	stderr *apptest.Buffer
}

// StartBroker builds the broker program (once) and starts it; the test's
// cleanup stops it.
func StartBroker(t testing.TB, opts BrokerOptions) *BrokerProcess {
	t.Helper()
	bin, err := BrokerBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(opts.Ports) == 0 {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		opts.Ports = []int{port}
	}
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	if opts.MinSessionTimeout <= 0 {
		opts.MinSessionTimeout = 500 * time.Millisecond
	}
	p := &BrokerProcess{bin: bin, opts: opts, stderr: &apptest.Buffer{}}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("stopping the broker process: %v", err)
		}
	})
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	return p
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Addrs are the brokers' host:port, stable across restarts.
func (p *BrokerProcess) Addrs() []string {
	out := make([]string, len(p.opts.Ports))
	for i, port := range p.opts.Ports {
		out[i] = "127.0.0.1:" + strconv.Itoa(port)
	}
	return out
}

// Pid of the running process, 0 if none.
func (p *BrokerProcess) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Stderr returns what the broker processes wrote on stderr so far.
func (p *BrokerProcess) Stderr() string { return p.stderr.String() }

// Start starts the process (again) on the same ports and data directory and
// waits until it prints "LISTEN". It fails if a process is already running.
func (p *BrokerProcess) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return errors.New("outagetest: broker already running")
	}
	ports := make([]string, len(p.opts.Ports))
	for i, port := range p.opts.Ports {
		ports[i] = strconv.Itoa(port)
	}
	args := []string{
		"-ports", strings.Join(ports, ","),
		"-data-dir", p.opts.DataDir,
		"-min-session-timeout", p.opts.MinSessionTimeout.String(),
		"-watch-stdin",
	}
	for k, v := range p.opts.Configs {
		args = append(args, "-config", k+"="+v)
	}
	cmd := exec.Command(p.bin, args...)
	cmd.Stderr = p.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("outagetest: start broker: %w", err)
	}
	ready := make(chan string, 1)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), "LISTEN "); ok {
				select {
				case ready <- line:
				default:
				}
			}
		}
	}()
	exited := make(chan struct{})
	go func() {
		<-readerDone // Wait closes stdout: read it all first
		_ = cmd.Wait()
		close(exited)
	}()
	p.cmd, p.stdin, p.exited = cmd, stdin, exited

	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case line := <-ready:
		p.addrs = strings.Split(line, ",")
		return nil
	case <-exited:
		p.cmd = nil
		return fmt.Errorf("outagetest: broker exited before listening (%v); stderr:\n%s", cmd.ProcessState, p.stderr.String())
	case <-timer.C:
		p.killLocked()
		return fmt.Errorf("outagetest: broker not listening after 30 s; stderr:\n%s", p.stderr.String())
	}
}

// Kill sends SIGKILL (a crash: nothing is flushed or saved on the way out)
// and waits for the process to be gone.
func (p *BrokerProcess) Kill() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return errors.New("outagetest: broker not running")
	}
	p.killLocked()
	return nil
}

func (p *BrokerProcess) killLocked() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	_ = p.stdin.Close()
	p.cmd = nil
}

// Stop sends SIGTERM (a clean shutdown that persists the cluster) and waits
// up to 20 s before killing. Stopping a stopped broker does nothing.
func (p *BrokerProcess) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(20 * time.Second)
	defer timer.Stop()
	select {
	case <-p.exited:
		_ = p.stdin.Close()
		state := p.cmd.ProcessState
		p.cmd = nil
		if !state.Success() {
			return fmt.Errorf("outagetest: broker exited with %v; stderr:\n%s", state, p.stderr.String())
		}
		return nil
	case <-timer.C:
		p.killLocked()
		return errors.New("outagetest: broker ignored SIGTERM for 20 s; killed")
	}
}

// Restart starts the broker again after Kill or Stop.
func (p *BrokerProcess) Restart() error { return p.Start() }
