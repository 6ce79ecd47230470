package changelog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/state"
)

// Sentinel errors of the Restorer, for errors.Is on Result.Err.
var (
	// ErrSuspended is wrapped by Result.Err when a restore stopped before
	// completing: the task was removed, or Run returned. The progress
	// made is applied and checkpointed; a later Add resumes from it.
	ErrSuspended = errors.New("changelog: restore suspended")
	// ErrStopped is wrapped by Result.Err for a task added after Run
	// returned (or still queued when it returned): nothing was done.
	ErrStopped = errors.New("changelog: restorer stopped")
)

// Listener observes restore progress, like Kafka Streams'
// StateRestoreListener. Its methods are called from the Run goroutine, one at
// a time; they must return quickly and must not wait on the Restorer.
//
// For every store that has records to replay, OnRestoreStart is called once,
// then OnBatchRestored after each applied batch, then either OnRestoreEnd
// (the store reached its end offset) or OnRestoreSuspended (the task was
// removed, Run returned, or the restore restarts from scratch because the log
// changed under it, in which case OnRestoreStart follows again). A store whose
// checkpoint is already at the end offset has nothing to replay and gets no
// calls.
type Listener interface {
	// OnRestoreStart is called when replay of a store begins, with the
	// first offset to read and the end offset (exclusive) to reach.
	OnRestoreStart(task, store, topic string, partition int32, startOffset, endOffset int64)
	// OnBatchRestored is called after a batch was applied to the store's
	// DB: batchEndOffset is the offset of the last record applied and
	// restored the number of records of this store in the batch.
	OnBatchRestored(task, store, topic string, partition int32, batchEndOffset, restored int64)
	// OnRestoreEnd is called when the store reached its end offset and all
	// its records are in its DB (after a bulk load, once the load ended);
	// totalRestored counts them.
	OnRestoreEnd(task, store, topic string, partition int32, totalRestored int64)
	// OnRestoreSuspended is called when replay of the store stops before
	// its end; totalRestored counts the records applied so far.
	OnRestoreSuspended(task, store, topic string, partition int32, totalRestored int64)
}

// StoreChangelog names a store of a task and the changelog partition that
// restores it (the partition is the task's partition).
type StoreChangelog struct {
	// Store is the store's name in the DB (and its key in
	// Checkpoint.Changelogs).
	Store string
	// Topic is the changelog topic, TopicName(app, Store).
	Topic string
	// Partition is the task's partition.
	Partition int32
}

// Request asks the Restorer to bring the stores of one task up to date.
type Request struct {
	// Task identifies the task (unique among the tasks being restored).
	Task string
	// DB holds all stores of the task. The Restorer writes to it from the
	// Run goroutine only, between Add and the call of Done (or the close
	// of the channel Remove returned).
	DB state.DB
	// Stores lists the logged stores of the task with their changelogs.
	Stores []StoreChangelog
	// Done is called exactly once, from the Run goroutine (or from Add
	// when the Restorer is stopped), with the outcome. It must not block
	// on the Restorer; it may call Add and Remove. Nil is allowed.
	Done func(Result)
}

// Result is the outcome of a Request.
type Result struct {
	// Task is the Request's task.
	Task string
	// Restored counts, per store, the changelog records applied (since
	// the last wipe).
	Restored map[string]int64
	// Total is the sum of Restored.
	Total int64
	// Wiped is true when the DB was wiped and its stores restored from the
	// log start: there was no checkpoint, or it was not trusted.
	Wiped bool
	// WipeReason says why the DB was wiped.
	WipeReason string
	// Err is nil when every store reached its end offset and the DB is
	// synced. Otherwise it wraps ErrSuspended (removed or Run returned;
	// progress is kept), ErrStopped, a DB error (e.g. state.ErrCorrupt),
	// or a non-retriable broker error (e.g. an authorization failure or
	// ErrPartitionMismatch).
	Err error
}

// RestorerOptions configures a Restorer. The zero value is usable.
type RestorerOptions struct {
	// BatchRecords is the number of records applied per DB write (default
	// 10_000).
	BatchRecords int
	// BatchBytes caps the key and value bytes of one DB write (default
	// state.DefaultMemTableSize/4). Keep it below half of a Pebble DB's
	// memtable, or each write forces a flush.
	BatchBytes int
	// Logger receives the Restorer's logs (default: discarded).
	Logger *slog.Logger
	// Listener observes progress (optional).
	Listener Listener
	// Now is the wall clock, used to date checkpoints and judge their age
	// (default time.Now).
	Now func() time.Time
	// BulkLoadRecords is the number of records a restore into a wiped DB
	// must have to replay, over all the task's stores, for the DB to be
	// switched to bulk load mode if it implements state.BulkLoader
	// (default 50_000). Switching reopens a Pebble DB twice, which costs
	// more than it saves on a short log. Negative: never.
	BulkLoadRecords int64
	// TailProbeAfter is how long a partition may deliver nothing before
	// the Restorer asks the broker directly whether only aborted records
	// and transaction markers remain before the end offset (default
	// 100ms). See the package documentation.
	TailProbeAfter time.Duration
}

