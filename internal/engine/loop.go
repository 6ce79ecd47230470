package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sync/errgroup"

	"github.com/choreo-go/choreo/partition"
)

// processBudget bounds how many records one task processes before the loop
// moves to the next, so tasks share the loop fairly.
const processBudget = 500

// loop polls, processes and commits until ctx is cancelled or a fatal error.
func (e *Engine) loop(ctx context.Context) error {
	// Commits inside the loop wait out outages, but not a stop: they give
	// up CloseTimeout after ctx ends, as the final commit does, so Run
	// returns (ErrCloseTimeout) even when a commit was blocked.
	commitCtx, cancelCommits := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelCommits()
	stopWatch := context.AfterFunc(ctx, func() { time.AfterFunc(e.cfg.CloseTimeout, cancelCommits) })
	defer stopWatch()
	for {
		timeout := e.pollTimeout()
		pctx, cancel := context.WithTimeout(ctx, timeout)
		e.wake.Store(&cancel)
		fetches := e.consumer.PollRecords(pctx, e.cfg.MaxPollRecords)
		e.wake.Store(nil)
		cancel()

		e.mu.Lock()
		err := e.iterate(ctx, commitCtx, fetches)
		stopping := ctx.Err() != nil
		if err == nil && stopping && !e.cfg.crashOnClose {
			// The final commit runs while rebalances are still blocked,
			// so no callback can interleave with it. During an outage it
			// gives up after CloseTimeout: under at-least-once the work is
			// processed again after a restart, under exactly-once the
			// open transaction aborts.
			cctx, cancel := context.WithTimeout(context.Background(), e.cfg.CloseTimeout)
			err = e.commit(cctx)
			cancel()
		}
		e.consumer.AllowRebalance()
		e.mu.Unlock()
		if err != nil {
			return err
		}
		if stopping {
			return nil
		}
	}
}

// wakeLoop interrupts a blocked poll (a restore finished).
func (e *Engine) wakeLoop() {
	if c := e.wake.Load(); c != nil {
		(*c)()
	}
}

func (e *Engine) iterate(ctx, commitCtx context.Context, fetches kgo.Fetches) error {
	if e.fatal != nil {
		return e.fatal
	}
	if err := e.credentialsRefused(); err != nil {
		return err
	}
	if e.txnDoomed {
		if err := e.commit(commitCtx); err != nil {
			return err
		}
	}
	if err := e.fetchErrors(fetches); err != nil {
		return err
	}
	if err := e.activateRestored(); err != nil {
		return err
	}
	e.distribute(fetches)
	e.applyProbe()
	now := e.cfg.Now()
	for {
		total, err := e.processRound(now)
		if err != nil {
			return err
		}
		if total == 0 {
			break
		}
		if e.queuedRecords() < e.cfg.MaxPollRecords {
			// Take what the consumer has buffered before the queues run
			// dry: franz-go sends the next fetch only once the buffered
			// one is drained, so polling only after the last queued record
			// would leave the tasks idle for a whole fetch round trip
			// (most of a repartitioning topology's time, as traces of the
			// bench's W4 showed).
			e.topUp = true
			break
		}
		if e.commitNeeded() {
			if err := e.commit(commitCtx); err != nil {
				return err
			}
		}
	}
	for _, t := range e.tasks {
		if t.phase == phaseActive {
			if err := t.punctuateWall(now); err != nil {
				return err
			}
		}
	}
	if now.Sub(e.lastCommit) >= e.cfg.CommitInterval || e.commitNeeded() {
		if err := e.commit(commitCtx); err != nil {
			return err
		}
	}
	e.maybeProbe(ctx, now)
	e.updateState()
	e.met.publish(e)
	e.cleanStateDirs(now)
	return nil
}

// processRound gives every active task up to processBudget records, on
// the loop goroutine or, with ProcessingThreads > 1, on that many
// goroutines at once (tasks share nothing but the thread-safe producer and
// counters), and returns how many records were processed.
func (e *Engine) processRound(now time.Time) (int, error) {
	active := e.roundTasks[:0]
	for _, t := range e.tasks {
		if t.phase == phaseActive {
			active = append(active, t)
		}
	}
	e.roundTasks = active
	run := func(t *task) (int, error) {
		start := time.Now()
		n, err := t.process(processBudget, now)
		e.met.processedRecords(t, n, time.Since(start))
		return n, err
	}
	if e.cfg.ProcessingThreads <= 1 || len(active) <= 1 {
		total := 0
		for _, t := range active {
			n, err := run(t)
			total += n
			if err != nil {
				return total, err
			}
		}
		return total, nil
	}
	var total atomic.Int64
	var g errgroup.Group
	g.SetLimit(e.cfg.ProcessingThreads)
	for _, t := range active {
		g.Go(func() error {
			n, err := run(t)
			total.Add(int64(n))
			return err
		})
	}
	err := g.Wait()
	return int(total.Load()), err
}

