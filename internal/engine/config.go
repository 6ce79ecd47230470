package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/changelog"
)

// Action is what the engine does with a record whose processing failed.
type Action int

const (
	// Fail stops the app: it moves to the error state and Run returns the cause.
	Fail Action = iota
	// Skip drops the record (its partial writes are rolled back), counts and logs it.
	Skip
	// DeadLetter is Skip, and the record's original bytes go to the
	// dead-letter topic with headers describing the error.
	DeadLetter
)

// ErrorKind says at which step a record failed.
type ErrorKind int

const (
	// DeserializationError: the source could not decode the record.
	DeserializationError ErrorKind = iota
	// ProcessingError: an operator or user function returned an error or panicked.
	ProcessingError
	// ProductionError: an output record cannot be produced (e.g. larger
	// than the topic's max.message.bytes).
	ProductionError
)

func (k ErrorKind) String() string {
	switch k {
	case DeserializationError:
		return "deserialization"
	case ProductionError:
		return "production"
	}
	return "processing"
}

// Guarantee is the processing guarantee.
type Guarantee int

const (
	// AtLeastOnce: after a crash, input since the last commit is processed again.
	AtLeastOnce Guarantee = iota
	// ExactlyOnce: outputs, changelogs and input offsets commit in one
	// Kafka transaction; stores apply only after it committed.
	ExactlyOnce
)

func (g Guarantee) String() string {
	if g == ExactlyOnce {
		return "exactly-once"
	}
	return "at-least-once"
}

// Memory defaults; see runtime.Config.
const (
	// DefaultCommitMaxBytes is the default budget of pending store writes
	// of all tasks together (state.Batch.Bytes) that triggers an early commit.
	DefaultCommitMaxBytes = 8 << 20
	// DefaultFetchMaxBytes bounds one fetch response of the group
	// consumer (kgo.FetchMaxBytes) unless Config.ClientOpts set it.
	DefaultFetchMaxBytes = 4 << 20
)

// Config is the engine's configuration; runtime.Config maps onto it.
type Config struct {
	AppID      string
	InstanceID string
	Brokers    []string
	StateDir   string
	// InMemoryState keeps stores in memory (restored from changelogs on every start).
	InMemoryState bool
	// ApplicationServer is the host:port this instance advertises to the
	// group for interactive queries ("" advertises none).
	ApplicationServer string

	Guarantee          Guarantee
	TransactionTimeout time.Duration

	CommitInterval   time.Duration
	CommitMaxRecords int
	CommitMaxBytes   int
	MaxTaskIdle      time.Duration
	MaxPollRecords   int
	// ProcessingThreads is how many goroutines process tasks at once.
	ProcessingThreads int
	SessionTimeout    time.Duration
	RebalanceTimeout  time.Duration
	HeartbeatInterval time.Duration
	ProducerLinger    time.Duration
	StateCacheBytes   int64
	// StateMemTableBytes is the memtable size of each task's DB (0: the
	// state package's default).
	StateMemTableBytes int64
	StateCleanupDelay  time.Duration
	// RepartitionPurgeInterval is the least time between two purges of
	// repartition topics below the committed offsets.
	RepartitionPurgeInterval time.Duration
	// KeepPartitionsOnClose skips the explicit LeaveGroup on Close so a
	// quickly restarted static member gets its partitions back without a rebalance.
	KeepPartitionsOnClose bool
	// CloseTimeout bounds the final commit on Close.
	CloseTimeout time.Duration

	ReplicationFactor    int16
	InternalTopicConfigs map[string]string

	// OnError decides the fate of a failed record; nil fails the app.
	OnError func(kind ErrorKind, rec *kgo.Record, err error) Action
	// DeadLetterTopic receives dead-lettered records; default <AppID>-dlq.
	// It is created at start-up when it does not exist.
	DeadLetterTopic string
	// UseDeadLetter makes start-up ensure DeadLetterTopic exists (some
	// policy may answer DeadLetter).
	UseDeadLetter bool

	// ClientOpts are appended to every franz-go client the engine creates
	// (security settings, dialers, ...).
	ClientOpts []kgo.Opt
	// SecuritySummary describes the security settings for error messages,
	// e.g. ` (SASL SCRAM-SHA-512 as "app", TLS)`; it must hold no secret.
	SecuritySummary string

	Logger *slog.Logger
	// RestoreListener observes changelog restores.
	RestoreListener changelog.Listener
	// StateListener is called on every state change, in order.
	StateListener func(from, to State)
	// Now is the wall clock; nil means time.Now.
	Now func() time.Time

	// noBrokers: a Driver runs the engine without brokers.
	noBrokers bool
	// testDropOnClose makes Close abandon everything without committing,
	// as a crash would (set through SetCrashOnClose).
	crashOnClose bool
}