// Restorer replays changelog partitions into task DBs. It consumes with one
// group-less kgo client, created by the caller with
// kgo.FetchIsolationLevel(kgo.ReadCommitted()) (and best with
// kgo.KeepControlRecords()); the Restorer adds and removes the partitions of
// the tasks it restores and owns the client's consumption while Run runs.
//
// Add and Remove may be called from any goroutine, before or while Run runs.
type Restorer struct {
	cl   *kgo.Client
	adm  *kadm.Client
	opts RestorerOptions
	log  *slog.Logger
	now  func() time.Time

	mu         sync.Mutex
	events     []event
	pollCancel context.CancelFunc
	running    bool
	stopped    bool
	wake       chan struct{}

	// Owned by the Run goroutine.
	runCtx    context.Context
	runCancel context.CancelFunc
	wg        sync.WaitGroup
	tasks     map[string]*task
	parts     map[tp]*storeState
	parked    map[tp]struct{} // paused in the client, not yet removed (see unconsume)
	consuming int
	gen       uint64
	knownIDs  map[string][16]byte // topic IDs the client consumed
}

type tp struct {
	topic     string
	partition int32
}

type eventKind uint8

const (
	evAdd eventKind = iota
	evRemove
	evMeta
	evProbe
	evEnded
)

type event struct {
	kind  eventKind
	req   Request       // evAdd
	task  string        // evRemove, evMeta, evProbe, evEnded
	wait  chan struct{} // evRemove
	gen   uint64        // evMeta, evProbe, evEnded
	meta  *taskMeta     // evMeta
	err   error         // evMeta, evProbe
	probe probeResult   // evProbe
}

type task struct {
	req        Request
	gen        uint64
	initCancel context.CancelFunc // set while metadata loads
	forceWipe  string             // non-empty: wipe on the next begin, for this reason
	restoring  bool               // metadata loaded, stores set up
	stores     []*storeState
	remaining  int // stores not yet at their end
	cp         state.Checkpoint
	ws         state.WriteSet
	chainStart time.Time // Written of intermediate checkpoints
	endListed  time.Time // when the end offsets were listed
	wiped      bool
	wipeReason string
	bulk       bool // the DB is in bulk load mode (state.BulkLoader)
	dirty      bool // positions moved since the last Apply
	stopping   bool // a Remove is queued: apply nothing more
	restarts   int  // restarts from the log start within this Add
	// ending is closed when the background end of bulk load mode of a
	// task whose stores all reached their end returns, with endErr.
	ending chan struct{}
	endErr error
}

// maxRestarts bounds how often one restore starts over because the log
// start offset moved past it.
const maxRestarts = 3

type storeState struct {
	t            *task
	idx          int
	sc           StoreChangelog
	id           [16]byte
	leader       int32
	end          int64 // end offset (exclusive) to reach
	pos          int64 // next offset to read
	consuming    bool
	done         bool
	started      bool
	endReported  bool
	restored     int64 // applied records
	batchN       int64 // records in the pending batch
	batchLast    int64 // offset of the last record in the pending batch
	lastProgress time.Time
	lastLog      time.Time // last progress log line
	lastProbe    time.Time
	probing      bool
	probeFails   int
	// maxGap is the longest time between two deliveries of records so
	// far: a partition is probed only once it is silent for longer.
	maxGap    time.Duration
	delivered bool // records were delivered since the restore began
}

// restoreLogEvery spaces the progress log lines of a long restore.
const restoreLogEvery = 5 * time.Second

