package engine

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/changelog"
	"github.com/choreo-go/choreo/partition"
	"github.com/choreo-go/choreo/state"
)

// MetricsNamespace prefixes every metric of the engine.
const MetricsNamespace = "choreo"

// metrics is the engine's Prometheus collector. The hot path never touches
// a label: counters are atomics found once per fetched partition or per run
// of a task (not per record), gauges the loop owns (lag, task phases) are
// copied into a snapshot once per loop iteration, and Collect turns all of
// it into constant metrics at scrape time.
type metrics struct {
	appID string
	lc    *lifecycle

	processLatency prometheus.Histogram
	commitLatency  *prometheus.HistogramVec
	commitOK       prometheus.Observer
	commitAborted  prometheus.Observer

	// produced counts acknowledged records per topic (*atomic.Int64);
	// written from franz-go's promise goroutines.
	produced sync.Map

	rebalances  atomic.Int64
	taskChanges [3]atomic.Int64 // by taskChange
	// recordErrors counts skipped and dead-lettered records by ErrorKind.
	skipped      [3]atomic.Int64
	deadLettered [3]atomic.Int64

	mu    sync.Mutex
	tasks map[partition.TaskID]*taskMetrics // kept after a task moves away: counters never go back
	// Snapshot of loop-owned state (publish).
	lags      []lagSample
	dbs       []taskDB
	active    int
	restoring int
	restores  map[restoreKey]*restoreStat
}

type taskMetrics struct {
	name         string
	processNanos atomic.Int64
	// consumed and processed are per input topic of the task; the maps
	// are fixed at creation.
	consumed  map[string]*atomic.Int64
	processed map[string]*atomic.Int64
	topics    []string
	// sent counts records the task handed to the producer, per topic;
	// guarded by metrics.mu (a new topic is added at most once).
	sent map[string]*atomic.Int64
}

type lagSample struct {
	task, topic string
	partition   int32
	lag         int64
}

type taskDB struct {
	task string
	db   state.DB
}

type restoreKey struct{ task, store string }

type restoreStat struct {
	topic     string
	partition int32
	end       int64
	remaining int64
	// inProgress: started or ended and not suspended since; remaining is
	// exported only then.
	inProgress bool
	restored   int64
}

type taskChange int

const (
	taskAssigned taskChange = iota
	taskRevoked
	taskLost
)

var taskChangeNames = [3]string{"assigned", "revoked", "lost"}

var errorKindNames = [3]string{
	DeserializationError: "deserialization",
	ProcessingError:      "processing",
	ProductionError:      "production",
}

var stateNames = []State{Created, Rebalancing, Running, PendingShutdown, NotRunning, Error}

// Metric descriptions; application_id is a constant label added per engine.
type metricDescs struct {
	state, consumed, processed, sent, processTime, produced, lag,
	restoreRemaining, restored, stateSize, tasks, rebalances, taskChanges,
	skipped, deadLettered *prometheus.Desc
}

func newDescs(appID string) metricDescs {
	c := prometheus.Labels{"application_id": appID}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(MetricsNamespace+"_"+name, help, labels, c)
	}
	return metricDescs{
		state:            d("app_state", "Lifecycle state of the app: 1 for the current state, 0 for the others.", "state"),
		consumed:         d("records_consumed_total", "Records fetched from an input partition and queued to the task (transaction markers excluded).", "task", "topic"),
		processed:        d("records_processed_total", "Records of an input topic run through the task's topology, including records that failed and were skipped or dead-lettered.", "task", "topic"),
		sent:             d("records_sent_total", "Records the task handed to the producer, by topic: sink, repartition and dead-letter records (changelog records are written at commit and counted in records_produced_total).", "task", "topic"),
		processTime:      d("process_seconds_total", "Time the task spent processing records (the topology's work, without fetch, commit or restore).", "task"),
		produced:         d("records_produced_total", "Records the brokers acknowledged, per topic: sinks, repartition, changelog and dead-letter topics.", "topic"),
		lag:              d("consumer_lag_records", "End offset (last stable offset, or high watermark) of an input partition minus the task's next offset to process, as of the last fetch.", "task", "topic", "partition"),
		restoreRemaining: d("restore_remaining_records", "Offsets of a store's changelog partition still to replay in the current restore (an upper bound on records: compaction and transaction markers leave gaps); 0 once restored.", "task", "store", "topic", "partition"),
		restored:         d("restored_records_total", "Changelog records applied to a store by restores; rate() of it is the restore rate.", "task", "store", "topic", "partition"),
		stateSize:        d("state_size_bytes", "Approximate size of a task's local state: disk space of its Pebble database (all its stores, WAL included), or key and value bytes of in-memory state.", "task"),
		tasks:            d("tasks", "Tasks this instance owns, by phase.", "phase"),
		rebalances:       d("rebalances_total", "Group assignments this instance received (one per completed rebalance)."),
		taskChanges:      d("task_changes_total", "Tasks assigned to, revoked from, or lost by this instance.", "change"),
		skipped:          d("records_skipped_total", "Records dropped by a skip policy, by error kind.", "kind"),
		deadLettered:     d("records_dead_lettered_total", "Records sent to the dead-letter topic, by error kind.", "kind"),
	}
}

