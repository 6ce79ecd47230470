package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/bench/load"
)

// partitions of every topic the harness creates.
const partitions = 6

// Row ids of the baselines.
const (
	basePass     = "base-pass"
	baseState    = "base-state"
	baseStateBig = "base-state-big"
	basePebble   = "base-pebble"
)

func createTopic(ctx context.Context, adm *kadm.Client, topic string, compact bool) error {
	return load.CreateTopic(ctx, adm, topic, partitions, compact)
}

// preload produces s before a workload starts, showing progress.
func (h *harness) preload(ctx context.Context, title string, s load.Spec, observe func(*kgo.Record)) (load.Stats, error) {
	var n atomic.Int64
	h.prog.start("preload "+title, s.Count, n.Load)
	defer h.prog.stop()
	return load.Produce(ctx, h.cl, s, func(r *kgo.Record) {
		n.Add(1)
		if observe != nil {
			observe(r)
		}
	})
}

// baselineOpts are the fixed client settings of the baselines: franz-go's
// defaults plus a 10 ms linger, a consumer group with manual commits, and
// records produced to the partitions chosen by the loop.
// cluster is the seed brokers and security settings.
func baselineOpts(cluster []kgo.Opt, group string, m *meter, topics ...string) []kgo.Opt {
	return append(slices.Clip(cluster),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topics...),
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.ProducerLinger(10*time.Millisecond),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.WithHooks(m),
	)
}

// firstErr keeps the first error reported from any goroutine.
type firstErr struct {
	mu  sync.Mutex
	err error
}

func (f *firstErr) set(err error) {
	f.mu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.mu.Unlock()
}