// NewRestorer returns a Restorer that consumes with cl and lists offsets and
// metadata with adm. Call Run to start it.
//
// cl must be a client without a consumer group, created with
// kgo.FetchIsolationLevel(kgo.ReadCommitted()) and preferably
// kgo.KeepControlRecords() (see the package documentation) and a short
// kgo.FetchMaxWait: the partitions of a task added while a fetch waits at the
// broker for new records of finished ones are fetched only once it returns.
// It must not be used to consume anything else: the Restorer adds and removes
// its partitions and makes it forget recreated topics. Run checks the group and the
// isolation level.
func NewRestorer(cl *kgo.Client, adm *kadm.Client, opts RestorerOptions) *Restorer {
	if opts.BatchRecords <= 0 {
		opts.BatchRecords = 10_000
	}
	if opts.BatchBytes <= 0 {
		opts.BatchBytes = state.DefaultMemTableSize / 4
	}
	if opts.TailProbeAfter <= 0 {
		opts.TailProbeAfter = 100 * time.Millisecond
	}
	if opts.BulkLoadRecords == 0 {
		opts.BulkLoadRecords = 50_000
	}
	r := &Restorer{
		cl:    cl,
		adm:   adm,
		opts:  opts,
		log:   opts.Logger,
		now:   opts.Now,
		wake:  make(chan struct{}, 1),
		tasks: make(map[string]*task),
		parts: make(map[tp]*storeState),

		parked: make(map[tp]struct{}),

		knownIDs: make(map[string][16]byte),
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	return r
}

// Add starts restoring a task. The outcome goes to req.Done. Adding a task
// that is already being restored, or a changelog partition another task is
// restoring, fails that request.
func (r *Restorer) Add(req Request) {
	if !r.enqueue(event{kind: evAdd, req: req}) {
		done(req, Result{Task: req.Task, Err: fmt.Errorf("%w: task %q not restored", ErrStopped, req.Task)})
	}
}

// Remove stops restoring task, e.g. because its partition was revoked. The
// records already consumed are applied and checkpointed, the DB is synced,
// the task's Done is called with an error wrapping ErrSuspended, and the
// returned channel is closed once the Restorer no longer touches the DB
// (within one poll; at once if the task is unknown). A later Add resumes from
// the checkpoint. A task that reached the end of every store and only
// leaves bulk load mode is waited for instead, and Done reports its outcome.
func (r *Restorer) Remove(task string) (wait <-chan struct{}) {
	ch := make(chan struct{})
	if !r.enqueue(event{kind: evRemove, task: task, wait: ch}) {
		close(ch)
	}
	return ch
}

func done(req Request, res Result) {
	if req.Done != nil {
		req.Done(res)
	}
}

// enqueue hands ev to the Run goroutine and interrupts its poll. It reports
// false when the Restorer has stopped.
func (r *Restorer) enqueue(ev event) bool {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return false
	}
	r.events = append(r.events, ev)
	if r.pollCancel != nil {
		r.pollCancel()
		r.pollCancel = nil
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return true
}

// removePending reports whether a Remove of task is queued.
func (r *Restorer) removePending(task string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.events {
		if r.events[i].kind == evRemove && r.events[i].task == task {
			return true
		}
	}
	return false
}

func (r *Restorer) takeEvents() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	evs := r.events
	r.events = nil
	return evs
}

var errClientClosed = errors.New("changelog: restore client closed")

// Run is the restore loop. It returns nil once ctx is done, after suspending
// the tasks still restoring (their progress applied and synced, Done called
// with ErrSuspended); it returns an error at once if the client is not
// suitable (a group consumer, or not read-committed) or if the client is
// closed while Run runs. Run may be called once.
func (r *Restorer) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.running || r.stopped {
		r.mu.Unlock()
		return errors.New("changelog: Restorer.Run called twice")
	}
	r.running = true
	r.mu.Unlock()

	r.runCtx, r.runCancel = context.WithCancel(ctx)
	defer r.runCancel()

	if err := r.checkClient(); err != nil {
		r.shutdown(fmt.Errorf("%w: %w", ErrStopped, err))
		return err
	}

	for {
		for _, ev := range r.takeEvents() {
			r.handle(ev)
		}
		if ctx.Err() != nil {
			r.shutdown(fmt.Errorf("%w: %w", ErrSuspended, context.Cause(ctx)))
			return nil
		}
		if r.consuming == 0 {
			select {
			case <-ctx.Done():
			case <-r.wake:
			}
			continue
		}
		fetches, polled := r.poll(ctx)
		if !polled {
			continue
		}
		if fetches.IsClientClosed() {
			r.shutdown(fmt.Errorf("%w: %w", ErrSuspended, errClientClosed))
			return errClientClosed
		}
		now := time.Now() // real time: TailProbeAfter is a real duration
		r.process(fetches, now)
		r.probeIdle(now)
	}
}

func (r *Restorer) checkClient() error {
	if g, _ := r.cl.OptValue(kgo.ConsumerGroup).(string); g != "" {
		return fmt.Errorf("changelog: restore client must not consume as group %q: use a group-less client", g)
	}
	if lvl, _ := r.cl.OptValue(kgo.FetchIsolationLevel).(int8); lvl != 1 {
		return errors.New("changelog: restore client must read committed: create it with kgo.FetchIsolationLevel(kgo.ReadCommitted())")
	}
	if keep, _ := r.cl.OptValue(kgo.KeepControlRecords).(bool); !keep {
		r.log.Debug("changelog: restore client does not keep control records: the ends of transactional changelogs are found by probing")
	}
	return nil
}

// poll polls the client until records arrive, TailProbeAfter passes, or an
// event is enqueued.
func (r *Restorer) poll(ctx context.Context) (kgo.Fetches, bool) {
	pctx, cancel := context.WithTimeout(ctx, r.opts.TailProbeAfter)
	defer cancel()
	r.mu.Lock()
	if len(r.events) > 0 {
		r.mu.Unlock()
		return nil, false
	}
	r.pollCancel = cancel
	r.mu.Unlock()
	fetches := r.cl.PollFetches(pctx)
	r.mu.Lock()
	r.pollCancel = nil
	r.mu.Unlock()
	return fetches, true
}

