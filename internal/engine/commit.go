package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sync/errgroup"

	"github.com/choreo-go/choreo/state"
)

// commit commits the work of every active task; see doc.go. ctx bounds the
// wait for brokers: the loop passes one that never ends (an outage stalls
// the commit, it does not fail it); the final commit on Close passes one
// that ends after CloseTimeout.
func (e *Engine) commit(ctx context.Context) error {
	if e.session != nil {
		return e.commitTxn(ctx)
	}
	return e.commitALOS(ctx)
}

// commitALOS runs the at-least-once commit protocol:
//
//  1. produce each task's dirty store entries to its changelog partitions;
//  2. flush the producer (changelog, repartition and sink records);
//  3. apply each task's store batch together with a checkpoint holding the
//     changelog offsets just written and the input offsets processed;
//  4. commit the input offsets to the group.
//
// A crash between any two steps is safe: before 3 the store and the group
// both still point before the batch; between 3 and 4 the store is ahead of
// the group, and a local restart resumes from the store's input offsets.
func (e *Engine) commitALOS(ctx context.Context) error {
	start := time.Now()
	e.lastCommit = e.cfg.Now()
	active := e.tasksWithWork()
	if len(active) == 0 {
		return nil
	}
	n := e.produceChangelogs(active)
	if err := e.flush(ctx); err != nil {
		return err
	}
	if err := e.takeProduceError(); err != nil {
		return err
	}
	if CrashPoint(e.crashAt.Load()) == CrashAfterFlush {
		return errTestCrash
	}
	offsets, err := e.applyBatches(active)
	if err != nil {
		return err
	}
	if CrashPoint(e.crashAt.Load()) == CrashAfterStoreCommit {
		return errTestCrash
	}
	if len(offsets) > 0 {
		ok, err := e.commitOffsets(ctx, offsets)
		if err != nil {
			return err
		}
		if ok {
			e.purgeRepartitions(ctx, offsets)
		}
	}
	e.met.commitDone(true, time.Since(start))
	e.log.Debug("committed", "tasks", len(active), "changelog_records", n, "took", time.Since(start))
	return nil
}

// commitTxn runs the exactly-once commit: the open transaction holds the
// outputs of every processed record; add the changelog records, end it
// (franz-go's session commits the consumed offsets in it), and only when it
// committed apply the store batches with their checkpoints. If it aborted
// (a rebalance doomed it) every task drops its pending work and the
// consumer rewinds to the committed offsets. If its outcome is unknown, or
// the producer was fenced, the group member is recreated: tasks reopen and
// replay their changelog tails, read committed, from their checkpoints.
func (e *Engine) commitTxn(ctx context.Context) error {
	start := time.Now()
	e.lastCommit = e.cfg.Now()
	doomed := e.txnDoomed
	active := e.tasksWithWork()
	if len(active) == 0 && !doomed {
		return nil
	}
	n := 0
	if !doomed {
		n = e.produceChangelogs(active)
	}
	perr := e.takeProduceError()
	try := kgo.TryCommit
	if doomed || perr != nil {
		try = kgo.TryAbort
	}
	// franz-go's session would commit the consumer's polled positions;
	// records polled but not processed yet (a task waiting for another
	// partition) must not be committed, so the request carries the
	// processed positions instead.
	offsets := e.processedOffsets(active)
	tctx := kgo.PreTxnCommitFnContext(ctx, func(req *kmsg.TxnOffsetCommitRequest) error {
		req.Topics = req.Topics[:0]
		for topic, parts := range offsets {
			rt := kmsg.NewTxnOffsetCommitRequestTopic()
			rt.Topic = topic
			for p, eo := range parts {
				rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
				rp.Partition = p
				rp.Offset = eo.Offset
				rp.LeaderEpoch = eo.Epoch
				rp.Metadata = &req.MemberID
				rt.Partitions = append(rt.Partitions, rp)
			}
			req.Topics = append(req.Topics, rt)
		}
		return nil
	})
	// The broker aborts a transaction TransactionTimeout after it began,
	// so an End still blocked after twice that cannot commit any more:
	// give up and recover through a new session (resetGroupMember) rather
	// than wait on a broker that may retry the request forever.
	bound := 2 * e.cfg.TransactionTimeout
	ectx, cancel := context.WithTimeout(tctx, bound)
	done := e.lc.watch()
	committed, err := e.session.End(ectx, try)
	done()
	cancel()
	if ctx.Err() != nil {
		return fmt.Errorf("%w: transaction left to abort", ErrCloseTimeout)
	}
	if err != nil && ectx.Err() != nil {
		err = fmt.Errorf("transaction did not end within %v (twice the transaction timeout): %w", bound, err)
	}
	e.txnDoomed = false
	if err != nil {
		return e.resetGroupMember(err)
	}
	if perr != nil {
		return perr
	}
	if committed {
		if CrashPoint(e.crashAt.Load()) == CrashAfterFlush {
			return errTestCrash
		}
		if _, err := e.applyBatches(active); err != nil {
			return err
		}
		for _, t := range active {
			for _, q := range t.queues {
				if q.next >= 0 {
					q.committed = q.next
				}
			}
		}
		if CrashPoint(e.crashAt.Load()) == CrashAfterStoreCommit {
			return errTestCrash
		}
		e.lc.brokerOK()
	} else {
		// franz-go rewound to what it believes committed; rewind to
		// what really is, and drop everything since.
		e.log.Info("transaction aborted after a rebalance; pending work dropped", "tasks", len(active))
		rewind := make(map[string]map[int32]kgo.EpochOffset)
		for _, t := range e.tasks {
			if t.phase != phaseActive {
				continue
			}
			t.dropPending()
			for _, q := range t.queues {
				if rewind[q.topic] == nil {
					rewind[q.topic] = make(map[int32]kgo.EpochOffset)
				}
				// Unknown: the group has no offset; 0 resets to the log start.
				rewind[q.topic][q.partition] = kgo.EpochOffset{Epoch: -1, Offset: max(q.committed, 0)}
			}
		}
		e.consumer.SetOffsets(rewind)
	}
	if err := e.session.Begin(); err != nil {
		return e.resetGroupMember(err)
	}
	e.met.commitDone(committed, time.Since(start))
	e.log.Debug("transaction ended", "committed", committed, "tasks", len(active), "changelog_records", n, "took", time.Since(start))
	return nil
}

