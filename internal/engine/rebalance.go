package engine

import (
	"context"
	"fmt"
	"os"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/changelog"
	"github.com/choreo-go/choreo/partition"
	"github.com/choreo-go/choreo/state"
)

// tasksOf groups assigned topic partitions into tasks.
func (e *Engine) tasksOf(parts map[string][]int32) []partition.TaskID {
	seen := make(map[partition.TaskID]bool)
	var ids []partition.TaskID
	for topic, ps := range parts {
		s := e.topicSub[topic]
		if s == nil {
			continue
		}
		for _, p := range ps {
			id := partition.TaskID{Subtopology: s.id, Partition: p}
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	}
	slices.SortFunc(ids, partition.Compare)
	return ids
}

// onAssigned opens the new tasks and starts restoring them; their input
// partitions stay paused until the restore completes.
func (e *Engine) onAssigned(_ context.Context, cl *kgo.Client, assigned map[string][]int32) {
	if e.detached.Load() {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lc.brokerOK()
	e.assigned.Store(true)
	e.everAssigned = true
	pause := make(map[string][]int32)
	for _, id := range e.tasksOf(assigned) {
		if _, ok := e.tasks[id]; ok {
			continue
		}
		t, err := e.openTask(id)
		if err != nil {
			e.setFatal(err)
			return
		}
		e.tasks[id] = t
		e.met.tasksChanged(taskAssigned, 1)
		e.query.opened(id, t.db)
		delete(e.unownedSince, id)
		for _, q := range t.queues {
			if e.byTP[q.topic] == nil {
				e.byTP[q.topic] = make(map[int32]*task)
			}
			e.byTP[q.topic][q.partition] = t
			pause[q.topic] = append(pause[q.topic], q.partition)
		}
		// The restore starts once franz-go has fetched the group's
		// committed offsets (adjustFetchOffsets): that fetch waits for
		// pending transactions to settle, so the changelogs' last stable
		// offsets are final by then.
		e.cpMu.Lock()
		for _, q := range t.queues {
			if e.awaitingOffsets[q.topic] == nil {
				e.awaitingOffsets[q.topic] = make(map[int32]*task)
			}
			e.awaitingOffsets[q.topic][q.partition] = t
		}
		e.cpMu.Unlock()
	}
	if len(pause) > 0 {
		// The callback's client: e.consumer may not be set yet when the
		// first assignment arrives.
		cl.PauseFetchPartitions(pause)
	}
	e.lc.set(Rebalancing)
}

func (e *Engine) openTask(id partition.TaskID) (*task, error) {
	s := e.subs[id.Subtopology]
	t := &task{
		e:          e,
		id:         id,
		name:       id.String(),
		sub:        s,
		phase:      phaseRestoring,
		stores:     make(map[string]*storeHandle),
		byTopic:    make(map[string]*partQueue),
		streamTime: -1,
		log:        e.log.With("task", id.String()),
	}
	for _, topic := range s.topics {
		if id.Partition >= e.partitions[topic] {
			continue // a topic of the sub-topology with fewer partitions
		}
		q := &partQueue{topic: topic, partition: id.Partition, next: -1, committed: -1, lso: -1, leaderEpoch: -1}
		t.queues = append(t.queues, q)
		t.byTopic[topic] = q
	}
	var err error
	if e.cfg.InMemoryState {
		t.db = state.NewMemory()
	} else {
		dir := e.taskDir(id)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("task %s: state dir: %w", id, err)
		}
		t.db, err = e.env.Open(dir)
		if err != nil {
			return nil, fmt.Errorf("task %s: open store: %w", id, err)
		}
	}
	t.batch = state.NewBatch(t.db)
	cp, ok, err := t.db.Checkpoint()
	if err != nil {
		return nil, fmt.Errorf("task %s: read checkpoint: %w", id, err)
	}
	if ok {
		e.cpMu.Lock()
		for _, q := range t.queues {
			if off, ok := cp.Inputs[e.inputKey(q.topic, q.partition)]; ok {
				if e.cpInputs[q.topic] == nil {
					e.cpInputs[q.topic] = make(map[int32]int64)
				}
				e.cpInputs[q.topic][q.partition] = off
			}
		}
		e.cpMu.Unlock()
	}
	for _, name := range s.stores {
		t.stores[name] = &storeHandle{t: t, name: name}
	}
	return t, nil
}

func (e *Engine) startRestore(t *task) {
	var stores []changelog.StoreChangelog
	for _, name := range t.sub.stores {
		if topic, ok := e.changelogs[name]; ok {
			stores = append(stores, changelog.StoreChangelog{Store: name, Topic: topic, Partition: t.id.Partition})
		}
	}
	e.restorer.Add(changelog.Request{
		Task:   t.name,
		DB:     t.db,
		Stores: stores,
		Done: func(res changelog.Result) {
			e.restoreMu.Lock()
			e.restored = append(e.restored, restoreDone{t: t, err: res.Err})
			e.restoreMu.Unlock()
			e.wakeLoop()
		},
	})
}

// activateRestored turns restored tasks into active ones: instantiate the
// processors, position the input, resume fetching.
func (e *Engine) activateRestored() error {
	e.restoreMu.Lock()
	done := e.restored
	e.restored = nil
	e.restoreMu.Unlock()
	if len(done) == 0 {
		return nil
	}
	resume := make(map[string][]int32)
	for _, d := range done {
		t := d.t
		if e.tasks[t.id] != t || t.phase != phaseRestoring {
			continue // revoked while restoring (maybe reassigned since: a new task)
		}
		if d.err != nil {
			return fmt.Errorf("task %s: restore: %w", t.name, d.err)
		}
		cp, _, err := t.db.Checkpoint()
		if err != nil {
			return fmt.Errorf("task %s: read checkpoint: %w", t.name, err)
		}
		t.cp = cp
		if err := t.instantiate(); err != nil {
			return err
		}
		e.cpMu.Lock()
		for _, q := range t.queues {
			resume[q.topic] = append(resume[q.topic], q.partition)
			if pos, ok := e.startPos[q.topic][q.partition]; ok && q.next < 0 {
				q.next, q.committed = pos[0], pos[1]
				q.fromStart = q.next < 0
				// Resumed ahead of the group's offset: commit that
				// position even if no new input arrives.
				q.dirty = q.next > q.committed
			}
			delete(e.startPos[q.topic], q.partition)
		}
		e.cpMu.Unlock()
		t.phase = phaseActive
		e.query.activated(t.id)
		t.log.Debug("task running")
	}
	if len(resume) > 0 {
		e.consumer.ResumeFetchPartitions(resume)
	}
	return nil
}

// adjustFetchOffsets starts a partition at the task's checkpointed input
// offset when the store is ahead of the group's committed offset (a crash
// between the store commit and the offset commit), so a local restart does
// not apply input twice. franz-go calls it after onAssigned, before fetching.
func (e *Engine) adjustFetchOffsets(_ context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	e.cpMu.Lock()
	defer e.cpMu.Unlock()
	for topic, parts := range offsets {
		for p, o := range parts {
			if t := e.awaitingOffsets[topic][p]; t != nil {
				for _, q := range t.queues {
					delete(e.awaitingOffsets[q.topic], q.partition)
				}
				e.startRestore(t)
			}
			start := o.EpochOffset().Offset
			committed := max(start, -1)
			if cp, ok := e.cpInputs[topic][p]; ok {
				delete(e.cpInputs[topic], p)
				if cp > start {
					e.log.Info("resuming from the local checkpoint, ahead of the committed offset",
						"topic", topic, "partition", p, "checkpoint", cp, "committed", start)
					parts[p] = kgo.NewOffset().At(cp).WithEpoch(-1)
					start = cp
				}
			}
			if e.startPos[topic] == nil {
				e.startPos[topic] = make(map[int32][2]int64)
			}
			e.startPos[topic][p] = [2]int64{max(start, -1), committed}
		}
	}
	return offsets, nil
}

// onRevoked commits the work of every task (so the new owners start exactly
// where this instance stopped), then closes the revoked ones.
func (e *Engine) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	if e.detached.Load() || len(revoked) == 0 {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lc.set(Rebalancing)
	e.met.tasksChanged(taskRevoked, len(e.tasksOf(revoked)))
	if e.session != nil {
		// The session aborts the open transaction: nothing of it may
		// reach the stores. The revoked tasks close; the loop drops the
		// others' pending work when it ends the doomed transaction.
		e.txnDoomed = true
		for _, id := range e.tasksOf(revoked) {
			e.closeTask(id, false)
		}
		return
	}
	if e.fatal == nil {
		if err := e.commit(context.WithoutCancel(ctx)); err != nil {
			e.log.Error("commit on revocation failed", "err", err)
			e.setFatal(err)
		}
	}
	for _, id := range e.tasksOf(revoked) {
		e.closeTask(id, true)
	}
}

// onLost drops the lost tasks' uncommitted work: another member owns them now.
func (e *Engine) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	if e.detached.Load() {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.assigned.Store(false) // until the group assigns again
	e.lc.set(Rebalancing)
	if e.session != nil {
		e.txnDoomed = true
	}
	e.met.tasksChanged(taskLost, len(e.tasksOf(lost)))
	for _, id := range e.tasksOf(lost) {
		e.log.Warn("partitions lost; dropping uncommitted work", "task", id.String())
		e.closeTask(id, false)
	}
}

// closeTask stops a task. Uncommitted writes are dropped; the caller commits first when it should.
func (e *Engine) closeTask(id partition.TaskID, clean bool) {
	t := e.tasks[id]
	if t == nil {
		return
	}
	if t.phase == phaseRestoring {
		<-e.restorer.Remove(t.name)
	}
	t.phase = phaseClosed
	e.query.closed(id)
	t.closeInstances()
	t.batch.Discard()
	if err := t.db.Close(); err != nil {
		t.log.Warn("closing store", "err", err)
	}
	e.unownedSince[id] = e.cfg.Now() // the cleanup delay counts from here
	delete(e.tasks, id)
	e.cpMu.Lock()
	for _, q := range t.queues {
		delete(e.byTP[q.topic], q.partition)
		if e.awaitingOffsets[q.topic][q.partition] == t {
			delete(e.awaitingOffsets[q.topic], q.partition)
		}
		delete(e.cpInputs[q.topic], q.partition)
	}
	e.cpMu.Unlock()
	t.log.Debug("task closed", "clean", clean)
}

func (e *Engine) setFatal(err error) {
	if e.fatal == nil {
		e.fatal = err
	}
	e.wakeLoop()
}
