package bench

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/bench/load"
	"github.com/choreo-go/choreo/changelog"
	"github.com/choreo-go/choreo/runtime"
)

// keepW1 is W1's filter: it drops the values that start with 0-3 (about
// 11% of the generator's values).
func keepW1(v []byte) bool { return len(v) > 0 && (v[0] < '0' || v[0] > '3') }

// W1Topology is the stateless workload: filter, map the values, write.
func W1Topology(b *runtime.Builder, in, out string) {
	s := runtime.StreamOf(b, in, runtime.String(), runtime.Bytes(), runtime.Named("source"))
	s = s.Filter(func(_ string, v []byte) bool { return keepW1(v) }, runtime.Named("filter"))
	runtime.MapValues(s, func(_ string, v []byte) []byte { return bytes.ToUpper(v) }, runtime.Named("upper")).
		To(out, runtime.Named("sink"))
}

// W2Topology is the keyed count: every record emits its key's new count.
func W2Topology(b *runtime.Builder, in, out string) {
	s := runtime.StreamOf(b, in, runtime.String(), runtime.Bytes(), runtime.Named("source"))
	runtime.Count(s.GroupByKey(), runtime.Named("counts")).
		ToStream(runtime.Named("changes")).
		To(out, runtime.Named("sink"))
}

// W3Topology is the stream–table join: every stream record is enriched
// with the table's value for its key (store "table").
func W3Topology(b *runtime.Builder, stream, table, out string) {
	t := runtime.TableOf(b, table, runtime.String(), runtime.Bytes(), runtime.Named("table"))
	s := runtime.StreamOf(b, stream, runtime.String(), runtime.Bytes(), runtime.Named("source"))
	runtime.Join(s, t, func(_ string, v, tv []byte) []byte {
		return append(append(make([]byte, 0, len(v)+len(tv)), v...), tv...)
	}, runtime.Named("join")).To(out, runtime.Named("sink"))
}

// runW1 measures the stateless topology against the passthrough.
func (h *harness) runW1(ctx context.Context, g Guarantee) error {
	ctx, cancel := h.phaseCtx(ctx)
	defer cancel()
	prefix := h.ns + "w1-" + string(g) + "-"
	in := prefix + "in"
	defer h.dropTopics(prefix)
	if err := h.createTopics(ctx, false, in); err != nil {
		return err
	}
	n := h.sz.Records
	var kept int64
	if _, err := h.preload(ctx, "W1 input", load.Spec{Topic: in, Keys: h.sz.Keys, ValueSize: h.sz.ValueSize, Count: n, Seed: h.o.Seed},
		func(r *kgo.Record) {
			if keepW1(r.Value) {
				kept++
			}
		}); err != nil {
		return err
	}
	id := "w1-" + string(g)
	r, err := best(h.o.Repeat, func(i int) (Row, error) {
		out, appID := fmt.Sprintf("%sout-%d", prefix, i), fmt.Sprintf("%sapp-%d", prefix, i)
		if err := h.createTopics(ctx, false, out); err != nil {
			return Row{}, err
		}
		b := runtime.NewBuilder()
		W1Topology(b, in, out)
		m := newMeter([]string{in}, []string{out}, kept)
		ms := h.begin(id, "W1 stateless map/filter/to", kept, m.outN.Load)
		w, err := h.runToCompletion(ctx, b, appID, filepath.Join(h.tmp, appID), m)
		ms.end()
		return ms.row(id, "W1 stateless filter → mapValues → to", "choreo", g, n, w), err
	})
	if err != nil {
		return err
	}
	r.Baseline = basePass
	r.Note = fmt.Sprintf("%s of %s records pass the filter", fmtCount(kept), fmtCount(n))
	h.addRow(r)
	return nil
}

// runToCompletion runs the topology until the meter is done, then closes
// the app and returns the meter's window.
func (h *harness) runToCompletion(ctx context.Context, b *runtime.Builder, appID, stateDir string, m *meter) (window, error) {
	a, err := h.startApp(ctx, b, appID, stateDir, m, nil)
	if err != nil {
		return window{}, err
	}
	werr := a.wait(ctx, m.done, "all outputs")
	cerr := a.close()
	if werr != nil {
		return window{}, werr
	}
	if cerr != nil {
		return window{}, fmt.Errorf("app: %w", cerr)
	}
	return m.window(), nil
}