// processedOffsets is the next offset to process of every input partition of
// the given tasks that moved since the last commit.
func (e *Engine) processedOffsets(active []*task) map[string]map[int32]kgo.EpochOffset {
	offsets := make(map[string]map[int32]kgo.EpochOffset)
	for _, t := range active {
		for _, q := range t.queues {
			if q.next < 0 || !q.dirty {
				continue
			}
			if offsets[q.topic] == nil {
				offsets[q.topic] = make(map[int32]kgo.EpochOffset)
			}
			offsets[q.topic][q.partition] = kgo.EpochOffset{Epoch: q.leaderEpoch, Offset: q.next}
		}
	}
	return offsets
}

// resetGroupMember recovers from a transaction whose outcome is unknown or
// whose producer was fenced (an outage longer than the transaction
// timeout): drop every task's pending work, close the session, and join
// again with a new one under the same transactional id. The new assignment
// reopens the tasks, which replay only their changelog tails.
func (e *Engine) resetGroupMember(cause error) error {
	if isAuthError(cause) {
		return fmt.Errorf("transaction: %w", e.denied(cause, kmsg.ACLResourceTypeTransactionalId, e.transactionalID(), kmsg.ACLOperationWrite, "end transaction"))
	}
	e.log.Warn("transaction failed; dropping pending work and rejoining with a new producer session", "err", cause)
	e.detached.Store(true)
	for id := range e.tasks {
		e.closeTask(id, false)
	}
	e.session.CloseAllowingRebalance()
	e.detached.Store(false)
	e.session = nil
	for attempt := 0; ; attempt++ {
		err := e.openGroupClients()
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrInvalidConfig) || attempt > 100 {
			return err
		}
		e.log.Warn("recreating the transactional session", "err", err)
		time.Sleep(backoff(attempt))
	}
}

func (e *Engine) tasksWithWork() []*task {
	var active []*task
	for _, t := range e.tasks {
		if t.phase != phaseActive {
			continue
		}
		work := t.pending > 0 || t.batch.Len() > 0
		for _, q := range t.queues {
			work = work || q.dirty // an offset commit that failed is retried
		}
		if work {
			active = append(active, t)
		}
	}
	return active
}