func (r *Restorer) handle(ev event) {
	switch ev.kind {
	case evAdd:
		r.handleAdd(ev.req)
	case evRemove:
		switch t := r.tasks[ev.task]; {
		case t == nil:
		case t.ending != nil:
			// Restored already: only the end of bulk load mode is left.
			r.finish(t)
		default:
			r.suspend(t, fmt.Errorf("%w: task %q removed", ErrSuspended, ev.task))
		}
		close(ev.wait)
	case evMeta:
		r.handleMeta(ev)
	case evProbe:
		r.handleProbe(ev)
	case evEnded:
		if t := r.tasks[ev.task]; t != nil && t.gen == ev.gen && t.ending != nil {
			r.finish(t)
		}
	}
}

func (r *Restorer) handleAdd(req Request) {
	fail := func(err error) { done(req, Result{Task: req.Task, Err: err}) }
	switch {
	case req.Task == "":
		fail(errors.New("changelog: restore request without a task"))
		return
	case req.DB == nil:
		fail(fmt.Errorf("changelog: restore request for task %q without a DB", req.Task))
		return
	case r.tasks[req.Task] != nil:
		fail(fmt.Errorf("changelog: task %q is already restoring", req.Task))
		return
	}
	seen := make(map[tp]bool, len(req.Stores))
	names := make(map[string]bool, len(req.Stores))
	for _, sc := range req.Stores {
		k := tp{sc.Topic, sc.Partition}
		switch {
		case sc.Store == "" || sc.Topic == "":
			fail(fmt.Errorf("changelog: task %q: store changelog without store or topic name", req.Task))
			return
		case seen[k] || names[sc.Store]:
			fail(fmt.Errorf("changelog: task %q lists store %q or changelog %s[%d] twice", req.Task, sc.Store, sc.Topic, sc.Partition))
			return
		}
		for _, other := range r.tasks {
			for _, osc := range other.req.Stores {
				if osc.Topic == sc.Topic && osc.Partition == sc.Partition {
					fail(fmt.Errorf("changelog: task %q: changelog %s[%d] is being restored by task %q", req.Task, sc.Topic, sc.Partition, other.req.Task))
					return
				}
			}
		}
		seen[k] = true
		names[sc.Store] = true
	}
	req.Stores = append([]StoreChangelog(nil), req.Stores...)
	t := &task{req: req}
	r.tasks[req.Task] = t
	r.startInit(t)
}

// startInit loads the task's changelog metadata in a goroutine; the result
// comes back as an evMeta event.
func (r *Restorer) startInit(t *task) {
	r.gen++
	t.gen = r.gen
	t.restoring = false
	ctx, cancel := context.WithCancel(r.runCtx)
	t.initCancel = cancel
	gen, name, stores := t.gen, t.req.Task, t.req.Stores
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer cancel()
		m, err := r.loadMetaRetry(ctx, name, stores)
		r.enqueue(event{kind: evMeta, task: name, gen: gen, meta: m, err: err})
	}()
}

func (r *Restorer) handleMeta(ev event) {
	t := r.tasks[ev.task]
	if t == nil || t.gen != ev.gen || t.restoring {
		return
	}
	t.initCancel = nil
	if ev.err != nil {
		r.fail(t, fmt.Errorf("changelog: task %q: %w", t.req.Task, ev.err))
		return
	}
	r.begin(t, ev.meta)
}