// runW2 measures the keyed count over keys keys (n records; sequential
// keys put every key into the state exactly once) against the stateful
// ceiling of the same key space.
func (h *harness) runW2(ctx context.Context, g Guarantee, variant string, keys int, n int64, sequential bool) error {
	ctx, cancel := h.phaseCtx(ctx)
	defer cancel()
	prefix := h.ns + "w2-" + variant + "-" + string(g) + "-"
	in := prefix + "in"
	defer h.dropTopics(prefix)
	if err := h.createTopics(ctx, false, in); err != nil {
		return err
	}
	if _, err := h.preload(ctx, "W2 input", load.Spec{Topic: in, Keys: keys, ValueSize: h.sz.ValueSize, Count: n, Seed: h.o.Seed, Sequential: sequential}, nil); err != nil {
		return err
	}
	id := "w2-" + variant + "-" + string(g)
	title := fmt.Sprintf("W2 keyed count, %s keys", fmtCount(int64(keys)))
	repeat := h.o.Repeat
	if variant == "rss" {
		repeat = 1
	}
	var changelogRecords int64
	r, err := best(repeat, func(i int) (Row, error) {
		out, appID := fmt.Sprintf("%sout-%d", prefix, i), fmt.Sprintf("%sapp-%d", prefix, i)
		if err := h.createTopics(ctx, false, out); err != nil {
			return Row{}, err
		}
		b := runtime.NewBuilder()
		W2Topology(b, in, out)
		m := newMeter([]string{in}, []string{out}, n)
		ms := h.begin(id, title, n, m.outN.Load)
		w, err := h.runToCompletion(ctx, b, appID, filepath.Join(h.tmp, appID), m)
		ms.end()
		changelogRecords = w.PerTopicOut[changelog.TopicName(appID, "counts")]
		return ms.row(id, title, "choreo", g, n, w), err
	})
	if err != nil {
		return err
	}
	switch variant {
	case "small":
		r.Baseline = baseState
	case "big":
		r.Baseline = baseStateBig
	case "rss":
		r.ID = "rss-" + string(g)
		r.Name = fmt.Sprintf("RSS: keyed count, %s keys in state", fmtCount(int64(keys)))
		r.Baseline = baseStateBig
		r.Note = "every key once: the state ends with every key; ratio against the 1M-key ceiling"
	}
	if r.Note == "" {
		r.Note = fmt.Sprintf("%s changelog records (one per key and commit)", fmtCount(changelogRecords))
	}
	h.addRow(r)
	return nil
}

// runW3 measures the stream–table join: it loads the table (measured as
// its own row), stops the app, preloads the stream with table updates
// mixed in, restarts the app on its state and measures the join.
func (h *harness) runW3(ctx context.Context, g Guarantee) error {
	ctx, cancel := h.phaseCtx(ctx)
	defer cancel()
	prefix := h.ns + "w3-" + string(g) + "-"
	table, stream, out, appID := prefix+"table", prefix+"stream", prefix+"out", prefix+"app"
	defer h.dropTopics(prefix)
	if err := h.createTopics(ctx, true, table); err != nil {
		return err
	}
	if err := h.createTopics(ctx, false, stream, out); err != nil {
		return err
	}
	keys := h.sz.BigKeys
	if _, err := h.preload(ctx, "W3 table", load.Spec{Topic: table, Keys: keys, ValueSize: h.sz.ValueSize, Count: int64(keys), Seed: h.o.Seed, Sequential: true}, nil); err != nil {
		return err
	}
	stateDir := filepath.Join(h.tmp, appID)
	tableCL := changelog.TopicName(appID, "table")

	// 1. Load the table: done when every key is in the changelog.
	b := runtime.NewBuilder()
	W3Topology(b, stream, table, out)
	m := newMeter([]string{table}, []string{tableCL}, int64(keys))
	id := "w3-load-" + string(g)
	title := fmt.Sprintf("W3 table load, %s keys", fmtCount(int64(keys)))
	ms := h.begin(id, title, int64(keys), m.outN.Load)
	w, err := h.runToCompletion(ctx, b, appID, stateDir, m)
	ms.end()
	if err != nil {
		return fmt.Errorf("table load: %w", err)
	}
	r := ms.row(id, title+" (TableOf → store + changelog)", "choreo", g, int64(keys), w)
	r.Baseline = baseStateBig
	r.Note = "window ends with the last changelog record, written by the commit"
	h.addRow(r)

	// 2. The stream, with every UpdateEvery-th record a table update.
	total := h.sz.StreamRecords
	var streamN, updates int64
	err = func() error {
		var done atomic.Int64
		h.prog.start("preload W3 stream and updates", total, done.Load)
		defer h.prog.stop()
		sg := load.NewGen(load.Spec{Topic: stream, Keys: keys, ValueSize: h.sz.ValueSize, Count: total, Seed: h.o.Seed + 1})
		ug := load.NewGen(load.Spec{Topic: table, Keys: keys, ValueSize: h.sz.ValueSize, Count: total, Seed: h.o.Seed + 2})
		p := load.NewProducer(h.cl, 0, true)
		for i := range total {
			var rec *kgo.Record
			if h.sz.UpdateEvery > 0 && i%int64(h.sz.UpdateEvery) == int64(h.sz.UpdateEvery-1) {
				rec = ug.Next()
				updates++
			} else {
				rec = sg.Next()
				streamN++
			}
			if err := p.Send(ctx, rec); err != nil {
				return err
			}
			done.Store(i + 1)
		}
		return p.Flush(ctx)
	}()
	if err != nil {
		return err
	}

	// 3. The join, on the warm state of step 1.
	b = runtime.NewBuilder()
	W3Topology(b, stream, table, out)
	m = newMeter([]string{stream, table}, []string{out}, streamN)
	id = "w3-" + string(g)
	title = fmt.Sprintf("W3 stream–table join, %s-key table", fmtCount(int64(keys)))
	ms = h.begin(id, title, streamN, m.outN.Load)
	w, err = h.runToCompletion(ctx, b, appID, stateDir, m)
	ms.end()
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	r = ms.row(id, title, "choreo", g, total, w)
	r.Baseline = baseStateBig
	r.Note = fmt.Sprintf("%s stream records + %s table updates (1 in %d)", fmtCount(streamN), fmtCount(updates), h.sz.UpdateEvery)
	h.addRow(r)
	return nil
}