// produceChangelogs sends the latest value of every dirty key of each task
// to its changelog partition.
func (e *Engine) produceChangelogs(active []*task) int {
	n := 0
	for _, t := range active {
		_ = t.batch.ForEach(func(m state.Mutation) error {
			topic, ok := e.changelogs[m.Store]
			if !ok {
				return nil
			}
			var v []byte
			if !m.Deleted {
				v = m.Value
				if v == nil {
					v = []byte{} // an empty value is not a tombstone
				}
			}
			e.produce(&kgo.Record{Topic: topic, Partition: t.id.Partition, Key: m.Key, Value: v}, e.changelogPromise)
			n++
			return nil
		})
	}
	return n
}

func (e *Engine) takeProduceError() error {
	e.prodMu.Lock()
	defer e.prodMu.Unlock()
	err := e.prodErr
	e.prodErr = nil
	return err
}

// applyBatches writes each task's batch with its new checkpoint and returns
// the input offsets to commit.
func (e *Engine) applyBatches(active []*task) (map[string]map[int32]kgo.EpochOffset, error) {
	offsets := make(map[string]map[int32]kgo.EpochOffset)
	now := e.cfg.Now()
	for _, t := range active {
		cp := state.Checkpoint{
			Changelogs: make(map[string]state.ChangelogPosition, len(t.sub.stores)),
			Inputs:     make(map[string]int64, len(t.queues)),
			Written:    now,
		}
		for _, name := range t.sub.stores {
			topic, ok := e.changelogs[name]
			if !ok {
				continue
			}
			pos := t.cp.Changelogs[name]
			e.prodMu.Lock()
			if off, ok := e.clOffsets[topic][t.id.Partition]; ok && off > pos.Offset {
				pos.Offset = off
			}
			e.prodMu.Unlock()
			pos.TopicID = e.topicIDs[topic]
			cp.Changelogs[name] = pos
		}
		for k, v := range t.cp.Inputs {
			cp.Inputs[k] = v
		}
		for _, q := range t.queues {
			if q.next < 0 {
				continue
			}
			cp.Inputs[e.inputKey(q.topic, q.partition)] = q.next
			if q.dirty {
				if offsets[q.topic] == nil {
					offsets[q.topic] = make(map[int32]kgo.EpochOffset)
				}
				offsets[q.topic][q.partition] = kgo.EpochOffset{Epoch: q.leaderEpoch, Offset: q.next}
				q.dirty = false
			}
		}
		t.nextCP = cp
	}
	// The tasks' DBs are independent: with ProcessingThreads > 1 they
	// apply (and sync) at once, while processing waits for the commit.
	var g errgroup.Group
	g.SetLimit(max(e.cfg.ProcessingThreads, 1))
	for _, t := range active {
		g.Go(func() error {
			// Pebble keeps unsynced WAL writes in its own buffer, so a
			// killed process loses them: sync at most once per second
			// per task. A lost store commit costs only a longer
			// changelog replay.
			sync := now.Sub(t.lastSync) >= time.Second
			if err := t.batch.Commit(&t.nextCP, sync); err != nil {
				return fmt.Errorf("task %s: commit store: %w", t.name, err)
			}
			if sync {
				t.lastSync = now
			}
			t.cp, t.nextCP = t.nextCP, state.Checkpoint{}
			t.pending = 0
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return offsets, nil
}

// flush waits for every produced record; during an outage it keeps waiting
// (franz-go retries), logging every 10 s, until ctx ends.
func (e *Engine) flush(ctx context.Context) error {
	defer e.lc.watch()()
	for {
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := e.producer.Flush(fctx)
		cancel()
		if err == nil {
			e.lc.brokerOK()
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w: produced records not flushed", ErrCloseTimeout)
		}
		if rerr := e.credentialsRefused(); rerr != nil {
			return rerr
		}
		e.log.Warn("waiting for brokers to accept produced records", "err", err)
	}
}

// commitOffsets commits the input offsets; ok is false when the commit did not
// complete for a transient reason (the offsets stay dirty and go with the next
// commit).
func (e *Engine) commitOffsets(ctx context.Context, offsets map[string]map[int32]kgo.EpochOffset) (ok bool, err error) {
	var cerr error
	done := e.lc.watch()
	defer done()
	e.consumer.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			cerr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if perr := kerr.ErrorForCode(p.ErrorCode); perr != nil && cerr == nil {
					cerr = fmt.Errorf("commit %s/%d: %w", t.Topic, p.Partition, perr)
				}
			}
		}
	})
	if cerr != nil && ctx.Err() != nil {
		return false, fmt.Errorf("%w: offsets not committed", ErrCloseTimeout)
	}
	if cerr != nil {
		if isRetriable(cerr) || errors.Is(cerr, kerr.RebalanceInProgress) || errors.Is(cerr, kerr.IllegalGeneration) ||
			errors.Is(cerr, kerr.UnknownMemberID) || errors.Is(cerr, kerr.FencedInstanceID) {
			// At-least-once: the store already holds the work; the next
			// commit (or the next owner) carries the offsets forward.
			e.log.Warn("offset commit did not complete; will retry with the next commit", "err", cerr)
			e.redirty(offsets)
			return false, nil
		}
		return false, fmt.Errorf("commit offsets: %w", cerr)
	}
	return true, nil
}