// maybeProbe lists the last stable offsets (and, for partitions the group
// has no offset for, the log start) of empty partitions whose lag is not
// known, so tasks learn whether they must wait for them. franz-go delivers
// no fetch for a partition that has nothing, so without this an empty
// partition's state would stay unknown.
func (e *Engine) maybeProbe(ctx context.Context, now time.Time) {
	if e.probing || now.Sub(e.lastProbe) < 100*time.Millisecond {
		return
	}
	topics := map[string]bool{}
	for _, t := range e.tasks {
		if t.phase != phaseActive || !t.needProbe {
			continue
		}
		t.needProbe = false
		for _, q := range t.queues {
			if q.empty() && !q.lagKnown() {
				topics[q.topic] = true
			}
		}
	}
	if len(topics) == 0 {
		return
	}
	var names []string
	for tp := range topics {
		names = append(names, tp)
	}
	e.probing, e.lastProbe = true, now
	go func() {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		res := probeResult{ends: map[string]map[int32]int64{}, starts: map[string]map[int32]int64{}}
		collect := func(into map[string]map[int32]int64, l kadm.ListedOffsets, err error) {
			if err != nil {
				return
			}
			l.Each(func(o kadm.ListedOffset) {
				if o.Err != nil {
					return
				}
				if into[o.Topic] == nil {
					into[o.Topic] = map[int32]int64{}
				}
				into[o.Topic][o.Partition] = o.Offset
			})
		}
		ends, err := e.adm.ListCommittedOffsets(pctx, names...)
		collect(res.ends, ends, err)
		starts, err := e.adm.ListStartOffsets(pctx, names...)
		collect(res.starts, starts, err)
		e.probeMu.Lock()
		e.probeRes = &res
		e.probeMu.Unlock()
		e.wakeLoop()
	}()
}

type probeResult struct {
	ends, starts map[string]map[int32]int64
}

func (e *Engine) applyProbe() {
	e.probeMu.Lock()
	res := e.probeRes
	e.probeRes = nil
	e.probeMu.Unlock()
	if res == nil {
		return
	}
	e.probing = false
	for _, t := range e.tasks {
		if t.phase != phaseActive {
			continue
		}
		for _, q := range t.queues {
			if q.next < 0 && q.fromStart {
				if start, ok := res.starts[q.topic][q.partition]; ok {
					q.next = start
				}
			}
			if end, ok := res.ends[q.topic][q.partition]; ok && end > q.lso {
				q.lso = end
			}
		}
	}
}

func (e *Engine) fetchErrors(fetches kgo.Fetches) error {
	var firstFatal error
	fetches.EachError(func(topic string, p int32, err error) {
		switch {
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		case errors.Is(err, kgo.ErrClientClosed):
			firstFatal = err
		case isGroupSession(err):
			// franz-go reports a failed join/heartbeat here and rejoins
			// by itself (the partitions were already handed to onLost).
			// Only a fenced static instance or a denied group is final.
			if errors.Is(err, kerr.FencedInstanceID) || isAuthError(err) {
				if firstFatal == nil {
					firstFatal = fmt.Errorf("group membership: %w", e.denied(err, kmsg.ACLResourceTypeGroup, e.cfg.AppID, kmsg.ACLOperationRead, "join group"))
				}
				return
			}
			e.log.Warn("group session interrupted; rejoining", "err", err)
			e.assigned.Store(false)
			e.lc.set(Rebalancing)
		case isDataLoss(err):
			// The broker lost records we had not read (or a topic was
			// recreated); franz-go resets and goes on. Nothing to redo
			// here, but it must be visible.
			e.log.Error("data loss on an input partition; continuing from the reset offset", "topic", topic, "partition", p, "err", err)
		case isRetriable(err):
			e.log.Warn("fetch", "topic", topic, "partition", p, "err", err)
		default:
			e.log.Error("fetch failed", "topic", topic, "partition", p, "err", err)
			if firstFatal == nil {
				firstFatal = fmt.Errorf("fetch %s/%d: %w", topic, p, e.denied(err, kmsg.ACLResourceTypeTopic, topic, kmsg.ACLOperationRead, "fetch"))
			}
		}
	})
	return firstFatal
}