// begin decides where each store restores from (wiping the DB if the
// checkpoint is not trusted) and starts consuming.
func (r *Restorer) begin(t *task, m *taskMeta) {
	db := t.req.DB
	cp, ok, err := db.Checkpoint()
	if err != nil {
		r.fail(t, fmt.Errorf("changelog: task %q: read checkpoint: %w", t.req.Task, err))
		return
	}
	starts := make([]int64, len(t.req.Stores))
	reason := t.forceWipe
	if reason == "" {
		reason, err = r.distrust(t, cp, ok, m, starts)
		if err != nil {
			r.fail(t, fmt.Errorf("changelog: task %q: %w", t.req.Task, err))
			return
		}
	}
	now := r.now()
	if reason != "" {
		if err := db.Wipe(); err != nil {
			r.fail(t, fmt.Errorf("changelog: task %q: wipe: %w", t.req.Task, err))
			return
		}
		var replay int64
		for _, pm := range m.parts {
			replay += pm.end - pm.start
		}
		if bl, ok := db.(state.BulkLoader); ok && !t.bulk && r.opts.BulkLoadRecords >= 0 && replay >= r.opts.BulkLoadRecords {
			// The DB is empty and every store replays from the
			// log start: let it defer its compactions to the end.
			if err := bl.BeginBulkLoad(); err != nil {
				r.fail(t, fmt.Errorf("changelog: task %q: begin bulk load: %w", t.req.Task, err))
				return
			}
			t.bulk = true
		}
		r.log.Info("changelog: restoring task from the log start", "task", t.req.Task, "reason", reason)
		cp = state.Checkpoint{}
		t.wiped, t.wipeReason, t.forceWipe = true, reason, ""
		t.chainStart = now
		for i := range starts {
			starts[i] = m.parts[i].start
		}
	} else {
		// A store resumed from a position before its end reflects reads
		// that began no later than the checkpoint was written, and
		// intermediate checkpoints keep that date; stores replayed from
		// the log start began now (see the package documentation).
		t.chainStart = now
		for i, sc := range t.req.Stores {
			if _, has := cp.Changelogs[sc.Store]; has && starts[i] < m.parts[i].end && cp.Written.Before(t.chainStart) {
				t.chainStart = cp.Written
			}
		}
	}
	t.cp = state.Checkpoint{Changelogs: maps.Clone(cp.Changelogs), Inputs: maps.Clone(cp.Inputs), Written: cp.Written}
	t.endListed = m.listedAt
	t.restoring = true
	t.dirty = true // the final checkpoint is written even if nothing is replayed
	t.ws.Reset()
	t.stores = t.stores[:0]
	t.remaining = 0
	adds := make(map[string]map[int32]kgo.Offset)
	for i, sc := range t.req.Stores {
		pm := m.parts[i]
		if known, ok := r.knownIDs[sc.Topic]; ok && known != pm.id {
			// The client consumed an earlier topic of this name.
			r.purgeTopic(sc.Topic, fmt.Sprintf("changelog %q was recreated", sc.Topic))
		}
		r.knownIDs[sc.Topic] = pm.id
		s := &storeState{
			t: t, idx: i, sc: sc, id: pm.id, leader: pm.leader,
			end: pm.end, pos: starts[i],
			lastProgress: time.Now(),
		}
		t.stores = append(t.stores, s)
		if s.pos >= s.end {
			s.done = true
			continue
		}
		t.remaining++
		s.consuming, s.started = true, true
		r.consuming++
		r.parts[tp{sc.Topic, sc.Partition}] = s
		if adds[sc.Topic] == nil {
			adds[sc.Topic] = make(map[int32]kgo.Offset)
		}
		adds[sc.Topic][sc.Partition] = kgo.NewOffset().At(s.pos)
		r.log.Debug("changelog: restoring store", "task", t.req.Task, "store", sc.Store, "topic", sc.Topic, "partition", sc.Partition, "from", s.pos, "to", s.end)
		if l := r.opts.Listener; l != nil {
			l.OnRestoreStart(t.req.Task, sc.Store, sc.Topic, sc.Partition, s.pos, s.end)
		}
	}
	if len(adds) > 0 {
		// A partition still assigned (paused) would keep its old
		// position: take it out first.
		r.releaseParked(adds)
		r.cl.AddConsumePartitions(adds)
	}
	if t.remaining == 0 {
		r.complete(t)
	}
}

// distrust returns why the checkpoint must not be trusted ("" if it can be)
// and fills starts with each store's restore offset when it is trusted.
func (r *Restorer) distrust(t *task, cp state.Checkpoint, ok bool, m *taskMeta, starts []int64) (string, error) {
	if !ok {
		return "no checkpoint", nil
	}
	now := r.now()
	for i, sc := range t.req.Stores {
		pm := m.parts[i]
		pos, has := cp.Changelogs[sc.Store]
		if !has {
			empty, err := storeEmpty(t.req.DB, sc.Store)
			if err != nil {
				return "", fmt.Errorf("read store %q: %w", sc.Store, err)
			}
			if !empty {
				return fmt.Sprintf("store %q has data but no changelog position in the checkpoint", sc.Store), nil
			}
			starts[i] = pm.start
			continue
		}
		switch {
		case pos.TopicID != pm.id:
			return fmt.Sprintf("changelog %q has topic id %x, the checkpoint was taken on topic id %x", sc.Topic, pm.id, pos.TopicID), nil
		case pos.Offset < pm.start:
			return fmt.Sprintf("checkpoint offset %d of store %q is below the log start offset %d of %s[%d]", pos.Offset, sc.Store, pm.start, sc.Topic, sc.Partition), nil
		case pos.Offset > pm.end:
			return fmt.Sprintf("checkpoint offset %d of store %q is above the end offset %d of %s[%d]", pos.Offset, sc.Store, pm.end, sc.Topic, sc.Partition), nil
		case pos.Offset < pm.end && cp.Written.IsZero():
			return "checkpoint has no write time", nil
		case pos.Offset < pm.end && now.Sub(cp.Written) > pm.deleteRetention:
			return fmt.Sprintf("checkpoint written %s ago, longer than delete.retention.ms %s of %q: tombstones may have been missed",
				now.Sub(cp.Written).Round(time.Millisecond), pm.deleteRetention, sc.Topic), nil
		}
		starts[i] = pos.Offset
	}
	return "", nil
}

func storeEmpty(db state.DB, store string) (bool, error) {
	it, err := db.NewIter(store, nil, nil)
	if err != nil {
		return false, err
	}
	has := it.Next()
	err = it.Err()
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	return !has, err
}

