package bench

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/bench/load"
	"github.com/choreo-go/choreo/changelog"
	"github.com/choreo-go/choreo/runtime"
)

// W5Topology materializes a table (store "table") and nothing else.
func W5Topology(b *runtime.Builder, table string) {
	runtime.TableOf(b, table, runtime.String(), runtime.Bytes(), runtime.Named("table"))
}

// restoreMeter is a runtime.RestoreListener that counts restored records
// and closes the meter's window at every partition's end.
type restoreMeter struct {
	m        *meter
	restored atomic.Int64
	mu       sync.Mutex
	started  int
	ended    int
	total    int64
	suspend  int
}

func (r *restoreMeter) OnRestoreStart(_, _, _ string, _ int32, _, _ int64) {
	r.mu.Lock()
	r.started++
	r.mu.Unlock()
}

func (r *restoreMeter) OnBatchRestored(_, _, _ string, _ int32, _, restored int64) {
	r.restored.Add(restored)
}

func (r *restoreMeter) OnRestoreEnd(_, _, _ string, _ int32, total int64) {
	r.m.touch()
	r.mu.Lock()
	r.ended++
	r.total += total
	r.mu.Unlock()
}

func (r *restoreMeter) OnRestoreSuspended(_, _, _ string, _ int32, _ int64) {
	r.mu.Lock()
	r.suspend++
	r.mu.Unlock()
}

func (r *restoreMeter) result() (total int64, ended, suspended int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total, r.ended, r.suspend
}

// runW5 measures changelog restores: it builds a table's state and
// changelog with choreo, measures a raw franz-go consume of the changelog,
// a cold restore into an empty state directory, and a warm restore from a
// checkpoint behind the changelog by RestoreTail records.
func (h *harness) runW5(ctx context.Context, g Guarantee) error {
	ctx, cancel := h.phaseCtx(ctx)
	defer cancel()
	prefix := h.ns + "w5-" + string(g) + "-"
	table, appID := prefix+"table", prefix+"app"
	cl := changelog.TopicName(appID, "table")
	defer h.dropTopics(prefix)
	if err := h.createTopics(ctx, true, table); err != nil {
		return err
	}
	keys := h.sz.RestoreKeys
	if _, err := h.preload(ctx, "W5 table", load.Spec{Topic: table, Keys: keys, ValueSize: h.sz.ValueSize, Count: int64(keys), Seed: h.o.Seed, Sequential: true}, nil); err != nil {
		return err
	}
	newTopo := func() *runtime.Builder {
		b := runtime.NewBuilder()
		W5Topology(b, table)
		return b
	}

	// Setup: the app loads the table, filling its store and changelog.
	m := newMeter([]string{table}, []string{cl}, int64(keys))
	h.prog.start("W5 setup: load the table", int64(keys), m.outN.Load)
	_, err := h.runToCompletion(ctx, newTopo(), appID, filepath.Join(h.tmp, appID+"-setup"), m)
	h.prog.stop()
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	ends, err := h.adm.ListEndOffsets(ctx, cl)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return err
	}
	var clRecords int64
	endOf := make(map[int32]int64)
	ends.Each(func(o kadm.ListedOffset) {
		endOf[o.Partition] = o.Offset
		clRecords += o.Offset
	})

	// The raw consume of the same changelog: the restore's baseline.
	m = newMeter([]string{cl}, nil, 0)
	var consumed atomic.Int64
	ms := h.begin("w5-raw-"+string(g), "baseline: raw consume of the changelog", clRecords, consumed.Load)
	err = rawConsume(ctx, h.clientOpts(), cl, endOf, m, &consumed)
	ms.end()
	if err != nil {
		return fmt.Errorf("raw consume: %w", err)
	}
	rawID := "w5-raw-" + string(g)
	h.addRow(ms.row(rawID, fmt.Sprintf("baseline: raw franz-go consume of the %s-record changelog", fmtCount(clRecords)), "baseline", "", consumed.Load(), m.window()))

	// Cold: an empty state directory restores the whole changelog.
	coldDir := filepath.Join(h.tmp, appID+"-cold")
	r, err := h.restoreRun(ctx, "w5-cold-"+string(g), "W5 cold restore (empty state dir)", newTopo(), appID, coldDir, cl, clRecords, g)
	if err != nil {
		return fmt.Errorf("cold restore: %w", err)
	}
	r.Baseline = rawID
	h.addRow(r)

	// Warm: a copy of the cold state (checkpoint at the end), then the
	// changelog grows by RestoreTail records, then the copy restarts.
	warmDir := filepath.Join(h.tmp, appID+"-warm")
	if err := copyDir(coldDir, warmDir); err != nil {
		return err
	}
	tail := h.sz.RestoreTail
	if _, err := h.preload(ctx, "W5 table updates", load.Spec{Topic: table, Keys: tail, ValueSize: h.sz.ValueSize, Count: int64(tail), Seed: h.o.Seed + 7, Sequential: true}, nil); err != nil {
		return err
	}
	m = newMeter([]string{table}, []string{cl}, int64(tail))
	h.prog.start("W5 setup: apply the updates", int64(tail), m.outN.Load)
	_, err = h.runToCompletion(ctx, newTopo(), appID, coldDir, m)
	h.prog.stop()
	if err != nil {
		return fmt.Errorf("updates: %w", err)
	}
	r, err = h.restoreRun(ctx, "w5-warm-"+string(g), fmt.Sprintf("W5 warm restore (checkpoint %s records behind)", fmtCount(int64(tail))), newTopo(), appID, warmDir, cl, int64(tail), g)
	if err != nil {
		return fmt.Errorf("warm restore: %w", err)
	}
	r.Baseline = rawID
	h.addRow(r)
	return nil
}

