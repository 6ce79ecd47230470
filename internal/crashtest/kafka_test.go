//go:build unix

package crashtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/changelog"
	"github.com/choreo-go/choreo/examples/orders/orders"
	"github.com/choreo-go/choreo/internal/topicread"
	"github.com/choreo-go/choreo/partition"
	"github.com/choreo-go/choreo/runtime"
	"github.com/choreo-go/choreo/state"
)

// Names of the count topology (cmd/app).
const (
	countApp   = "crash-count"
	countIn    = "seq-in"
	countOut   = "seq-out"
	countStore = "counts"
	seqHeader  = "seq"
	countKeys  = 50
)

type offsets = map[string]map[int32]int64

func setOffset(m offsets, topic string, p int32, o int64) {
	if m[topic] == nil {
		m[topic] = make(map[int32]int64)
	}
	m[topic][p] = o
}

func createTopics(ctx context.Context, adm *kadm.Client, partitions int32, topics ...string) error {
	for _, tp := range topics {
		resp, err := adm.CreateTopic(ctx, partitions, -1, nil, tp)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create %s: %w", tp, err)
		}
	}
	return nil
}

// produceSeq writes events records to seq-in: sequence number i has key
// k<i mod 50> and value i (decimal), paced at rate records/s (0: at once).
// produced counts the acknowledged records.
func produceSeq(ctx context.Context, cl *kgo.Client, from, events int, rate float64, produced *atomic.Int64) error {
	var (
		mu       sync.Mutex
		firstErr error
	)
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			mu.Lock()
			if firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
			return
		}
		produced.Add(1)
	}
	send := func(i int) {
		cl.Produce(ctx, &kgo.Record{
			Topic: countIn,
			Key:   []byte("k" + strconv.Itoa(i%countKeys)),
			Value: []byte(strconv.Itoa(i)),
		}, promise)
	}
	if rate <= 0 {
		for i := from; i < from+events; i++ {
			send(i)
		}
	} else {
		tick := time.NewTicker(5 * time.Millisecond) // pacing, not waiting for a condition
		defer tick.Stop()
		start := time.Now()
		for next := from; next < from+events; {
			due := min(from+events, from+int(time.Since(start).Seconds()*rate)+1)
			for ; next < due; next++ {
				send(next)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-tick.C:
			}
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	return firstErr
}

// readRange hands fn every committed data record of the partitions in
// from up to the offsets in to (see topicread.Range), giving up after two
// minutes.
func readRange(ctx context.Context, brokers []string, from, to offsets, fn func(*kgo.Record)) error {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return topicread.Range(rctx, []kgo.Opt{kgo.SeedBrokers(brokers...),
		kgo.FetchMaxBytes(64 << 20), kgo.FetchMaxPartitionBytes(16 << 20)}, from, to, fn)
}

// listOffsets returns start offsets and end offsets (high watermarks, or
// last stable offsets with stable) of topics.
func listOffsets(ctx context.Context, adm *kadm.Client, stable bool, topics ...string) (start, end offsets, err error) {
	if len(topics) == 0 {
		return offsets{}, offsets{}, nil
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("list start offsets %v: %w", topics, err)
	}
	var ends kadm.ListedOffsets
	if stable {
		ends, err = adm.ListCommittedOffsets(ctx, topics...)
	} else {
		ends, err = adm.ListEndOffsets(ctx, topics...)
	}
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("list end offsets %v: %w", topics, err)
	}
	start, end = offsets{}, offsets{}
	starts.Each(func(o kadm.ListedOffset) { setOffset(start, o.Topic, o.Partition, o.Offset) })
	ends.Each(func(o kadm.ListedOffset) { setOffset(end, o.Topic, o.Partition, o.Offset) })
	return start, end, nil
}

// readTopics reads every committed record of topics, start to high
// watermark (so an open transaction is an error, not a silent cut).
func readTopics(ctx context.Context, brokers []string, adm *kadm.Client, fn func(*kgo.Record), topics ...string) error {
	start, end, err := listOffsets(ctx, adm, false, topics...)
	if err != nil {
		return err
	}
	return readRange(ctx, brokers, start, end, fn)
}

