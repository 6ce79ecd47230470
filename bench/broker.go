package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Import paths of the helper programs the harness builds and runs.
const (
	brokerPkg = "github.com/choreo-go/choreo/internal/testbroker/cmd/broker"
	loadPkg   = "github.com/choreo-go/choreo/bench/cmd/load"
)

// tools are the helper programs.
type tools struct {
	broker string
	load   string
}

// buildTools builds internal/testbroker/cmd/broker and bench/cmd/load into dir with the go command
// (the harness runs inside the module; the build cache makes this a link),
// with -race when this binary has it, so a race-built test reuses the
// packages its own build compiled.
func buildTools(ctx context.Context, dir string) (*tools, error) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("bench: the go command is needed to build the broker: %w", err)
	}
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, brokerPkg, loadPkg)
	out, err := exec.CommandContext(ctx, goCmd, args...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("bench: go build %s %s (run the harness inside the choreo module): %w\n%s",
			brokerPkg, loadPkg, err, out)
	}
	return &tools{broker: filepath.Join(dir, "broker"), load: filepath.Join(dir, "load")}, nil
}

// brokerProc is a running broker child process (internal/testbroker/cmd/broker).
type brokerProc struct {
	cmd   *exec.Cmd
	addrs []string
	pid   int
	done  chan struct{}
	err   error // Wait's result, set before done closes
	log   *tailBuffer
}

// startBroker starts the broker program with a data directory and waits until it
// prints its addresses.
func startBroker(ctx context.Context, t *tools, dataDir, cpuprofile string) (*brokerProc, error) {
	var args []string
	if dataDir != "" {
		args = append(args, "-data-dir", dataDir)
	}
	if cpuprofile != "" {
		args = append(args, "-cpuprofile", cpuprofile)
	}
	cmd := exec.Command(t.broker, args...)
	dieWithParent(cmd)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	logs := &tailBuffer{max: 16 << 10}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start broker: %w", err)
	}
	b := &brokerProc{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{}), log: logs}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		first := true
		for sc.Scan() {
			if first {
				lines <- sc.Text()
				first = false
			}
		}
		close(lines)
	}()
	go func() {
		b.err = cmd.Wait()
		close(b.done)
	}()
	timeout := time.NewTimer(time.Minute)
	defer timeout.Stop()
	select {
	case line, ok := <-lines:
		addrs, found := strings.CutPrefix(line, "LISTEN ")
		if !ok || !found {
			b.stop()
			return nil, fmt.Errorf("bench: broker did not start: %q %s", line, logs.String())
		}
		b.addrs = strings.Split(addrs, ",")
		return b, nil
	case <-ctx.Done():
		b.stop()
		return nil, ctx.Err()
	case <-timeout.C:
		b.stop()
		return nil, errors.New("bench: broker did not print its addresses within a minute")
	}
}

// cpu is the broker's CPU time so far (0 without a broker process: an
// external cluster).
func (b *brokerProc) cpu() time.Duration {
	if b == nil {
		return 0
	}
	return pidCPU(b.pid)
}

// stop sends SIGTERM and waits for the broker to exit (SIGKILL after 30 s).
func (b *brokerProc) stop() error {
	select {
	case <-b.done:
		return b.err
	default:
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case <-b.done:
		return b.err
	case <-t.C:
		_ = b.cmd.Process.Kill()
		<-b.done
		return fmt.Errorf("bench: broker did not stop on SIGTERM: %s", b.log.String())
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

var _ io.Writer = (*tailBuffer)(nil)
