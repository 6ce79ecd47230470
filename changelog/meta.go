package changelog

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// taskMeta is what the broker says about a task's changelog partitions, in
// the order of Request.Stores.
type taskMeta struct {
	parts    []partMeta
	listedAt time.Time // taken just before the end offsets were listed
}

type partMeta struct {
	id              [16]byte
	leader          int32
	start, end      int64 // log start offset, last stable offset
	deleteRetention time.Duration
}

// loadMetaRetry loads the metadata, retrying retriable errors with backoff
// until ctx is done.
func (r *Restorer) loadMetaRetry(ctx context.Context, task string, stores []StoreChangelog) (*taskMeta, error) {
	for attempt := 0; ; attempt++ {
		m, err := r.loadMeta(ctx, stores)
		if err == nil {
			return m, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !retriable(err) {
			return nil, err
		}
		d := backoff(attempt)
		r.log.Warn("changelog: listing changelog offsets failed, retrying", "task", task, "attempt", attempt+1, "backoff", d, "err", err)
		if !sleepCtx(ctx, d) {
			return nil, ctx.Err()
		}
	}
}

func (r *Restorer) loadMeta(ctx context.Context, stores []StoreChangelog) (*taskMeta, error) {
	topics := make([]string, 0, len(stores))
	seen := make(map[string]bool, len(stores))
	for _, sc := range stores {
		if !seen[sc.Topic] {
			seen[sc.Topic] = true
			topics = append(topics, sc.Topic)
		}
	}
	m := &taskMeta{parts: make([]partMeta, len(stores))}
	if len(stores) == 0 {
		m.listedAt = r.now()
		return m, nil
	}

	ctx = fresh(ctx)
	details, err := r.adm.ListTopics(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list changelog topics: %w", err)
	}
	for i, sc := range stores {
		td, ok := details[sc.Topic]
		if !ok {
			return nil, fmt.Errorf("changelog %q: %w", sc.Topic, kerr.UnknownTopicOrPartition)
		}
		if td.Err != nil {
			return nil, fmt.Errorf("changelog %q: %w", sc.Topic, td.Err)
		}
		pd, ok := td.Partitions[sc.Partition]
		if !ok {
			return nil, fmt.Errorf("changelog %q has %d partitions, no partition %d: %w", sc.Topic, len(td.Partitions), sc.Partition, ErrPartitionMismatch)
		}
		if pd.Err != nil && !errors.Is(pd.Err, kerr.ReplicaNotAvailable) {
			return nil, fmt.Errorf("changelog %s[%d]: %w", sc.Topic, sc.Partition, pd.Err)
		}
		m.parts[i] = partMeta{id: td.ID, leader: pd.Leader, deleteRetention: DefaultDeleteRetention}
	}

	rcs, err := r.adm.DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("describe changelog configs: %w", err)
	}
	retention := make(map[string]time.Duration, len(topics))
	for _, rc := range rcs {
		if rc.Err != nil {
			return nil, fmt.Errorf("describe configs of changelog %q: %w", rc.Name, rc.Err)
		}
		for _, c := range rc.Configs {
			if c.Key == "delete.retention.ms" && c.Value != nil {
				if n, err := strconv.ParseInt(*c.Value, 10, 64); err == nil && n >= 0 {
					retention[rc.Name] = time.Duration(n) * time.Millisecond
				}
			}
		}
	}

	startOffs, err := r.adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list changelog start offsets: %w", err)
	}
	m.listedAt = r.now()
	// The last stable offset: read-committed consumers read up to it.
	endOffs, err := r.adm.ListCommittedOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list changelog end offsets: %w", err)
	}
	for i, sc := range stores {
		if d, ok := retention[sc.Topic]; ok {
			m.parts[i].deleteRetention = d
		}
		so, ok := startOffs.Lookup(sc.Topic, sc.Partition)
		if !ok {
			return nil, fmt.Errorf("no log start offset for %s[%d]: %w", sc.Topic, sc.Partition, kerr.UnknownTopicOrPartition)
		}
		if so.Err != nil {
			return nil, fmt.Errorf("list log start offset of %s[%d]: %w", sc.Topic, sc.Partition, so.Err)
		}
		eo, ok := endOffs.Lookup(sc.Topic, sc.Partition)
		if !ok {
			return nil, fmt.Errorf("no end offset for %s[%d]: %w", sc.Topic, sc.Partition, kerr.UnknownTopicOrPartition)
		}
		if eo.Err != nil {
			return nil, fmt.Errorf("list end offset of %s[%d]: %w", sc.Topic, sc.Partition, eo.Err)
		}
		m.parts[i].start, m.parts[i].end = so.Offset, eo.Offset
		if m.parts[i].start > m.parts[i].end {
			// The log start moved between the two listings.
			m.parts[i].start = m.parts[i].end
		}
	}
	return m, nil
}