// changelogStores returns the logged stores of the child's topology.
func changelogStores(topo string) ([]string, error) {
	if topo == "count" {
		return []string{countStore}, nil
	}
	b := runtime.NewBuilder()
	orders.Topology(b)
	tp, err := b.Build()
	if err != nil {
		return nil, err
	}
	var out []string
	for name, spec := range tp.Graph().Graph.Stores {
		if spec.Logged {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// existingTopics returns those of topics that exist. adm must not serve
// topic lists from a stale cache (see newEnv).
func existingTopics(ctx context.Context, adm *kadm.Client, topics ...string) ([]string, error) {
	td, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, name := range topics {
		if d, ok := td[name]; ok && d.Err == nil && len(d.Partitions) > 0 {
			out = append(out, name)
		}
	}
	return out, nil
}

// taskCheckpoint is what the test reads from a task's store after a crash.
type taskCheckpoint struct {
	task partition.TaskID
	cp   state.Checkpoint
	ok   bool
}

// readCheckpoints opens every task DB in stateDir/app (the child must be
// dead) and returns its checkpoint. Missing directories are not created.
func readCheckpoints(stateDir, app string) ([]taskCheckpoint, error) {
	dir := filepath.Join(stateDir, app)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	env := state.NewEnv(state.EnvOptions{Logger: slog.New(slog.DiscardHandler)})
	defer env.Close()
	var out []taskCheckpoint
	for _, ent := range ents {
		id, err := partition.ParseTaskID(ent.Name())
		if err != nil || !ent.IsDir() {
			continue
		}
		db, err := env.Open(filepath.Join(dir, ent.Name()))
		if err != nil {
			return nil, fmt.Errorf("open task %s: %w", ent.Name(), err)
		}
		cp, ok, err := db.Checkpoint()
		cerr := db.Close()
		if err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("task %s: checkpoint: %w", ent.Name(), err)
		}
		out = append(out, taskCheckpoint{task: id, cp: cp, ok: ok})
	}
	return out, nil
}

// restoreTail counts what a restart must replay, independently of the
// runtime: for every changelog partition of app, the committed data
// records from the checkpointed offset of the task that holds the store
// (the log start without one) up to the last stable offset, read by the
// test's own read-committed consumer. Offsets also hold transaction
// markers and aborted batches, so this is a count, not an offset
// difference. The child must be dead.
func restoreTail(ctx context.Context, brokers []string, adm *kadm.Client, stateDir, app string, stores []string) (int64, string, error) {
	var names []string
	for _, st := range stores {
		names = append(names, changelog.TopicName(app, st))
	}
	topics, err := existingTopics(ctx, adm, names...)
	if err != nil || len(topics) == 0 {
		return 0, "", err
	}
	cps, err := readCheckpoints(stateDir, app)
	if err != nil {
		return 0, "", err
	}
	from, lso, err := listOffsets(ctx, adm, true, topics...)
	if err != nil {
		return 0, "", err
	}
	var desc strings.Builder
	for _, tc := range cps {
		fmt.Fprintf(&desc, "  task %s: checkpoint %v, changelog offsets", tc.task, tc.ok)
		for st, pos := range tc.cp.Changelogs {
			fmt.Fprintf(&desc, " %s=%d", st, pos.Offset)
		}
		desc.WriteString("\n")
	}
	fmt.Fprintf(&desc, "  log starts %v, last stable offsets %v", from, lso)
	for _, topic := range topics {
		store := strings.TrimSuffix(strings.TrimPrefix(topic, app+"-"), "-changelog")
		for _, tc := range cps {
			if pos, ok := tc.cp.Changelogs[store]; ok && tc.ok {
				if _, known := from[topic][tc.task.Partition]; known {
					setOffset(from, topic, tc.task.Partition, pos.Offset)
				}
			}
		}
	}
	var n int64
	err = readRange(ctx, brokers, from, lso, func(*kgo.Record) { n++ })
	return n, desc.String(), err
}

// groupOffsets returns the group's committed offsets on topic.
func groupOffsets(ctx context.Context, adm *kadm.Client, group, topic string) (map[int32]int64, error) {
	resp, err := adm.FetchOffsetsForTopics(ctx, group, topic)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return nil, err
	}
	out := make(map[int32]int64)
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.At >= 0 {
			out[o.Partition] = o.At
		}
	})
	return out, nil
}