// process applies the records of fetches.
func (r *Restorer) process(fetches kgo.Fetches, now time.Time) {
	for fi := range fetches {
		for ti := range fetches[fi].Topics {
			ft := &fetches[fi].Topics[ti]
			for pi := range ft.Partitions {
				fp := &ft.Partitions[pi]
				s := r.parts[tp{ft.Topic, fp.Partition}]
				if s == nil || !s.consuming || s.t.stopping {
					continue
				}
				if fp.Err != nil {
					r.fetchErr(s, fp.Err)
					continue
				}
				if len(fp.Records) == 0 {
					continue
				}
				if ft.TopicID != ([16]byte{}) && s.id != ([16]byte{}) && ft.TopicID != s.id {
					r.purgeTopic(s.sc.Topic, fmt.Sprintf("changelog %q was recreated during restore", s.sc.Topic))
					continue
				}
				if fp.LogStartOffset > s.pos {
					switch {
					case s.t.wiped && s.restored+s.batchN == 0:
						// Nothing applied yet: starting later is
						// the same as a full restore.
						s.pos = fp.LogStartOffset
					case s.t.restarts >= maxRestarts:
						// The log start keeps moving (retention
						// of a compact,delete topic): go on rather
						// than start over forever.
						r.log.Warn("changelog: log start offset moved past the restore position, skipping ahead",
							"task", s.t.req.Task, "topic", s.sc.Topic, "partition", s.sc.Partition, "from", s.pos, "to", fp.LogStartOffset)
						s.pos = fp.LogStartOffset
					default:
						r.restart(s.t, fmt.Sprintf("log start offset of %s[%d] moved past the restore position %d to %d",
							s.sc.Topic, s.sc.Partition, s.pos, fp.LogStartOffset))
						continue
					}
				}
				r.apply(s, fp.Records, now)
			}
		}
	}
}

// apply adds the records to the task's pending batch, flushing full batches.
func (r *Restorer) apply(s *storeState, recs []*kgo.Record, now time.Time) {
	t := s.t
	store := s.sc.Store
	for _, rec := range recs {
		off := rec.Offset
		if off < s.pos {
			continue // stale: buffered before a re-add, or behind a probe
		}
		if off >= s.end {
			s.pos = s.end // everything before end was seen
			break
		}
		s.pos = off + 1
		if rec.Attrs.IsControl() {
			continue
		}
		if rec.Value == nil {
			t.ws.Delete(store, rec.Key)
		} else {
			t.ws.Put(store, rec.Key, rec.Value)
		}
		s.batchN++
		s.batchLast = off
		if t.ws.Len() >= r.opts.BatchRecords || t.ws.Bytes() >= r.opts.BatchBytes {
			t.dirty = true
			if err := r.flush(t); err != nil {
				r.fail(t, err)
				return
			}
			if r.removePending(t.req.Task) {
				// Stop now rather than after the whole poll.
				t.stopping = true
				return
			}
		}
	}
	t.dirty = true
	if s.delivered {
		s.maxGap = max(s.maxGap, now.Sub(s.lastProgress))
	}
	s.delivered = true
	s.lastProgress = now
	s.probeFails = 0
	if s.pos >= s.end {
		r.storeDone(s)
	}
}

// flush applies the pending batch with a checkpoint of the current positions.
func (r *Restorer) flush(t *task) error {
	if t.ws.Len() == 0 && !t.dirty {
		return nil
	}
	cp := state.Checkpoint{
		Changelogs: make(map[string]state.ChangelogPosition, len(t.cp.Changelogs)+len(t.stores)),
		Inputs:     t.cp.Inputs,
		Written:    t.chainStart,
	}
	for k, v := range t.cp.Changelogs {
		cp.Changelogs[k] = v
	}
	for _, s := range t.stores {
		cp.Changelogs[s.sc.Store] = state.ChangelogPosition{Offset: s.pos, TopicID: s.id}
	}
	if t.remaining == 0 {
		// Every store is at the end offset listed at endListed: records
		// after it were written later, so the checkpoint dates from then.
		cp.Written = t.endListed
	}
	if err := t.req.DB.Apply(&t.ws, &cp, false); err != nil {
		return fmt.Errorf("changelog: task %q: apply restored records: %w", t.req.Task, err)
	}
	t.ws.Reset()
	t.dirty = false
	l := r.opts.Listener
	now := time.Now() // log pacing is real time
	for _, s := range t.stores {
		if s.batchN > 0 {
			s.restored += s.batchN
			// A progress line every few seconds for long restores.
			if now.Sub(s.lastLog) >= restoreLogEvery {
				s.lastLog = now
				r.log.Info("changelog: restoring", "task", t.req.Task, "store", s.sc.Store,
					"restored", s.restored, "offset", s.batchLast, "end", s.end)
			}
			if l != nil {
				l.OnBatchRestored(t.req.Task, s.sc.Store, s.sc.Topic, s.sc.Partition, s.batchLast, s.batchN)
			}
			s.batchN = 0
		}
	}
	if !t.bulk {
		r.reportEnds(t)
	}
	return nil
}

// reportEnds calls OnRestoreEnd for the stores that reached their end. In
// bulk load mode that waits for the end of the load: until then the last
// records are applied but not yet in the DB's tables.
func (r *Restorer) reportEnds(t *task) {
	for _, s := range t.stores {
		if s.done && s.started && !s.endReported {
			s.endReported = true
			if l := r.opts.Listener; l != nil {
				l.OnRestoreEnd(t.req.Task, s.sc.Store, s.sc.Topic, s.sc.Partition, s.restored)
			}
		}
	}
}

