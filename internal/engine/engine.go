package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/choreo-go/choreo/changelog"
	"github.com/choreo-go/choreo/internal/graph"
	"github.com/choreo-go/choreo/partition"
	"github.com/choreo-go/choreo/state"
)

// Sentinel errors.
var (
	// ErrPanic wraps a panic recovered from user code.
	ErrPanic = errors.New("panic in processor")
	// ErrAlreadyRunning is returned by a second call to Run.
	ErrAlreadyRunning = errors.New("app already running or finished")
	// ErrMissingTopic is returned when a source or sink topic does not exist.
	ErrMissingTopic = errors.New("topic does not exist")
	// ErrCloseTimeout: Close gave up committing within CloseTimeout (brokers
	// unreachable); the uncommitted work is abandoned as in a crash.
	ErrCloseTimeout = errors.New("close timed out before the final commit")
	// ErrProduce wraps a record the broker refused for good.
	ErrProduce = errors.New("produce failed")
)

// Engine runs a compiled topology as a member of the app's consumer group.
type Engine struct {
	cfg  Config
	topo *graph.Topology
	log  *slog.Logger
	lc   lifecycle

	started atomic.Bool

	// Resolved at start-up.
	subs       []*subtopology
	topicSub   map[string]*subtopology
	partitions map[string]int32 // every topic the app reads or writes
	changelogs map[string]string
	topicIDs   map[string][16]byte // changelogs
	inputIDs   map[string][16]byte // source topics, repartition topics included
	repartTops []string

	env       *state.Env
	adminCl   *kgo.Client
	adm       *kadm.Client
	consumer  *kgo.Client
	producer  *kgo.Client
	restoreCl *kgo.Client
	restorer  *changelog.Restorer
	balancer  *partition.Balancer
	// session is the transactional group session under exactly-once;
	// consumer and producer are then both its client.
	session *kgo.GroupTransactSession
	// txnDoomed: a revocation or loss dooms the open transaction; the
	// loop aborts it at once.
	txnDoomed bool
	// detached makes the rebalance callbacks return at once: the group
	// clients are being closed on purpose (crash, reset).
	detached atomic.Bool

	// mu guards tasks and everything the loop and the rebalance callbacks share.
	mu        sync.Mutex
	tasks     map[partition.TaskID]*task
	byTP      map[string]map[int32]*task
	restored  []restoreDone
	restoreMu sync.Mutex
	// cpInputs holds the checkpointed input offsets of newly assigned
	// tasks until franz-go asks adjustFetchOffsets where to start.
	cpMu     sync.Mutex
	cpInputs map[string]map[int32]int64
	// awaitingOffsets holds newly assigned tasks until their committed
	// offsets are fetched; then their restore starts.
	awaitingOffsets map[string]map[int32]*task
	wake            atomic.Pointer[context.CancelFunc]
	// topUp makes the next poll return at once: the tasks still have
	// records queued (see iterate).
	topUp bool

	// Producer results, written from franz-go's goroutines.
	prodMu     sync.Mutex
	prodErr    error
	clOffsets  map[string]map[int32]int64
	lastCommit time.Time
	lastPurge  time.Time
	lastClean  time.Time
	fatal      error

	// assigned is set once the group assigned this member (possibly nothing).
	// assigned: the group gave this member an assignment (possibly empty)
	// in the current session; cleared when the session is lost.
	assigned atomic.Bool
	// everAssigned: cleanup of unowned state starts after the first one.
	everAssigned bool
	startedAt    time.Time
	unownedSince map[partition.TaskID]time.Time

	// Lag probe (see maybeProbe).
	probing   bool
	lastProbe time.Time
	probeMu   sync.Mutex
	probeRes  *probeResult
	// startPos holds the position franz-go starts each newly assigned
	// partition at (-1: the log start) until its task activates.
	startPos map[string]map[int32][2]int64 // [start, group's committed offset]

	// roundTasks is processRound's reused list of active tasks.
	roundTasks []*task

	// sink replaces the producer when a Driver runs the engine: it
	// receives every record the tasks produce and completes its promise.
	sink func(rec *kgo.Record, promise func(*kgo.Record, error))

	// maxBytes is max.message.bytes of the topics the app writes.
	maxBytes map[string]int32

	// saslEOFs counts SASL authentications in a row ended by the broker
	// closing the connection; saslRefused is set once they are too many.
	saslEOFs    atomic.Int32
	saslRefused atomic.Pointer[refusal]

	skipped      atomic.Int64
	deadLettered atomic.Int64
	met          *metrics
	// crashAt is a test hook: a CrashPoint at which the next commit stops
	// the app as a killed process would.
	crashAt atomic.Int32

	// query is what interactive queries read (query.go).
	query queryState
}

