// Package gobin builds the module's helper programs (a standalone broker, a
// crash-test child) once per process, for tests that run them as real
// processes.
package gobin

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sync"
)

type key struct {
	pkg  string
	race bool
}

type result struct {
	once sync.Once
	path string
	err  error
}

var (
	mu    sync.Mutex
	built = map[key]*result{}
	dirs  []string
)

// Build compiles pkg (an import path or a ./relative path) with the go tool
// into a temporary directory, once per process for each (pkg, race), and
// returns the binary's path. race adds -race. Cleanup removes the binaries.
func Build(pkg string, race bool) (string, error) {
	mu.Lock()
	r := built[key{pkg, race}]
	if r == nil {
		r = &result{}
		built[key{pkg, race}] = r
	}
	mu.Unlock()
	r.once.Do(func() {
		gobin, err := exec.LookPath("go")
		if err != nil {
			r.err = fmt.Errorf("gobin: no go tool to build %s: %w", pkg, err)
			return
		}
		dir, err := os.MkdirTemp("", "choreo-bin-")
		if err != nil {
			r.err = err
			return
		}
		mu.Lock()
		dirs = append(dirs, dir)
		mu.Unlock()
		out := filepath.Join(dir, path.Base(pkg))
		args := []string{"build", "-o", out}
		if race {
			args = append(args, "-race")
		}
		cmd := exec.Command(gobin, append(args, pkg)...)
		if b, err := cmd.CombinedOutput(); err != nil {
			r.err = fmt.Errorf("gobin: go build %s: %w\n%s", pkg, err, b)
			return
		}
		r.path = out
	})
	return r.path, r.err
}

// Cleanup removes every binary Build made (call it from TestMain).
func Cleanup() {
	mu.Lock()
	defer mu.Unlock()
	for _, d := range dirs {
		_ = os.RemoveAll(d)
	}
	dirs = nil
	built = map[key]*result{}
}