func (r *Restorer) storeDone(s *storeState) {
	if s.done {
		return
	}
	s.done = true
	s.pos = s.end
	r.unconsume(s)
	t := s.t
	t.remaining--
	if t.remaining == 0 {
		r.complete(t)
	}
}

// unconsume stops fetching the store's partition. While other partitions are
// still restoring, the partition is only paused: removing a partition from a
// kgo client restarts its consumer session, which drops every record it
// buffered or had in flight for the other partitions and fetches them again
// (with six partitions finishing one after another, a cold restore fetched
// 1.8 times its records). Paused partitions are removed once nothing is
// consuming, or before one of them is added again.
func (r *Restorer) unconsume(s *storeState) {
	if !s.consuming {
		return
	}
	s.consuming = false
	r.consuming--
	k := tp{s.sc.Topic, s.sc.Partition}
	if r.parts[k] == s {
		delete(r.parts, k)
	}
	r.parked[k] = struct{}{}
	if r.consuming == 0 {
		r.releaseParked(nil)
		return
	}
	r.cl.PauseFetchPartitions(map[string][]int32{s.sc.Topic: {s.sc.Partition}})
}

// releaseParked removes the paused partitions from the client: all of them
// when only is nil, else those of only that are paused.
func (r *Restorer) releaseParked(only map[string]map[int32]kgo.Offset) {
	rm := make(map[string][]int32)
	for k := range r.parked {
		if only != nil {
			if _, ok := only[k.topic][k.partition]; !ok {
				continue
			}
		}
		rm[k.topic] = append(rm[k.topic], k.partition)
		delete(r.parked, k)
	}
	if len(rm) == 0 {
		return
	}
	r.cl.RemoveConsumePartitions(maps.Clone(rm))
	r.cl.ResumeFetchPartitions(rm)
}

// complete writes the final checkpoint, syncs and reports success.
func (r *Restorer) complete(t *task) {
	t.dirty = true
	if err := r.flush(t); err != nil {
		r.fail(t, err)
		return
	}
	if t.bulk {
		// Ending bulk load mode writes the last table and reopens the
		// DB. In the background, it does not hold up the records of the
		// other tasks (which all tend to reach their ends together).
		// The task stays until it returns; nothing else touches the DB.
		t.bulk = false
		ending := make(chan struct{})
		t.ending = ending
		db, name, gen := t.req.DB, t.req.Task, t.gen
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			t.endErr = endBulkLoad(db, name)
			close(ending)
			r.enqueue(event{kind: evEnded, task: name, gen: gen})
		}()
		return
	}
	if err := t.req.DB.Sync(); err != nil {
		r.fail(t, fmt.Errorf("changelog: task %q: sync: %w", t.req.Task, err))
		return
	}
	r.succeed(t)
}

// endBulkLoad switches a task's DB back from bulk load mode, which makes
// every applied write durable (no Sync needed).
func endBulkLoad(db state.DB, task string) error {
	if err := db.(state.BulkLoader).EndBulkLoad(); err != nil {
		return fmt.Errorf("changelog: task %q: end bulk load: %w", task, err)
	}
	return nil
}

// finish waits for the background end of bulk load mode of a restored task
// and reports the outcome.
func (r *Restorer) finish(t *task) {
	<-t.ending
	t.ending = nil
	if t.endErr != nil {
		r.fail(t, t.endErr)
		return
	}
	r.succeed(t)
}

// succeed reports a task whose stores all reached their end, synced.
func (r *Restorer) succeed(t *task) {
	r.reportEnds(t)
	delete(r.tasks, t.req.Task)
	res := r.result(t, nil)
	if res.Total > 0 {
		r.log.Info("changelog: task restored", "task", t.req.Task, "records", res.Total, "wiped", res.Wiped)
	} else {
		r.log.Debug("changelog: task restored", "task", t.req.Task, "records", res.Total, "wiped", res.Wiped)
	}
	done(t.req, res)
}

func (r *Restorer) result(t *task, err error) Result {
	res := Result{Task: t.req.Task, Restored: make(map[string]int64, len(t.stores)), Wiped: t.wiped, WipeReason: t.wipeReason, Err: err}
	for _, s := range t.stores {
		res.Restored[s.sc.Store] = s.restored
		res.Total += s.restored
	}
	return res
}

// stop releases everything the task holds in the loop and the client.
func (r *Restorer) stop(t *task) {
	if t.initCancel != nil {
		t.initCancel()
		t.initCancel = nil
	}
	for _, s := range t.stores {
		r.unconsume(s)
	}
	delete(r.tasks, t.req.Task)
}

// endBulk switches the DB back from bulk load mode, making every applied
// write durable.
func (r *Restorer) endBulk(t *task) error {
	if !t.bulk {
		return nil
	}
	t.bulk = false
	return endBulkLoad(t.req.DB, t.req.Task)
}