// CrashPoint names a step of the commit at which a test can simulate a crash.
type CrashPoint int32

const (
	// CrashNone disarms the hook.
	CrashNone CrashPoint = iota
	// CrashAfterFlush: produced and changelog records are in Kafka; the
	// stores and the group offsets are not updated.
	CrashAfterFlush
	// CrashAfterStoreCommit: stores and checkpoints are written; the group
	// offsets are not committed.
	CrashAfterStoreCommit
)

// errTestCrash ends the loop at a CrashPoint.
var errTestCrash = errors.New("simulated crash (test hook)")

// ArmCrash makes the next commit stop the app at point, without committing
// further, leaving the group or closing cleanly. For tests.
func (e *Engine) ArmCrash(p CrashPoint) { e.crashAt.Store(int32(p)) }

type restoreDone struct {
	t   *task
	err error
}

// New validates cfg; nothing touches the network until Run.
func New(topo *graph.Topology, cfg Config) (*Engine, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	e := &Engine{
		cfg:       cfg,
		topo:      topo,
		log:       cfg.Logger.With("app", cfg.AppID),
		tasks:     make(map[partition.TaskID]*task),
		byTP:      make(map[string]map[int32]*task),
		clOffsets: make(map[string]map[int32]int64),
		cpInputs:  make(map[string]map[int32]int64),

		awaitingOffsets: make(map[string]map[int32]*task),
		unownedSince:    make(map[partition.TaskID]time.Time),
		startPos:        make(map[string]map[int32][2]int64),
	}
	e.lc = lifecycle{state: Created, listener: cfg.StateListener, now: cfg.Now, readyFreshFor: max(5*time.Second, 2*cfg.HeartbeatInterval)}
	e.met = newMetrics(cfg.AppID, &e.lc)
	subs, err := resolveSubtopologies(topo, cfg.AppID)
	if err != nil {
		return nil, err
	}
	e.subs = subs
	e.topicSub = make(map[string]*subtopology)
	for _, s := range subs {
		for _, tp := range s.topics {
			if other, dup := e.topicSub[tp]; dup {
				return nil, fmt.Errorf("%w: topic %q is read by sub-topologies %d and %d", ErrInvalidConfig, tp, other.id, s.id)
			}
			e.topicSub[tp] = s
		}
	}
	return e, nil
}

// State returns the lifecycle state.
func (e *Engine) State() State { return e.lc.get() }

// Ready reports readiness (see lifecycle.ready).
func (e *Engine) Ready() bool { return e.lc.ready() }

// Alive reports liveness: not in the error state.
func (e *Engine) Alive() bool { return e.lc.alive() }

// producerBatchMaxBytes is the producer's batch limit (and so its limit for
// one record).
const producerBatchMaxBytes = 1 << 20

// DeadLettered is the number of records sent to the dead-letter topic.
func (e *Engine) DeadLettered() int64 { return e.deadLettered.Load() }

// Skipped is the number of records dropped by a Skip decision.
func (e *Engine) Skipped() int64 { return e.skipped.Load() }

// SetCrashOnClose makes shutdown abandon everything without committing or
// leaving the group, as a crash would. For tests.
func (e *Engine) SetCrashOnClose() { e.cfg.crashOnClose = true }