// restoreRun starts the app on stateDir and measures its restore, until
// the app is running.
func (h *harness) restoreRun(ctx context.Context, id, title string, b *runtime.Builder, appID, stateDir, cl string, expect int64, g Guarantee) (Row, error) {
	m := newMeter([]string{cl}, nil, 0)
	rm := &restoreMeter{m: m}
	ms := h.begin(id, title, expect, rm.restored.Load)
	start := time.Now()
	a, err := h.startApp(ctx, b, appID, stateDir, m, rm)
	if err != nil {
		ms.end()
		return Row{}, err
	}
	werr := a.wait(ctx, a.running, "the app to run")
	startup := time.Since(start)
	ms.end()
	cerr := a.close()
	if werr != nil {
		return Row{}, werr
	}
	if cerr != nil {
		return Row{}, fmt.Errorf("app: %w", cerr)
	}
	total, ended, suspended := rm.result()
	w := m.window()
	if ended == 0 {
		// Nothing replayed: no window.
		w.Start, w.End, w.CPU = start, start, 0
	}
	r := ms.row(id, title, "choreo", g, total, w)
	r.Startup = startup.Seconds()
	r.Note = fmt.Sprintf("replayed %s records (expected %s) in %d partitions, %d suspended, fetching %s changelog records; Run→Running %.2fs",
		fmtCount(total), fmtCount(expect), ended, suspended, fmtCount(w.PerTopicIn[cl]), startup.Seconds())
	return r, nil
}

// rawConsume reads topic from the start to the given end offsets with a
// plain franz-go client (defaults), counting the records.
func rawConsume(ctx context.Context, cluster []kgo.Opt, topic string, ends map[int32]int64, m *meter, n *atomic.Int64) error {
	from := map[string]map[int32]kgo.Offset{topic: {}}
	left := 0
	for p, e := range ends {
		if e > 0 {
			from[topic][p] = kgo.NewOffset().AtStart()
			left++
		}
	}
	cl, err := kgo.NewClient(append(slices.Clip(cluster), kgo.ConsumePartitions(from), kgo.WithHooks(m))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	done := make(map[int32]bool)
	for left > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if ferr == nil {
				ferr = fmt.Errorf("fetch %s/%d: %w", t, p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 {
				return
			}
			n.Add(int64(len(p.Records)))
			if last := p.Records[len(p.Records)-1]; last.Offset+1 >= ends[p.Partition] && !done[p.Partition] {
				done[p.Partition] = true
				left--
			}
		})
	}
	m.mark()
	return nil
}

// copyDir copies the regular files of src into dst.
func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}