// ErrInvalidConfig wraps every configuration error.
var ErrInvalidConfig = errors.New("invalid config")

func (c *Config) validate() error {
	if c.AppID == "" {
		return fmt.Errorf("%w: ApplicationID is required", ErrInvalidConfig)
	}
	for _, r := range c.AppID {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("%w: ApplicationID %q may only contain letters, digits, '.', '_' and '-' (it prefixes topic names)", ErrInvalidConfig, c.AppID)
		}
	}
	if len(c.Brokers) == 0 && !c.noBrokers {
		return fmt.Errorf("%w: Brokers is required", ErrInvalidConfig)
	}
	if c.StateDir == "" && !c.InMemoryState {
		return fmt.Errorf("%w: StateDir is required (or InMemoryState)", ErrInvalidConfig)
	}
	for name, d := range map[string]time.Duration{
		"CommitInterval": c.CommitInterval, "SessionTimeout": c.SessionTimeout,
		"RebalanceTimeout": c.RebalanceTimeout, "HeartbeatInterval": c.HeartbeatInterval,
		"ProducerLinger": c.ProducerLinger, "StateCleanupDelay": c.StateCleanupDelay,
		"RepartitionPurgeInterval": c.RepartitionPurgeInterval, "TransactionTimeout": c.TransactionTimeout,
		"CloseTimeout": c.CloseTimeout,
	} {
		if d < 0 {
			return fmt.Errorf("%w: %s must not be negative", ErrInvalidConfig, name)
		}
	}
	if c.CommitMaxRecords < 0 || c.CommitMaxBytes < 0 || c.MaxPollRecords < 0 || c.StateCacheBytes < 0 || c.StateMemTableBytes < 0 || c.ProcessingThreads < 0 {
		return fmt.Errorf("%w: sizes must not be negative", ErrInvalidConfig)
	}
	if c.StateMemTableBytes >= 4<<30 {
		return fmt.Errorf("%w: StateMemTableBytes must be below 4 GiB (Pebble's limit)", ErrInvalidConfig)
	}
	if c.HeartbeatInterval > 0 && c.SessionTimeout > 0 && c.HeartbeatInterval >= c.SessionTimeout {
		return fmt.Errorf("%w: HeartbeatInterval must be below SessionTimeout", ErrInvalidConfig)
	}
	if c.Guarantee != AtLeastOnce && c.Guarantee != ExactlyOnce {
		return fmt.Errorf("%w: unknown Guarantee %d", ErrInvalidConfig, c.Guarantee)
	}
	if c.Guarantee == ExactlyOnce && c.TransactionTimeout <= c.CommitInterval {
		return fmt.Errorf("%w: TransactionTimeout (%v) must exceed CommitInterval (%v)", ErrInvalidConfig, c.TransactionTimeout, c.CommitInterval)
	}
	if err := validateEndpoint(c.ApplicationServer); err != nil {
		return err
	}
	if c.ReplicationFactor == 0 || c.ReplicationFactor < -1 {
		return fmt.Errorf("%w: ReplicationFactor must be -1 (broker default) or positive", ErrInvalidConfig)
	}
	return nil
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Guarantee == ExactlyOnce {
		// Outputs become visible at commit: commit often (Kafka Streams: 100 ms).
		def(&c.CommitInterval, 100*time.Millisecond)
	}
	def(&c.CommitInterval, time.Second)
	def(&c.TransactionTimeout, 10*time.Second)
	def(&c.CloseTimeout, 30*time.Second)
	def(&c.SessionTimeout, 10*time.Second)
	def(&c.RebalanceTimeout, 60*time.Second)
	def(&c.ProducerLinger, 5*time.Millisecond)
	def(&c.StateCleanupDelay, 10*time.Minute)
	def(&c.RepartitionPurgeInterval, 30*time.Second)
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = min(3*time.Second, c.SessionTimeout/3)
	}
	if c.CommitMaxRecords == 0 {
		c.CommitMaxRecords = 200_000
	}
	if c.CommitMaxBytes == 0 {
		c.CommitMaxBytes = DefaultCommitMaxBytes
	}
	if c.ProcessingThreads == 0 {
		c.ProcessingThreads = 1
	}
	if c.MaxPollRecords == 0 {
		c.MaxPollRecords = 10_000
	}
	if c.StateCacheBytes == 0 {
		c.StateCacheBytes = 64 << 20
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = -1
	}
	if c.DeadLetterTopic == "" {
		c.DeadLetterTopic = c.AppID + "-dlq"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}