// Run joins the group and processes until ctx is cancelled (clean shutdown,
// nil error) or a fatal error occurs.
func (e *Engine) Run(ctx context.Context) (err error) {
	if !e.started.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	e.lc.set(Rebalancing)
	e.startedAt = e.cfg.Now()
	defer func() {
		if err != nil {
			err = e.authFailure(err)
			e.lc.set(Error)
			e.log.Error("app stopped on error", "err", err)
		} else {
			e.lc.set(NotRunning)
		}
	}()
	if err := e.openLocal(); err != nil {
		return err
	}
	defer e.env.Close()

	e.adminCl, err = kgo.NewClient(e.clientOpts()...)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	defer e.adminCl.Close()
	e.adm = kadm.NewClient(e.adminCl)
	// Runs before the admin client closes: explain may ask the broker.
	defer func() { err = e.explain(err) }()

	if err := e.setupTopics(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		if isAuthError(err) {
			// Name the missing rights the broker reports; else the
			// denial found by the failed step.
			if cerr := e.checkACLs(ctx); cerr != nil && errors.Is(cerr, ErrNotAuthorized) {
				return cerr
			}
		}
		return err
	}
	if err := e.checkACLs(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if err := e.openRestorer(); err != nil {
		return err
	}
	// The restorer runs before the group clients exist: their rebalance
	// callbacks (even while a failed start-up closes them) wait on it.
	rctx, rcancel := context.WithCancel(context.WithoutCancel(ctx))
	var rwg sync.WaitGroup
	rwg.Go(func() {
		if err := e.restorer.Run(rctx); err != nil && rctx.Err() == nil {
			e.log.Error("restorer stopped", "err", err)
		}
	})
	defer func() {
		rcancel()
		rwg.Wait()
		e.restoreCl.Close()
	}()
	if err := e.openGroupClients(); err != nil {
		return err
	}

	loopErr := e.loop(ctx)
	if errors.Is(loopErr, errTestCrash) || errors.Is(loopErr, ErrCloseTimeout) || e.cfg.crashOnClose {
		e.crash()
		return loopErr
	}
	e.lc.set(PendingShutdown)
	e.shutdown()
	if loopErr == nil {
		// A callback may have failed while the app was stopping.
		loopErr = e.fatal
	}
	return loopErr
}

// openLocal prepares the state directory and the instance id.
func (e *Engine) openLocal() error {
	e.env = state.NewEnv(state.EnvOptions{CacheBytes: e.cfg.StateCacheBytes, MemTableSize: uint64(e.cfg.StateMemTableBytes), Logger: e.log})
	if e.cfg.InMemoryState && e.cfg.StateDir == "" {
		if e.cfg.InstanceID == "" {
			e.cfg.InstanceID = e.cfg.AppID + "-" + randomID()
		}
		return nil
	}
	dir := e.appDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	if e.cfg.InstanceID == "" {
		idFile := filepath.Join(dir, "instance-id")
		b, err := os.ReadFile(idFile)
		switch {
		case err == nil && len(strings.TrimSpace(string(b))) > 0:
			e.cfg.InstanceID = strings.TrimSpace(string(b))
		case err == nil || errors.Is(err, os.ErrNotExist):
			e.cfg.InstanceID = e.cfg.AppID + "-" + randomID()
			if err := os.WriteFile(idFile, []byte(e.cfg.InstanceID+"\n"), 0o600); err != nil {
				return fmt.Errorf("state dir: write instance id: %w", err)
			}
		default:
			return fmt.Errorf("state dir: read instance id: %w", err)
		}
	}
	return nil
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (e *Engine) appDir() string { return filepath.Join(e.cfg.StateDir, e.cfg.AppID) }

func (e *Engine) taskDir(id partition.TaskID) string { return filepath.Join(e.appDir(), id.String()) }

// AppID is the application id.
func (e *Engine) AppID() string { return e.cfg.AppID }

// InstanceID is the stable id used for static membership.
func (e *Engine) InstanceID() string { return e.cfg.InstanceID }

func (e *Engine) clientOpts(extra ...kgo.Opt) []kgo.Opt {
	return e.clientOptsWithDefaults(nil, extra...)
}

// clientOptsWithDefaults is clientOpts with defaults that Config.ClientOpts
// may override.
func (e *Engine) clientOptsWithDefaults(defaults []kgo.Opt, extra ...kgo.Opt) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(e.cfg.Brokers...),
		kgo.WithLogger(kgoLogger{e.log}),
		// Outages are retried forever with capped backoff; see doc.go.
		kgo.RetryBackoffFn(backoff),
		kgo.RequestRetries(1 << 30),
		kgo.RetryTimeout(0),
		// After an outage, refresh metadata soon: franz-go's default 5 s
		// minimum would delay the resume by seconds.
		kgo.MetadataMinAge(250 * time.Millisecond),
		// Every successful broker round trip (heartbeats included) keeps
		// the app ready while it is idle.
		kgo.WithHooks(brokerHook{e}),
	}
	opts = append(opts, defaults...)
	opts = append(opts, e.cfg.ClientOpts...)
	return append(opts, extra...)
}