// Tail probes.
//
// A read-committed client skips aborted records and transaction markers and
// does not say how far it got past them: when the records before the end
// offset are such records, no record with an offset near the end arrives.
// With kgo.KeepControlRecords the markers themselves arrive, which ends most
// restores at once; for the rest (and without that option) a partition that
// delivered nothing for TailProbeAfter is probed: one read-committed fetch
// straight to the partition leader, parsed like the client does, tells
// whether any data record remains before the end offset.

type probeResult struct {
	idx    int   // store index in the task
	from   int64 // position probed from
	next   int64 // new position: first data offset >= from, or end
	leader int32 // refreshed leader, or -1
	gone   bool  // the topic was deleted or recreated
}

const (
	maxProbeBackoff = 5 * time.Second
	// probeMaxBytes keeps probes small; a broker still returns a whole
	// first batch however large.
	probeMaxBytes = 64 << 10
)

// probeIdle starts probes for partitions that delivered nothing for a while:
// TailProbeAfter, or twice the longest pause between two of their deliveries
// so far if that is longer (up to maxProbeBackoff), since a client that is
// merely slow (a busy broker or machine) pauses as long again.
func (r *Restorer) probeIdle(now time.Time) {
	after := r.opts.TailProbeAfter
	for _, s := range r.parts {
		if !s.consuming || s.probing || now.Sub(s.lastProgress) < min(max(after, 2*s.maxGap), maxProbeBackoff) {
			continue
		}
		wait := min(after<<min(s.probeFails, 8), maxProbeBackoff)
		if now.Sub(s.lastProbe) < wait {
			continue
		}
		s.probing = true
		s.lastProbe = now
		t := s.t
		task, gen, idx := t.req.Task, t.gen, s.idx
		sc, id, leader, from, end := s.sc, s.id, s.leader, s.pos, s.end
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			res, err := r.probeTail(r.runCtx, sc, id, leader, from, end)
			res.idx = idx
			r.enqueue(event{kind: evProbe, task: task, gen: gen, probe: res, err: err})
		}()
	}
}

func (r *Restorer) handleProbe(ev event) {
	t := r.tasks[ev.task]
	if t == nil || t.gen != ev.gen || !t.restoring || ev.probe.idx >= len(t.stores) {
		return
	}
	s := t.stores[ev.probe.idx]
	s.probing = false
	if ev.probe.leader >= 0 {
		s.leader = ev.probe.leader
	}
	if !s.consuming {
		return
	}
	if ev.probe.gone {
		r.purgeTopic(s.sc.Topic, fmt.Sprintf("changelog %q was deleted or recreated during restore", s.sc.Topic))
		return
	}
	if ev.err != nil {
		s.probeFails++
		r.log.Debug("changelog: tail probe failed", "topic", s.sc.Topic, "partition", s.sc.Partition, "err", ev.err)
		return
	}
	if ev.probe.next > s.pos {
		s.pos = ev.probe.next
		t.dirty = true
	}
	if s.pos >= s.end {
		r.storeDone(s)
		return
	}
	// Data remains: the partition is just slow. Probe it less often until
	// records arrive.
	s.probeFails++
}