func (f *firstErr) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// consumeLoop polls cl and hands every poll to fn until the meter is done
// (success) or ctx ends; every second it flushes the producer and commits
// the polled offsets, as an at-least-once loop does.
func consumeLoop(ctx context.Context, cl *kgo.Client, m *meter, errs *firstErr, fn func(kgo.Fetches) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-m.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	last := time.Now()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if ferr == nil && !errors.Is(err, context.Canceled) {
				ferr = fmt.Errorf("fetch %s/%d: %w", t, p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		if err := fn(fs); err != nil {
			return err
		}
		if err := errs.get(); err != nil {
			return err
		}
		if time.Since(last) >= time.Second {
			if err := cl.Flush(ctx); err != nil {
				break
			}
			if err := cl.CommitUncommittedOffsets(ctx); err != nil && ctx.Err() == nil {
				return err
			}
			last = time.Now()
		}
	}
	select {
	case <-m.done:
		return errs.get()
	default:
		return ctx.Err()
	}
}

// runPassthrough measures raw consume → produce: the stateless ceiling.
func (h *harness) runPassthrough(ctx context.Context) error {
	ctx, cancel := h.phaseCtx(ctx)
	defer cancel()
	prefix := h.ns + "base-pass-"
	in, out := prefix+"in", prefix+"out"
	defer h.dropTopics(prefix)
	if err := h.createTopics(ctx, false, in); err != nil {
		return err
	}
	n := h.sz.Records
	if _, err := h.preload(ctx, "passthrough input", load.Spec{Topic: in, Keys: h.sz.Keys, ValueSize: h.sz.ValueSize, Count: n, Seed: h.o.Seed}, nil); err != nil {
		return err
	}
	r, err := best(h.o.Repeat, func(i int) (Row, error) {
		out := fmt.Sprintf("%s-%d", out, i)
		if err := h.createTopics(ctx, false, out); err != nil {
			return Row{}, err
		}
		m := newMeter([]string{in}, []string{out}, n)
		ms := h.begin(basePass, "baseline: consume→produce", n, m.outN.Load)
		err := passthrough(ctx, h.clientOpts(), in, out, fmt.Sprintf("%sgroup-%d", prefix, i), m)
		ms.end()
		return ms.row(basePass, "baseline: raw consume→produce (stateless ceiling)", "baseline", "", n, m.window()), err
	})
	if err != nil {
		return err
	}
	h.addRow(r)
	return nil
}

// passthrough copies every record of in to the same partition of out.
func passthrough(ctx context.Context, cluster []kgo.Opt, in, out, group string, m *meter) error {
	cl, err := kgo.NewClient(baselineOpts(cluster, group, m, in)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	var errs firstErr
	promise := func(_ *kgo.Record, err error) {
		if err != nil && !errors.Is(err, context.Canceled) {
			errs.set(err)
		}
	}
	return consumeLoop(ctx, cl, m, &errs, func(fs kgo.Fetches) error {
		fs.EachRecord(func(r *kgo.Record) {
			cl.Produce(ctx, &kgo.Record{Topic: out, Partition: r.Partition, Key: r.Key, Value: r.Value,
				Headers: r.Headers, Timestamp: r.Timestamp}, promise)
		})
		return nil
	})
}

// runStateful measures the stateful ceiling over keys keys: raw consume →
// count in Pebble (one indexed batch per poll, NoSync) → produce the count
// to the output and to a compacted changelog.
func (h *harness) runStateful(ctx context.Context, variant string, keys int) error {
	ctx, cancel := h.phaseCtx(ctx)
	defer cancel()
	id, prefix := baseState, h.ns+"base-state-"
	if variant == "big" {
		id, prefix = baseStateBig, h.ns+"base-statebig-"
	}
	in, out, changelog := prefix+"in", prefix+"out", prefix+"changelog"
	defer h.dropTopics(prefix)
	if err := h.createTopics(ctx, false, in); err != nil {
		return err
	}
	n := h.sz.Records
	if _, err := h.preload(ctx, "stateful input", load.Spec{Topic: in, Keys: keys, ValueSize: h.sz.ValueSize, Count: n, Seed: h.o.Seed}, nil); err != nil {
		return err
	}
	name := fmt.Sprintf("baseline: raw consume→Pebble count→produce+changelog, %s keys (stateful ceiling)", fmtCount(int64(keys)))
	r, err := best(h.o.Repeat, func(i int) (Row, error) {
		out, changelog := fmt.Sprintf("%s-%d", out, i), fmt.Sprintf("%s-%d", changelog, i)
		if err := h.createTopics(ctx, false, out); err != nil {
			return Row{}, err
		}
		if err := h.createTopics(ctx, true, changelog); err != nil {
			return Row{}, err
		}
		db, err := openPebble(filepath.Join(h.tmp, fmt.Sprintf("%s-%d", id, i)))
		if err != nil {
			return Row{}, err
		}
		defer db.Close()
		m := newMeter([]string{in}, []string{out}, n)
		ms := h.begin(id, fmt.Sprintf("baseline: stateful ceiling, %s keys", fmtCount(int64(keys))), n, m.outN.Load)
		err = stateful(ctx, h.clientOpts(), in, out, changelog, fmt.Sprintf("%sgroup-%d", prefix, i), db, m)
		ms.end()
		return ms.row(id, name, "baseline", "", n, m.window()), err
	})
	if err != nil {
		return err
	}
	h.addRow(r)
	return nil
}

// stateful counts the records of every key of in, in db, and writes every
// new count to out and to changelog (the partition of the input record).
// Per poll it keeps the counts it touched in a small overlay (bounded by
// the poll, dropped after it) so a key seen twice in a poll is read from
// Pebble once, and writes each touched key once into one batch committed
// with NoSync: what a careful hand-written loop does.
func stateful(ctx context.Context, cluster []kgo.Opt, in, out, changelog, group string, db *pebble.DB, m *meter) error {
	cl, err := kgo.NewClient(baselineOpts(cluster, group, m, in)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	var errs firstErr
	promise := func(_ *kgo.Record, err error) {
		if err != nil && !errors.Is(err, context.Canceled) {
			errs.set(err)
		}
	}
	overlay := make(map[string][]byte)
	return consumeLoop(ctx, cl, m, &errs, func(fs kgo.Fetches) error {
		var perr error
		fs.EachRecord(func(r *kgo.Record) {
			if perr != nil {
				return
			}
			var count uint64
			if v, ok := overlay[string(r.Key)]; ok {
				count = binary.BigEndian.Uint64(v)
			} else {
				v, closer, err := db.Get(r.Key)
				switch {
				case err == nil:
					if len(v) == 8 {
						count = binary.BigEndian.Uint64(v)
					}
					closer.Close()
				case !errors.Is(err, pebble.ErrNotFound):
					perr = err
					return
				}
			}
			val := binary.BigEndian.AppendUint64(make([]byte, 0, 8), count+1)
			overlay[string(r.Key)] = val
			cl.Produce(ctx, &kgo.Record{Topic: out, Partition: r.Partition, Key: r.Key, Value: val,
				Headers: r.Headers, Timestamp: r.Timestamp}, promise)
			cl.Produce(ctx, &kgo.Record{Topic: changelog, Partition: r.Partition, Key: r.Key, Value: val,
				Timestamp: r.Timestamp}, promise)
		})
		if perr != nil {
			return perr
		}
		b := db.NewBatch()
		defer b.Close()
		for k, v := range overlay {
			if err := b.Set([]byte(k), v, nil); err != nil {
				return err
			}
		}
		clear(overlay)
		return b.Commit(pebble.NoSync)
	})
}

// quietLogger drops Pebble's messages.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

// openPebble opens a Pebble DB with the settings choreo's stores use
// (64 MiB cache, 4 MiB memtable, bloom filters, newest format).
func openPebble(dir string) (*pebble.DB, error) {
	cache := pebble.NewCache(64 << 20)
	defer cache.Unref()
	opts := &pebble.Options{
		Cache:              cache,
		MemTableSize:       4 << 20,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             quietLogger{},
	}
	opts.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	return pebble.Open(dir, opts)
}

// runPebble measures raw Pebble batch writes: Records values over the
// large key space, 10,000 per batch, NoSync.
func (h *harness) runPebble(ctx context.Context) error {
	db, err := openPebble(filepath.Join(h.tmp, basePebble))
	if err != nil {
		return err
	}
	defer db.Close()
	n := h.sz.Records
	g := load.NewGen(load.Spec{Topic: "-", Keys: h.sz.BigKeys, ValueSize: h.sz.ValueSize, Count: n, Seed: h.o.Seed})
	m := newMeter(nil, nil, 0)
	var done atomic.Int64
	ms := h.begin(basePebble, "baseline: Pebble batch writes", n, done.Load)
	m.start()
	var key []byte
	const perBatch = 10_000
	for i := int64(0); i < n && ctx.Err() == nil; i += perBatch {
		b := db.NewBatch()
		for j := i; j < min(n, i+perBatch); j++ {
			key = load.AppendKey(key[:0], g.KeyIndex())
			if err := b.Set(key, g.ValueView(), nil); err != nil {
				b.Close()
				ms.end()
				return err
			}
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			b.Close()
			ms.end()
			return err
		}
		b.Close()
		done.Store(min(n, i+perBatch))
	}
	m.mark()
	ms.end()
	if err := ctx.Err(); err != nil {
		return err
	}
	h.addRow(ms.row(basePebble, fmt.Sprintf("baseline: raw Pebble batch writes (10k per batch, NoSync, %s keys)", fmtCount(int64(h.sz.BigKeys))), "baseline", "", n, m.window()))
	return nil
}