func backoff(tries int) time.Duration {
	d := 100 * time.Millisecond << min(tries, 5)
	return min(d, 2*time.Second)
}

// openRestorer creates the restore client and the restorer.
func (e *Engine) openRestorer() error {
	var err error
	e.restoreCl, err = kgo.NewClient(e.clientOpts(
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		// A restore is bound by the DB, not the fetches: larger ones
		// only add memory (64 MiB fetches held ~230 MiB of decoded
		// records during a cold restore). 1 MiB per partition is kgo's
		// default, which consumes a changelog at over 2M records/s.
		kgo.FetchMaxBytes(8<<20),
		kgo.FetchMaxPartitionBytes(1<<20),
		// A partition added while a fetch of caught-up partitions waits
		// at the broker is not fetched before that wait ends (kgo's
		// default 5 s stalled warm restores).
		kgo.FetchMaxWait(100*time.Millisecond),
	)...)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	e.restorer = changelog.NewRestorer(e.restoreCl, e.adm, changelog.RestorerOptions{
		Logger:   e.log,
		Now:      e.cfg.Now,
		Listener: restoreListener{m: e.met, next: e.cfg.RestoreListener},
	})
	return nil
}

// transactionalID is stable per instance, so a restarted instance fences
// its predecessor's open transaction at once instead of waiting it out.
func (e *Engine) transactionalID() string { return e.cfg.AppID + "-" + e.cfg.InstanceID }