// probeTail finds the first committed data record in [from, end) of the
// partition. It returns end if there is none.
func (r *Restorer) probeTail(ctx context.Context, sc StoreChangelog, id [16]byte, leader int32, from, end int64) (probeResult, error) {
	res := probeResult{from: from, next: from, leader: -1}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if leader < 0 {
		l, err := r.leader(ctx, sc)
		if err != nil {
			return res, err
		}
		leader, res.leader = l, l
	}
	off := from
	for range 16 {
		req := kmsg.NewPtrFetchRequest()
		req.ReplicaID = -1
		req.MaxWaitMillis = 0
		req.MinBytes = 0
		req.MaxBytes = probeMaxBytes
		req.IsolationLevel = 1
		req.SessionID = 0
		req.SessionEpoch = -1
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = sc.Topic
		rt.TopicID = id
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = sc.Partition
		rp.FetchOffset = off
		rp.CurrentLeaderEpoch = -1
		rp.LogStartOffset = -1
		rp.PartitionMaxBytes = probeMaxBytes
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)

		kresp, err := r.cl.Broker(int(leader)).Request(ctx, req)
		if err != nil {
			return res, err
		}
		resp := kresp.(*kmsg.FetchResponse)
		if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
			return res, err
		}
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			return res, errors.New("unexpected fetch response shape")
		}
		prp := &resp.Topics[0].Partitions[0]
		if err := kerr.ErrorForCode(prp.ErrorCode); err != nil {
			switch {
			case errors.Is(err, kerr.UnknownTopicID), errors.Is(err, kerr.InconsistentTopicID):
				// Confirm with fresh metadata: a new topic's
				// leader may briefly not know its ID yet.
				details, lerr := r.adm.ListTopics(fresh(ctx), sc.Topic)
				if lerr == nil {
					td, ok := details[sc.Topic]
					res.gone = !ok || td.Err != nil || td.ID != id
				}
			case errors.Is(err, kerr.NotLeaderForPartition), errors.Is(err, kerr.FencedLeaderEpoch),
				errors.Is(err, kerr.UnknownLeaderEpoch), errors.Is(err, kerr.LeaderNotAvailable):
				if l, lerr := r.leader(ctx, sc); lerr == nil {
					res.leader = l
				}
			}
			return res, err
		}
		fp, next := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
			Offset:         off,
			IsolationLevel: kgo.ReadCommitted(),
			Topic:          sc.Topic,
			Partition:      sc.Partition,
		}, prp, kgo.DefaultDecompressor(), nil)
		if fp.Err != nil {
			return res, fp.Err
		}
		for _, rec := range fp.Records {
			if rec.Offset < off || rec.Attrs.IsControl() {
				continue
			}
			res.next = min(rec.Offset, end)
			return res, nil
		}
		if next >= end {
			res.next = end
			return res, nil
		}
		if next <= off {
			res.next = off
			return res, nil
		}
		off = next
		res.next = off
	}
	return res, nil
}

func (r *Restorer) leader(ctx context.Context, sc StoreChangelog) (int32, error) {
	details, err := r.adm.ListTopics(fresh(ctx), sc.Topic)
	if err != nil {
		return -1, err
	}
	td, ok := details[sc.Topic]
	if !ok || td.Err != nil {
		return -1, fmt.Errorf("changelog %q: %w", sc.Topic, errors.Join(td.Err, kerr.UnknownTopicOrPartition))
	}
	pd, ok := td.Partitions[sc.Partition]
	if !ok || pd.Leader < 0 {
		return -1, fmt.Errorf("changelog %s[%d]: %w", sc.Topic, sc.Partition, kerr.LeaderNotAvailable)
	}
	return pd.Leader, nil
}