func newMetrics(appID string, lc *lifecycle) *metrics {
	c := prometheus.Labels{"application_id": appID}
	m := &metrics{
		appID: appID,
		lc:    lc,
		processLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: MetricsNamespace,
			Name:      "process_latency_seconds",
			Help:      "Processing time per record, averaged over each run of up to 500 records of one task (one observation per run).",
			// 100 ns to 160 ms.
			Buckets:     prometheus.ExponentialBuckets(1e-7, 3, 14),
			ConstLabels: c,
		}),
		commitLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: MetricsNamespace,
			Name:      "commit_latency_seconds",
			Help:      "Duration of commits that had work: changelogs produced, outputs flushed (or the transaction ended), stores written, offsets committed.",
			// 1 ms to 16 s.
			Buckets:     prometheus.ExponentialBuckets(0.001, 2, 15),
			ConstLabels: c,
		}, []string{"result"}),
		tasks:    make(map[partition.TaskID]*taskMetrics),
		restores: make(map[restoreKey]*restoreStat),
	}
	m.commitOK = m.commitLatency.WithLabelValues("committed")
	m.commitAborted = m.commitLatency.WithLabelValues("aborted")
	return m
}

// Collector returns the engine's metrics, to register on a Prometheus
// registry. It may be registered before Run and stays valid after it.
func (e *Engine) Collector() prometheus.Collector { return collector{e.met, newDescs(e.cfg.AppID)} }

// task returns the counters of t, creating them on first use.
func (m *metrics) task(t *task) *taskMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.taskLocked(t)
}

func (m *metrics) taskLocked(t *task) *taskMetrics {
	tm := m.tasks[t.id]
	if tm == nil {
		tm = &taskMetrics{name: t.name, consumed: make(map[string]*atomic.Int64, len(t.sub.topics)),
			processed: make(map[string]*atomic.Int64, len(t.sub.topics)), topics: t.sub.topics, sent: make(map[string]*atomic.Int64)}
		for _, topic := range t.sub.topics {
			tm.consumed[topic] = new(atomic.Int64)
			tm.processed[topic] = new(atomic.Int64)
		}
		m.tasks[t.id] = tm
	}
	return tm
}

// consumedRecords counts one fetched partition's records for t.
func (m *metrics) consumedRecords(t *task, topic string, recs []*kgo.Record) {
	n := int64(len(recs))
	for _, r := range recs {
		if r.Attrs.IsControl() {
			n--
		}
	}
	if c := m.task(t).consumed[topic]; c != nil && n > 0 {
		c.Add(n)
	}
}

// processedRecords counts one run of t.process: n records in d, taken
// from the per-queue and per-topic tallies the task keeps on its own
// goroutine (so the hot path touches no shared counter).
func (m *metrics) processedRecords(t *task, n int, d time.Duration) {
	if n <= 0 && len(t.sentTally) == 0 {
		return
	}
	m.mu.Lock()
	tm := m.taskLocked(t)
	for i := range t.sentTally {
		st := &t.sentTally[i]
		if st.n == 0 {
			continue
		}
		c := tm.sent[st.topic]
		if c == nil {
			c = new(atomic.Int64)
			tm.sent[st.topic] = c
		}
		c.Add(st.n)
		st.n = 0
	}
	m.mu.Unlock()
	for _, q := range t.queues {
		if q.tally > 0 {
			if c := tm.processed[q.topic]; c != nil {
				c.Add(q.tally)
			}
			q.tally = 0
		}
	}
	if n > 0 {
		tm.processNanos.Add(int64(d))
		m.processLatency.Observe(d.Seconds() / float64(n))
	}
}