// openGroupClients creates the group consumer and the producer: two clients
// under at-least-once, one transactional session under exactly-once. The
// restorer must exist: the rebalance callbacks use it.
func (e *Engine) openGroupClients() error {
	var topics []string
	for _, s := range e.subs {
		topics = append(topics, s.topics...)
	}
	subTopics := make([][]string, len(e.subs))
	for i, s := range e.subs {
		subTopics[i] = s.topics
	}
	e.balancer = partition.NewBalancer(partition.BalancerConfig{
		Subtopologies: subTopics,
		// Advertised to every member, for interactive queries.
		UserData: func() []byte { return encodeEndpoint(e.cfg.ApplicationServer) },
		// Called after every sync, also when this member's tasks did not
		// change (franz-go then calls no assignment callback).
		OnAssignment: func(info *partition.AssignmentInfo) {
			e.query.setAssignment(info, e.cfg.InstanceID)
			e.assigned.Store(true)
			e.met.rebalances.Add(1)
		},
	})
	groupOpts := []kgo.Opt{
		kgo.ConsumerGroup(e.cfg.AppID),
		kgo.ConsumeTopics(topics...),
		kgo.Balancers(e.balancer),
		kgo.InstanceID(e.cfg.InstanceID),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Markers move a partition's position past a transaction's end,
		// which tells a waiting task that the partition is caught up.
		kgo.KeepControlRecords(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// A fetch in flight must return before resumed partitions (a task
		// done restoring) are fetched; franz-go's 5 s default would stall them.
		kgo.FetchMaxWait(250 * time.Millisecond),
		kgo.SessionTimeout(e.cfg.SessionTimeout),
		kgo.RebalanceTimeout(e.cfg.RebalanceTimeout),
		kgo.HeartbeatInterval(e.cfg.HeartbeatInterval),
		kgo.OnPartitionsAssigned(e.onAssigned),
		kgo.OnPartitionsRevoked(e.onRevoked),
		kgo.OnPartitionsLost(e.onLost),
		kgo.AdjustFetchOffsetsFn(e.adjustFetchOffsets),
	}
	// franz-go decodes a whole fetch response at once and buffers one per
	// broker while the loop works through the previous one, and a
	// partly processed response stays in memory as a whole: its size is
	// what the consumer holds, twice over. franz-go's default (50 MiB,
	// 1 MiB per partition) lets a handful of partitions fill tens of MiB
	// of decoded records; FetchMaxBytes keeps that bounded, whatever the
	// partition count, and at 120k records/s still means only a few
	// fetches a second. ClientOpts may override both.
	fetchDefaults := []kgo.Opt{
		kgo.FetchMaxBytes(DefaultFetchMaxBytes),
		kgo.FetchMaxPartitionBytes(1 << 20),
	}
	produceOpts := []kgo.Opt{
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(e.cfg.ProducerLinger),
		kgo.MaxBufferedRecords(1 << 20),
		kgo.RecordRetries(1 << 30),
		kgo.ProducerBatchMaxBytes(producerBatchMaxBytes),
	}
	if e.cfg.Guarantee == ExactlyOnce {
		opts := append(groupOpts, produceOpts...)
		opts = append(opts, kgo.TransactionalID(e.transactionalID()), kgo.TransactionTimeout(e.cfg.TransactionTimeout))
		s, err := kgo.NewGroupTransactSession(e.clientOptsWithDefaults(fetchDefaults, opts...)...)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		if err := s.Begin(); err != nil {
			s.Close()
			return fmt.Errorf("begin transaction: %w", e.denied(err, kmsg.ACLResourceTypeTransactionalId, e.transactionalID(), kmsg.ACLOperationWrite, "begin transaction"))
		}
		e.session = s
		e.consumer = s.Client()
		e.producer = e.consumer
		return nil
	}
	var err error
	e.producer, err = kgo.NewClient(e.clientOpts(produceOpts...)...)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	e.consumer, err = kgo.NewClient(e.clientOptsWithDefaults(fetchDefaults, groupOpts...)...)
	if err != nil {
		e.producer.Close()
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// produce hands an output, changelog or dead-letter record to the producer,
// or to the test driver's sink when the engine runs without brokers.
func (e *Engine) produce(rec *kgo.Record, promise func(*kgo.Record, error)) {
	if e.sink != nil {
		e.sink(rec, promise)
		return
	}
	e.producer.Produce(context.Background(), rec, promise)
}

// sendPromise records the first hard produce failure; franz-go retries
// transient ones itself.
func (e *Engine) sendPromise(r *kgo.Record, err error) {
	if err == nil {
		e.met.producedRecord(r.Topic)
		return
	}
	e.prodMu.Lock()
	if e.prodErr == nil {
		e.prodErr = fmt.Errorf("%w: topic %s partition %d: %w", ErrProduce, r.Topic, r.Partition,
			e.denied(err, kmsg.ACLResourceTypeTopic, r.Topic, kmsg.ACLOperationWrite, "produce"))
	}
	e.prodMu.Unlock()
}

func (e *Engine) changelogPromise(r *kgo.Record, err error) {
	e.prodMu.Lock()
	defer e.prodMu.Unlock()
	if err != nil {
		if e.prodErr == nil {
			e.prodErr = fmt.Errorf("%w: changelog %s partition %d: %w", ErrProduce, r.Topic, r.Partition,
				e.denied(err, kmsg.ACLResourceTypeTopic, r.Topic, kmsg.ACLOperationWrite, "produce"))
		}
		return
	}
	e.met.producedRecord(r.Topic)
	m := e.clOffsets[r.Topic]
	if m == nil {
		m = make(map[int32]int64)
		e.clOffsets[r.Topic] = m
	}
	if r.Offset+1 > m[r.Partition] {
		m[r.Partition] = r.Offset + 1
	}
}

// isRetriable reports whether err is a transient broker or network failure
// (an outage), as opposed to a configuration or authorization failure.
func isRetriable(err error) bool {
	if err == nil || fatalAuth(err) {
		return false
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Retriable || errors.Is(err, kerr.RebalanceInProgress) || errors.Is(err, kerr.CoordinatorNotAvailable)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	return kgo.IsRetryableBrokerErr(err) || isNetErr(err)
}

func isAuthError(err error) bool {
	return errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.GroupAuthorizationFailed) ||
		errors.Is(err, kerr.ClusterAuthorizationFailed) || errors.Is(err, kerr.TransactionalIDAuthorizationFailed) ||
		errors.Is(err, kerr.SaslAuthenticationFailed)
}

func isNetErr(err error) bool {
	s := err.Error()
	for _, m := range []string{"connection refused", "connection reset", "broken pipe", "i/o timeout", "EOF", "unable to dial", "no such host", "unable to open connection"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

// leaveGroup sends an explicit LeaveGroup for this static member; franz-go
// does not, so without it partitions would wait out the session timeout.
func (e *Engine) leaveGroup(ctx context.Context, memberID string) {
	req := kmsg.NewPtrLeaveGroupRequest()
	req.Group = e.cfg.AppID
	m := kmsg.NewLeaveGroupRequestMember()
	m.MemberID = memberID
	id := e.cfg.InstanceID
	m.InstanceID = &id
	reason := "choreo: clean shutdown"
	m.Reason = &reason
	req.Members = append(req.Members, m)
	resp, err := req.RequestWith(ctx, e.adminCl)
	if err == nil {
		err = kerr.ErrorForCode(resp.ErrorCode)
		for _, mr := range resp.Members {
			if err == nil {
				err = kerr.ErrorForCode(mr.ErrorCode)
			}
		}
	}
	if err != nil && !errors.Is(err, kerr.UnknownMemberID) {
		e.log.Warn("leave group", "err", err)
		return
	}
	e.log.Info("left the group", "instance_id", id)
}

type kgoLogger struct{ l *slog.Logger }

func (k kgoLogger) Level() kgo.LogLevel {
	if k.l.Enabled(context.Background(), slog.LevelDebug) {
		return kgo.LogLevelDebug
	}
	return kgo.LogLevelWarn
}

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lvl := slog.LevelDebug
	switch level {
	case kgo.LogLevelError:
		lvl = slog.LevelError
	case kgo.LogLevelWarn:
		lvl = slog.LevelWarn
	case kgo.LogLevelInfo:
		lvl = slog.LevelDebug // franz-go is chatty at info; keep our info log for our events
	}
	k.l.Log(context.Background(), lvl, "kafka: "+msg, keyvals...)
}

// brokerHook records successful broker round trips for readiness, and
// brokers that refuse the SASL credentials by closing the connection.
type brokerHook struct{ e *Engine }

// saslAuthenticateKey is the request key of SASLAuthenticate.
const saslAuthenticateKey = 36

// Request keys sent before authentication completes.
const (
	apiVersionsKey   = 18
	saslHandshakeKey = 17
)

// saslRefusals is how many SASL authentications in a row the broker must
// end by closing the connection before the credentials count as refused.
const saslRefusals = 3

// OnBrokerRead sees every response. A broker normally answers refused
// credentials with SASL_AUTHENTICATION_FAILED (fatal through isAuthError);
// some (kfake among them) just close the connection, which franz-go
// retries as a network error forever. Several such closes in a row, with
// no successful authentication between, are a refusal.
func (h brokerHook) OnBrokerRead(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	switch {
	case key == saslAuthenticateKey:
	case err == nil && key != apiVersionsKey && key != saslHandshakeKey:
		// A request on an authenticated connection succeeded.
		h.e.saslEOFs.Store(0)
		return
	default:
		return
	}
	if errors.Is(err, io.EOF) && h.e.saslEOFs.Add(1) >= saslRefusals {
		h.e.saslRefused.CompareAndSwap(nil, &refusal{fmt.Errorf("%w: the brokers closed the connection during SASL authentication %d times in a row%s: wrong user, password or mechanism?",
			ErrAuthentication, saslRefusals, h.e.cfg.SecuritySummary)})
	}
}

// refusal boxes an error for an atomic.Pointer.
type refusal struct{ err error }

// credentialsRefused returns the authentication failure seen by the
// broker hook, or nil.
func (e *Engine) credentialsRefused() error {
	if r := e.saslRefused.Load(); r != nil {
		return r.err
	}
	return nil
}

func (h brokerHook) OnBrokerE2E(_ kgo.BrokerMetadata, _ int16, e2e kgo.BrokerE2E) {
	if e2e.Err() == nil {
		h.e.lc.brokerOK()
	}
}
