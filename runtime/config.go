package runtime

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/changelog"
	"github.com/choreo-go/choreo/internal/engine"
)

// ErrorPolicy says what happens to an input record whose processing failed.
type ErrorPolicy int

const (
	// FailOnError stops the app: it moves to the Error state and Run returns the cause.
	FailOnError ErrorPolicy = iota
	// SkipOnError drops the record (its store writes and outputs are rolled
	// back), logs it at warn level and counts it; processing continues.
	SkipOnError
	// DeadLetterOnError is SkipOnError, and the record goes to the
	// dead-letter topic (Config.DeadLetterTopic) with its original key,
	// value and headers, plus headers describing the error:
	// __streams.errors.exception, .message, .stacktrace (panics), .topic,
	// .partition, .offset (Kafka Streams' KIP-1034 names), and
	// __choreo.errors.processor, .timestamp, .kind, .output.topic.
	DeadLetterOnError
)

// Config configures an App. The zero value of every optional field selects
// the documented default.
type Config struct {
	// Brokers are the seed brokers (host:port). Required.
	Brokers []string
	// ApplicationID is the consumer group id and the prefix of every
	// internal topic (<id>-<store>-changelog, <id>-<name>-repartition).
	// Required; letters, digits, '.', '_' and '-'.
	ApplicationID string
	// InstanceID identifies this instance across restarts (e.g. the pod
	// name). It is the static group member id, so a restarted instance gets
	// its partitions and warm state back without a rebalance. Default: an
	// id generated once and kept in StateDir/<ApplicationID>/instance-id.
	InstanceID string
	// StateDir holds the local stores, one Pebble database per task, under
	// StateDir/<ApplicationID>/<task>. Required unless InMemoryState.
	StateDir string
	// InMemoryState keeps stores in memory; they are restored from their
	// changelogs on every start.
	InMemoryState bool
	// ApplicationServer is the host:port at which this instance answers
	// interactive queries (Kafka Streams' application.server), e.g. its
	// HTTP server. It is advertised to every instance through the group's
	// member metadata, so any of them can name the owner of a key
	// (TableQuery.KeyOwner, App.Instances). Optional: "" advertises none.
	// New rejects a value that is not host:port.
	ApplicationServer string

	// Guarantee is the processing guarantee: AtLeastOnce (default) or
	// ExactlyOnce.
	Guarantee Guarantee
	// TransactionTimeout bounds a transaction under ExactlyOnce (default
	// 10 s). If an instance dies with a transaction open, consumers of its
	// output and the instances that take over its tasks wait up to this
	// long for the broker to abort it (a restart under the same InstanceID
	// aborts it at once). An outage longer than this fences the producer;
	// the app then recovers by itself with a new one. The broker caps it
	// with transaction.max.timeout.ms.
	TransactionTimeout time.Duration

	// CommitInterval is how often processed work is committed: produced
	// records flushed, stores written with their checkpoint, input offsets
	// committed. Default 1 s under AtLeastOnce; 100 ms under ExactlyOnce,
	// where outputs become visible only at commit.
	CommitInterval time.Duration
	// CommitMaxRecords commits early once the pending store writes of all
	// tasks reach this many distinct keys. Default 200,000.
	CommitMaxRecords int
	// CommitMaxBytes bounds the memory of pending (uncommitted) store
	// writes of all tasks together, like Kafka Streams'
	// statestore.cache.max.bytes: once the keys and values written since
	// the last commit, plus about 140 bytes of bookkeeping per distinct
	// key, reach it, the app commits at once instead of waiting for
	// CommitInterval. The commit briefly needs about as much again for the
	// changelog records it produces. Smaller means less memory and more
	// commits (each waits for the producer to flush); it matters when
	// many distinct keys are written per CommitInterval (about 50,000
	// keys of small aggregates fill the default). Default 8 MiB.
	CommitMaxBytes int
	// MaxTaskIdle controls how a task with several input partitions waits
	// for an empty one, so records are processed in timestamp order across
	// them (Kafka Streams' max.task.idle.ms, KIP-695). With 0 (default) a
	// task waits only for a partition that is known to have records still
	// to be fetched, or whose lag is not known yet (it is probed), up to
	// 5 s; > 0 also waits this long for a caught-up empty partition; < 0
	// never waits.
	MaxTaskIdle time.Duration
	// MaxPollRecords bounds the records taken per poll. Default 10,000.
	MaxPollRecords int
	// ProcessingThreads is how many goroutines process this instance's
	// tasks at once (Kafka Streams' num.stream.threads). Default 1: every
	// task runs on the loop goroutine. With n > 1, up to n tasks process
	// their records in parallel between polls and commits; each task's
	// processors and stores stay its own, but the functions given to the
	// DSL (mappers, predicates, aggregators, processor suppliers) and the
	// serdes are called concurrently for different tasks, so they must not
	// share unsynchronized state. Records of one task stay in order.
	ProcessingThreads int

	// SessionTimeout is the group session timeout: how long the group waits
	// for a crashed instance (static membership keeps its partitions that
	// long). Default 10 s.
	SessionTimeout time.Duration
	// HeartbeatInterval defaults to min(3 s, SessionTimeout/3).
	HeartbeatInterval time.Duration
	// RebalanceTimeout bounds a rebalance. Default 60 s.
	RebalanceTimeout time.Duration
	// ProducerLinger batches produced records for this long. Default 5 ms.
	ProducerLinger time.Duration
	// KeepPartitionsOnClose makes Close skip leaving the group, so an
	// instance restarted within SessionTimeout gets its partitions back
	// with no rebalance. Default false: Close leaves and partitions move
	// at once.
	KeepPartitionsOnClose bool

	// CloseTimeout bounds the final commit when the app stops (context
	// cancelled or Close). If brokers are unreachable that long, Run gives
	// up with an error wrapping ErrCloseTimeout and the uncommitted work is
	// abandoned as in a crash (reprocessed after a restart under
	// AtLeastOnce, aborted under ExactlyOnce). Default 30 s.
	CloseTimeout time.Duration

	// StateCacheBytes is the memory Pebble allocates outside the Go heap
	// for all stores of the instance together: the block cache, from
	// which the memtables of every task are reserved. Memtables always get
	// their memory, so with many tasks the cache shrinks to make room and
	// the total is at least the memtables' (see StateMemTableBytes).
	// Default 64 MiB.
	StateCacheBytes int64
	// StateMemTableBytes is the memtable size of each task's store. A
	// store holds one memtable, two while one is flushed (an idle store's
	// starts small and grows to this size), so the memtables of n busy
	// tasks take up to 2 × n × StateMemTableBytes of StateCacheBytes.
	// Smaller memtables mean more, smaller flushes and compactions.
	// Default 4 MiB.
	StateMemTableBytes int64
	// StateCleanupDelay is how long the state of a task this instance no
	// longer owns is kept before it is deleted. Default 10 min.
	StateCleanupDelay time.Duration

	// RepartitionPurgeInterval is how often repartition topics are purged
	// (DeleteRecords) below the committed offsets. Default 30 s.
	RepartitionPurgeInterval time.Duration

	// ReplicationFactor of internal topics; default -1 (the broker's default).
	ReplicationFactor int16
	// InternalTopicConfigs are added to every internal topic's configs
	// (e.g. min.insync.replicas).
	InternalTopicConfigs map[string]string

	// DeserializationErrors is the policy for records a source cannot
	// decode. Default FailOnError.
	DeserializationErrors ErrorPolicy
	// ProcessingErrors is the policy for records an operator or user
	// function fails on (error or panic). Default FailOnError.
	ProcessingErrors ErrorPolicy
	// ProductionErrors is the policy for output records that cannot be
	// produced: records larger than the topic's max.message.bytes are
	// caught before producing, so only that record is affected (the input
	// record's other outputs and store writes stand). Default FailOnError.
	ProductionErrors ErrorPolicy
	// DeadLetterTopic receives dead-lettered records. Default
	// <ApplicationID>-dlq, created at start-up (with as many partitions as
	// the largest input topic) when a policy is DeadLetterOnError.
	DeadLetterTopic string

	// Security configures TLS and SASL for every client the app creates
	// (consumer, producer, admin, restore). Printing a Config shows no
	// secret. See RequiredACLs for the rights the principal needs.
	Security Security
	// ClientOpts are added to every franz-go client the app creates, after
	// the Security options (a dialer, client id, ...). They override the
	// app's defaults where these are meant to be tuned: the group
	// consumer fetches at most 4 MiB per request (kgo.FetchMaxBytes) and
	// 1 MiB per partition (kgo.FetchMaxPartitionBytes), which bounds the
	// decoded records it buffers to a few times that.
	ClientOpts []kgo.Opt
	// Logger receives the app's logs. Default: discard.
	Logger *slog.Logger
	// RestoreListener observes the restore of stores from their changelogs
	// (start, each applied batch, end, suspension).
	RestoreListener RestoreListener
	// StateListener is called on every lifecycle state change.
	StateListener func(from, to State)

	// MetricsRegisterer receives the app's Prometheus metrics (choreo_*,
	// with an application_id label; see the README's Metrics section).
	// Default: a registry of the App's own, which also holds the Go runtime
	// and process collectors, so two Apps in one process never collide.
	// App.Handler serves /metrics from it, or from MetricsRegisterer when
	// that is also a prometheus.Gatherer (a *prometheus.Registry is).
	// Registering fails New (ErrInvalidConfig) when the registerer already
	// holds metrics of the same ApplicationID: to run several instances of
	// one application in one process on a shared registry, give each its
	// own prometheus.WrapRegistererWith(prometheus.Labels{"instance": id},
	// registry) (all of them: one registry cannot mix label sets).
	MetricsRegisterer prometheus.Registerer
}