// distribute appends fetched records to their tasks' partition queues.
func (e *Engine) distribute(fetches kgo.Fetches) {
	got := false
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if p.Err != nil {
			return
		}
		got = true
		t := e.byTP[p.Topic][p.Partition]
		if t == nil || t.phase == phaseClosed {
			return // revoked meanwhile: the new owner reads it from the committed offset
		}
		q := t.byTopic[p.Topic]
		if q == nil {
			return
		}
		lso := p.LastStableOffset
		if lso < 0 {
			lso = p.HighWatermark
		}
		q.lso = max(q.lso, lso)
		q.recs = append(q.recs, p.Records...)
		e.met.consumedRecords(t, p.Topic, p.Records)
	})
	if got {
		e.lc.brokerOK()
	}
}

// queuedRecords counts the fetched records the active tasks have not
// processed yet.
func (e *Engine) queuedRecords() int {
	n := 0
	for _, t := range e.tasks {
		if t.phase == phaseActive {
			for _, q := range t.queues {
				n += len(q.recs) - q.head
			}
		}
	}
	return n
}

func (e *Engine) commitNeeded() bool {
	recs, bytes := 0, 0
	for _, t := range e.tasks {
		if t.phase == phaseActive {
			recs += t.batch.Len()
			bytes += t.batch.Bytes()
		}
	}
	return recs >= e.cfg.CommitMaxRecords || bytes >= e.cfg.CommitMaxBytes
}

// pollTimeout is how long the next poll may block.
func (e *Engine) pollTimeout() time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.cfg.Now()
	d := e.cfg.CommitInterval - now.Sub(e.lastCommit)
	for _, t := range e.tasks {
		if t.phase != phaseActive {
			continue
		}
		if !t.blockedSince.IsZero() {
			// Waiting for a partition: look again soon (a probe result
			// or the idle deadline ends the wait).
			d = min(d, 20*time.Millisecond)
		}
		if at, ok := t.nextWallPunctuation(); ok {
			d = min(d, at.Sub(now))
		}
	}
	if e.topUp {
		// Records are still queued: only take what is buffered.
		e.topUp = false
		d = 0
	}
	e.restoreMu.Lock()
	if len(e.restored) > 0 {
		d = 0
	}
	e.restoreMu.Unlock()
	return max(min(d, time.Second), time.Millisecond)
}

func (e *Engine) updateState() {
	if !e.assigned.Load() || e.awaitingTasks() {
		e.lc.set(Rebalancing)
		return // not (re)joined yet, or the new tasks not handed over yet
	}
	for _, t := range e.tasks {
		if t.phase == phaseRestoring {
			e.lc.set(Rebalancing)
			return
		}
	}
	e.lc.set(Running)
}

// cleanStateDirs removes the directories of tasks this instance has not
// owned for StateCleanupDelay.
func (e *Engine) cleanStateDirs(now time.Time) {
	if e.cfg.InMemoryState || !e.everAssigned || now.Sub(e.lastClean) < min(time.Minute, e.cfg.StateCleanupDelay) {
		return
	}
	e.lastClean = now
	entries, err := os.ReadDir(e.appDir())
	if err != nil {
		return
	}
	for _, ent := range entries {
		if !ent.IsDir() {
			continue
		}
		id, err := partition.ParseTaskID(ent.Name())
		if err != nil {
			continue
		}
		if _, owned := e.tasks[id]; owned {
			continue
		}
		// The delay counts from when this process last owned the task,
		// or from its start for state found on disk.
		since, ok := e.unownedSince[id]
		if !ok {
			since = e.startedAt
			e.unownedSince[id] = since
		}
		if now.Sub(since) < e.cfg.StateCleanupDelay {
			continue
		}
		dir := filepath.Join(e.appDir(), ent.Name())
		if err := os.RemoveAll(dir); err != nil {
			e.log.Warn("removing state of an unowned task", "task", ent.Name(), "err", err)
			continue
		}
		delete(e.unownedSince, id)
		e.log.Info("removed state of an unowned task", "task", ent.Name())
	}
}

func isDataLoss(err error) bool {
	var dl *kgo.ErrDataLoss
	return errors.As(err, &dl)
}

func isGroupSession(err error) bool {
	var gs *kgo.ErrGroupSession
	return errors.As(err, &gs)
}