// producedRecord counts a record the brokers acknowledged.
func (m *metrics) producedRecord(topic string) {
	c, ok := m.produced.Load(topic)
	if !ok {
		c, _ = m.produced.LoadOrStore(topic, new(atomic.Int64))
	}
	c.(*atomic.Int64).Add(1)
}

func (m *metrics) commitDone(committed bool, d time.Duration) {
	if committed {
		m.commitOK.Observe(d.Seconds())
	} else {
		m.commitAborted.Observe(d.Seconds())
	}
}

func (m *metrics) tasksChanged(c taskChange, n int) { m.taskChanges[c].Add(int64(n)) }

func (m *metrics) recordError(kind ErrorKind, a Action) {
	if kind < 0 || int(kind) >= len(errorKindNames) {
		return
	}
	switch a {
	case Skip:
		m.skipped[kind].Add(1)
	case DeadLetter:
		m.deadLettered[kind].Add(1)
	}
}

// publish copies the loop-owned gauges (lag, task phases, task DBs) for
// the collector. The loop calls it once per iteration, under e.mu.
func (m *metrics) publish(e *Engine) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lags, m.dbs = m.lags[:0], m.dbs[:0]
	m.active, m.restoring = 0, 0
	for _, t := range e.tasks {
		switch t.phase {
		case phaseRestoring:
			m.restoring++
		case phaseActive:
			m.active++
		default:
			continue
		}
		// Counters start at 0 when the task appears, not at its first
		// record, so rate() sees the first increase.
		m.taskLocked(t)
		m.dbs = append(m.dbs, taskDB{task: t.name, db: t.db})
		if t.phase != phaseActive {
			continue
		}
		for _, q := range t.queues {
			if q.next < 0 || q.lso < 0 {
				continue // not known yet
			}
			m.lags = append(m.lags, lagSample{task: t.name, topic: q.topic, partition: q.partition, lag: max(q.lso-q.next, 0)})
		}
	}
}

// restoreListener feeds the restore metrics and passes every call on to
// the user's listener.
type restoreListener struct {
	m    *metrics
	next changelog.Listener // the user's, or nil
}

func (l restoreListener) stat(task, store, topic string, partition int32) *restoreStat {
	k := restoreKey{task, store}
	s := l.m.restores[k]
	if s == nil {
		s = &restoreStat{}
		l.m.restores[k] = s
	}
	s.topic, s.partition = topic, partition
	return s
}

func (l restoreListener) OnRestoreStart(task, store, topic string, partition int32, startOffset, endOffset int64) {
	l.m.mu.Lock()
	s := l.stat(task, store, topic, partition)
	s.end, s.remaining, s.inProgress = endOffset, max(endOffset-startOffset, 0), true
	l.m.mu.Unlock()
	if l.next != nil {
		l.next.OnRestoreStart(task, store, topic, partition, startOffset, endOffset)
	}
}

func (l restoreListener) OnBatchRestored(task, store, topic string, partition int32, batchEndOffset, restored int64) {
	l.m.mu.Lock()
	s := l.stat(task, store, topic, partition)
	s.remaining = max(s.end-(batchEndOffset+1), 0)
	s.restored += restored
	l.m.mu.Unlock()
	if l.next != nil {
		l.next.OnBatchRestored(task, store, topic, partition, batchEndOffset, restored)
	}
}

func (l restoreListener) OnRestoreEnd(task, store, topic string, partition int32, totalRestored int64) {
	l.m.mu.Lock()
	s := l.stat(task, store, topic, partition)
	s.remaining, s.inProgress = 0, true
	l.m.mu.Unlock()
	if l.next != nil {
		l.next.OnRestoreEnd(task, store, topic, partition, totalRestored)
	}
}