// Guarantee is the processing guarantee.
type Guarantee = engine.Guarantee

// Processing guarantees.
const (
	// AtLeastOnce: after a crash, input since the last commit is processed
	// again; aggregates may count it twice (as in Kafka Streams).
	AtLeastOnce = engine.AtLeastOnce
	// ExactlyOnce: each commit puts sink and repartition records, changelog
	// records and the input offsets in one Kafka transaction (one
	// transactional producer per instance, transactional.id
	// <ApplicationID>-<InstanceID>); stores apply a commit only after the
	// transaction committed, so local state never runs ahead of Kafka and a
	// restart replays only the changelog tail. Readers of the outputs must
	// read committed.
	ExactlyOnce = engine.ExactlyOnce
)

// RestoreListener observes changelog restores, like Kafka Streams'
// StateRestoreListener. Its methods are called from the restore goroutine
// and must not block.
type RestoreListener = changelog.Listener

// State is the lifecycle state of an App.
type State = engine.State

// Lifecycle states, as in Kafka Streams.
const (
	Created         = engine.Created
	Rebalancing     = engine.Rebalancing
	Running         = engine.Running
	PendingShutdown = engine.PendingShutdown
	NotRunning      = engine.NotRunning
	Error           = engine.Error
)

func (c Config) engineConfig() (engine.Config, error) {
	secOpts, err := c.Security.ClientOpts()
	if err != nil {
		return engine.Config{}, err
	}
	summary := ""
	if c.Security.Enabled() {
		summary = " (" + c.Security.String() + ")"
	}
	policy := map[engine.ErrorKind]ErrorPolicy{
		engine.DeserializationError: c.DeserializationErrors,
		engine.ProcessingError:      c.ProcessingErrors,
		engine.ProductionError:      c.ProductionErrors,
	}
	useDLQ := false
	for _, p := range policy {
		useDLQ = useDLQ || p == DeadLetterOnError
	}
	return engine.Config{
		AppID:                    c.ApplicationID,
		InstanceID:               c.InstanceID,
		Brokers:                  c.Brokers,
		StateDir:                 c.StateDir,
		InMemoryState:            c.InMemoryState,
		ApplicationServer:        c.ApplicationServer,
		Guarantee:                c.Guarantee,
		TransactionTimeout:       c.TransactionTimeout,
		CommitInterval:           c.CommitInterval,
		CommitMaxRecords:         c.CommitMaxRecords,
		CommitMaxBytes:           c.CommitMaxBytes,
		MaxTaskIdle:              c.MaxTaskIdle,
		MaxPollRecords:           c.MaxPollRecords,
		ProcessingThreads:        c.ProcessingThreads,
		SessionTimeout:           c.SessionTimeout,
		HeartbeatInterval:        c.HeartbeatInterval,
		RebalanceTimeout:         c.RebalanceTimeout,
		ProducerLinger:           c.ProducerLinger,
		KeepPartitionsOnClose:    c.KeepPartitionsOnClose,
		CloseTimeout:             c.CloseTimeout,
		StateCacheBytes:          c.StateCacheBytes,
		StateMemTableBytes:       c.StateMemTableBytes,
		StateCleanupDelay:        c.StateCleanupDelay,
		RepartitionPurgeInterval: c.RepartitionPurgeInterval,
		ReplicationFactor:        c.ReplicationFactor,
		InternalTopicConfigs:     c.InternalTopicConfigs,
		ClientOpts:               append(secOpts, c.ClientOpts...),
		SecuritySummary:          summary,
		Logger:                   c.Logger,
		StateListener:            c.StateListener,
		RestoreListener:          c.RestoreListener,
		DeadLetterTopic:          c.DeadLetterTopic,
		UseDeadLetter:            useDLQ,
		OnError: func(kind engine.ErrorKind, _ *kgo.Record, _ error) engine.Action {
			switch policy[kind] {
			case SkipOnError:
				return engine.Skip
			case DeadLetterOnError:
				return engine.DeadLetter
			}
			return engine.Fail
		},
	}, nil
}