// fail ends the task with a fatal error. Applied progress stays.
func (r *Restorer) fail(t *task, err error) {
	r.stop(t)
	t.ws.Reset()
	if berr := r.endBulk(t); berr != nil {
		err = errors.Join(err, berr)
	}
	r.log.Error("changelog: restore failed", "task", t.req.Task, "err", err)
	done(t.req, r.result(t, err))
}

// suspend stops the task keeping its progress: the pending batch is applied
// with its checkpoint and the DB synced.
func (r *Restorer) suspend(t *task, cause error) {
	r.stop(t)
	err := cause
	if t.restoring {
		ferr := r.flush(t)
		if ferr == nil {
			ferr = r.endBulk(t)
		}
		if ferr == nil {
			if serr := t.req.DB.Sync(); serr != nil {
				ferr = fmt.Errorf("changelog: task %q: sync: %w", t.req.Task, serr)
			}
		}
		err = errors.Join(cause, ferr)
		t.ws.Reset()
		if l := r.opts.Listener; l != nil {
			for _, s := range t.stores {
				if s.started && !s.endReported {
					l.OnRestoreSuspended(t.req.Task, s.sc.Store, s.sc.Topic, s.sc.Partition, s.restored)
				}
			}
		}
	}
	if berr := r.endBulk(t); berr != nil { // removed before its stores were set up
		err = errors.Join(err, berr)
	}
	r.log.Debug("changelog: restore suspended", "task", t.req.Task, "err", err)
	done(t.req, r.result(t, err))
}

// restart drops the task's pending batch and restores it again from the log
// start: the changelog changed under the restore.
func (r *Restorer) restart(t *task, reason string) {
	r.log.Warn("changelog: restarting restore from the log start", "task", t.req.Task, "reason", reason)
	for _, s := range t.stores {
		r.unconsume(s)
	}
	t.ws.Reset()
	if l := r.opts.Listener; l != nil {
		for _, s := range t.stores {
			if s.started && !s.endReported {
				l.OnRestoreSuspended(t.req.Task, s.sc.Store, s.sc.Topic, s.sc.Partition, s.restored)
			}
		}
	}
	t.stores = nil
	t.forceWipe = reason
	t.restarts++
	r.startInit(t)
}

// purgeTopic makes the client forget topic, the way kgo resumes consuming a
// deleted and recreated topic, and restarts every task restoring from it.
func (r *Restorer) purgeTopic(topic, reason string) {
	var tasks []*task
	for _, s := range r.parts {
		if s.sc.Topic == topic && s.consuming && !slices.Contains(tasks, s.t) {
			tasks = append(tasks, s.t)
		}
	}
	r.cl.PurgeTopicsFromClient(topic)
	delete(r.knownIDs, topic)
	var resume []int32
	for k := range r.parked {
		if k.topic == topic {
			resume = append(resume, k.partition)
			delete(r.parked, k)
		}
	}
	if len(resume) > 0 {
		// Pauses outlive a purge: lift them for a recreated topic.
		r.cl.ResumeFetchPartitions(map[string][]int32{topic: resume})
	}
	for _, t := range tasks {
		r.restart(t, reason)
	}
}

// fetchErr handles a partition error from a fetch. Retriable errors are
// retried by the client.
func (r *Restorer) fetchErr(s *storeState, err error) {
	switch {
	case errors.Is(err, kerr.UnknownTopicID), errors.Is(err, kerr.InconsistentTopicID):
		r.purgeTopic(s.sc.Topic, fmt.Sprintf("changelog %q: %v", s.sc.Topic, err))
	case errors.Is(err, kerr.OffsetOutOfRange) && s.t.restarts < maxRestarts:
		r.restart(s.t, fmt.Sprintf("restore position %d of %s[%d] is out of range", s.pos, s.sc.Topic, s.sc.Partition))
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), kerr.IsRetriable(err):
		r.log.Debug("changelog: retriable fetch error", "topic", s.sc.Topic, "partition", s.sc.Partition, "err", err)
	default:
		r.fail(s.t, fmt.Errorf("changelog: task %q: fetch %s[%d]: %w", s.t.req.Task, s.sc.Topic, s.sc.Partition, err))
	}
}

// shutdown suspends every task and answers the events still queued.
func (r *Restorer) shutdown(cause error) {
	r.mu.Lock()
	r.stopped = true
	evs := r.events
	r.events = nil
	r.mu.Unlock()
	for _, t := range r.tasks {
		if t.ending != nil {
			r.finish(t)
			continue
		}
		r.suspend(t, cause)
	}
	for _, ev := range evs {
		switch ev.kind {
		case evAdd:
			done(ev.req, Result{Task: ev.req.Task, Err: fmt.Errorf("%w: task %q not restored", ErrStopped, ev.req.Task)})
		case evRemove:
			close(ev.wait)
		}
	}
	r.runCancel()
	r.wg.Wait()
}

func backoff(attempt int) time.Duration {
	d := 100 * time.Millisecond << min(attempt, 6)
	d = min(d, 5*time.Second)
	return d/2 + rand.N(d/2+1)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