func (l restoreListener) OnRestoreSuspended(task, store, topic string, partition int32, totalRestored int64) {
	l.m.mu.Lock()
	// The task moved away or the restore starts over: how much is left
	// here is no longer known.
	l.stat(task, store, topic, partition).inProgress = false
	l.m.mu.Unlock()
	if l.next != nil {
		l.next.OnRestoreSuspended(task, store, topic, partition, totalRestored)
	}
}

// collector exports metrics as a prometheus.Collector.
type collector struct {
	m *metrics
	d metricDescs
}

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	d := c.d
	for _, desc := range []*prometheus.Desc{d.state, d.consumed, d.processed, d.sent, d.processTime, d.produced, d.lag,
		d.restoreRemaining, d.restored, d.stateSize, d.tasks, d.rebalances, d.taskChanges, d.skipped, d.deadLettered} {
		ch <- desc
	}
	c.m.processLatency.Describe(ch)
	c.m.commitLatency.Describe(ch)
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	m, d := c.m, c.d
	counter := func(desc *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	}

	cur := m.lc.get()
	for _, s := range stateNames {
		v := 0.0
		if s == cur {
			v = 1
		}
		gauge(d.state, v, s.String())
	}
	counter(d.rebalances, m.rebalances.Load())
	for i, name := range taskChangeNames {
		counter(d.taskChanges, m.taskChanges[i].Load(), name)
	}
	for i, name := range errorKindNames {
		counter(d.skipped, m.skipped[i].Load(), name)
		counter(d.deadLettered, m.deadLettered[i].Load(), name)
	}
	m.produced.Range(func(k, v any) bool {
		counter(d.produced, v.(*atomic.Int64).Load(), k.(string))
		return true
	})
	m.processLatency.Collect(ch)
	m.commitLatency.Collect(ch)

	// Copy under the lock; DB sizes are read after it, since Pebble's
	// metrics take their own locks.
	m.mu.Lock()
	tasks := make([]*taskMetrics, 0, len(m.tasks))
	sent := make(map[*taskMetrics]map[string]int64, len(m.tasks))
	for _, tm := range m.tasks {
		tasks = append(tasks, tm)
		if len(tm.sent) > 0 {
			sent[tm] = make(map[string]int64, len(tm.sent))
			for topic, c := range tm.sent {
				sent[tm][topic] = c.Load()
			}
		}
	}
	// The loop stops publishing when Run returns: drop its gauges then.
	running := cur != NotRunning && cur != Error && cur != Created
	var lags []lagSample
	var dbs []taskDB
	if running {
		lags = append(lags, m.lags...)
		dbs = append(dbs, m.dbs...)
	}
	active, restoring := m.active, m.restoring
	if !running {
		active, restoring = 0, 0
	}
	type restoreSample struct {
		k restoreKey
		s restoreStat
	}
	restores := make([]restoreSample, 0, len(m.restores))
	for k, s := range m.restores {
		restores = append(restores, restoreSample{k, *s})
	}
	m.mu.Unlock()

	for _, tm := range tasks {
		ch <- prometheus.MustNewConstMetric(d.processTime, prometheus.CounterValue, time.Duration(tm.processNanos.Load()).Seconds(), tm.name)
		for _, topic := range tm.topics {
			counter(d.consumed, tm.consumed[topic].Load(), tm.name, topic)
			counter(d.processed, tm.processed[topic].Load(), tm.name, topic)
		}
		for topic, c := range sent[tm] {
			counter(d.sent, c, tm.name, topic)
		}
	}
	for _, l := range lags {
		gauge(d.lag, float64(l.lag), l.task, l.topic, strconv.FormatInt(int64(l.partition), 10))
	}
	for _, r := range restores {
		p := strconv.FormatInt(int64(r.s.partition), 10)
		counter(d.restored, r.s.restored, r.k.task, r.k.store, r.s.topic, p)
		if r.s.inProgress {
			gauge(d.restoreRemaining, float64(r.s.remaining), r.k.task, r.k.store, r.s.topic, p)
		}
	}
	gauge(d.tasks, float64(active), "active")
	gauge(d.tasks, float64(restoring), "restoring")
	for _, t := range dbs {
		gauge(d.stateSize, float64(t.db.ApproximateSize()), t.task)
	}
}
