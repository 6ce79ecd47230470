//go:build unix

package crashtest

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func TestDbgTopics(t *testing.T) {
	ctx := context.Background()
	e := newEnv(ctx, t, "count", "at-least-once")
	go produceSeq(ctx, e.cl, 0, 5000, 0, new(atomic.Int64))
	c := e.start()
	if err := c.waitFor(ctx, time.Minute, "running", func(s snapshot) bool { return !s.runningAt.IsZero() }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	c.kill()
	n, desc, err := restoreTail(ctx, e.brokers, e.adm, e.stateDir, e.app)
	t.Log(n, desc, err)
	topics, err := changelogTopics(ctx, e.adm, e.app)
	t.Log(topics, err)
	cps, err := readCheckpoints(e.stateDir, e.app)
	t.Log(cps, err)
}