// redirty marks the partitions of a failed offset commit for the next one.
func (e *Engine) redirty(offsets map[string]map[int32]kgo.EpochOffset) {
	for topic, parts := range offsets {
		for p := range parts {
			if t := e.byTP[topic][p]; t != nil {
				if q := t.byTopic[topic]; q != nil {
					q.dirty = true
				}
			}
		}
	}
}

// purgeRepartitions deletes repartition records below the committed offsets,
// every RepartitionPurgeInterval at most (Kafka Streams' repartition.purge.interval.ms).
func (e *Engine) purgeRepartitions(ctx context.Context, offsets map[string]map[int32]kgo.EpochOffset) {
	now := e.cfg.Now()
	if len(e.repartTops) == 0 || now.Sub(e.lastPurge) < e.cfg.RepartitionPurgeInterval {
		return
	}
	e.lastPurge = now
	purge := kadm.Offsets{}
	for _, topic := range e.repartTops {
		for p, o := range offsets[topic] {
			// Keep the last record: a partition purged to its end can lose
			// its offsets across a broker restart (seen with kfake), and
			// consumers would then see their committed offset vanish.
			if o.Offset > 1 {
				purge.AddOffset(topic, p, o.Offset-1, -1)
			}
		}
	}
	if len(purge) == 0 {
		return
	}
	go func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		resp, err := e.adm.DeleteRecords(dctx, purge)
		if err != nil {
			e.log.Debug("purging repartition topics", "err", err)
		}
		for _, r := range resp.Sorted() {
			if isAuthError(r.Err) && !isAuthError(err) {
				err = e.denied(r.Err, kmsg.ACLResourceTypeTopic, r.Topic, kmsg.ACLOperationDelete, "purge repartition topic (DeleteRecords)")
			}
		}
		if isAuthError(err) {
			// Not an outage: without Delete, repartition topics would grow forever.
			e.mu.Lock()
			e.setFatal(err)
			e.mu.Unlock()
		}
	}()
}

// shutdown closes the tasks and the clients and leaves the group; the loop
// has made the final commit.
func (e *Engine) shutdown() {
	e.mu.Lock()
	for id := range e.tasks {
		e.closeTask(id, true)
	}
	e.mu.Unlock()
	memberID, _ := e.consumer.GroupMetadata()
	e.detached.Store(true)
	e.consumer.CloseAllowingRebalance()
	if !e.cfg.KeepPartitionsOnClose && memberID != "" {
		lctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		e.leaveGroup(lctx, memberID)
		cancel()
	}
	if e.producer != e.consumer {
		e.producer.Close()
	}
}

// crash abandons everything as a killed process would: no commit, no leave.
func (e *Engine) crash() {
	e.detached.Store(true)
	e.mu.Lock()
	for id, t := range e.tasks {
		if t.phase == phaseRestoring {
			<-e.restorer.Remove(t.name)
		}
		t.batch.Discard()
		e.query.closed(id)
		_ = t.db.Close()
		delete(e.tasks, id)
	}
	e.mu.Unlock()
	if e.session == nil {
		_ = e.producer.AbortBufferedRecords(context.Background()) // crashing on purpose
		e.producer.Close()
	}
	// A transaction left open is aborted by the broker, or fenced at once
	// by the next producer with the same transactional id.
	e.consumer.CloseAllowingRebalance()
}
