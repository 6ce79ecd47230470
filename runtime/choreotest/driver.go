package choreotest

import (
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/internal/engine"
	"github.com/choreo-go/choreo/internal/runtimelink"
	"github.com/choreo-go/choreo/runtime"
)

// Sentinel errors.
var (
	// ErrUnknownTopic: the topology does not read the topic piped to, or
	// does not know the topic read.
	ErrUnknownTopic = engine.ErrUnknownTopic
	// ErrUnknownStore: the topology has no store of that name.
	ErrUnknownStore = engine.ErrUnknownStore
	// ErrNoRecord is returned by an output reader with nothing left to read.
	ErrNoRecord = errors.New("choreotest: no record to read")
	// ErrClosed is returned by a Driver used after Close.
	ErrClosed = engine.ErrDriverClosed
)

// Driver runs a topology in-process, without brokers, deterministically.
// See the package documentation.
type Driver struct {
	d    *engine.Driver
	topo *runtime.Topology
}

// Option configures a Driver.
type Option func(*engine.DriverConfig)

// WithPartitions gives a user topic n partitions (default 1). Tasks, and
// the partitions of the topic's repartition and changelog topics, follow
// as on a cluster.
func WithPartitions(topic string, n int32) Option {
	return func(c *engine.DriverConfig) {
		if c.Partitions == nil {
			c.Partitions = make(map[string]int32)
		}
		c.Partitions[topic] = n
	}
}

// WithStartTime sets the initial wall-clock time (default: the Unix epoch).
func WithStartTime(t time.Time) Option {
	return func(c *engine.DriverConfig) { c.Start = t }
}

// New builds a Driver for topo. cfg is the App's configuration: its
// ApplicationID names the internal topics, and its error policies and
// dead-letter topic apply as in the App; broker, state and commit
// settings do not matter here (stores are in memory).
func New(topo *runtime.Topology, cfg runtime.Config, opts ...Option) (*Driver, error) {
	if topo == nil {
		return nil, errors.New("choreotest: nil topology")
	}
	ecfg, err := runtimelink.EngineConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("choreotest: %w", err)
	}
	var dc engine.DriverConfig
	for _, o := range opts {
		o(&dc)
	}
	d, err := engine.NewDriver(topo.Graph(), ecfg, dc)
	if err != nil {
		return nil, fmt.Errorf("choreotest: %w", err)
	}
	return &Driver{d: d, topo: topo}, nil
}

// Close runs the processors' Close methods and drops the stores.
func (d *Driver) Close() error { return d.d.Close() }

// Now is the driver's wall clock: what ProcessorContext.Now returns.
func (d *Driver) Now() time.Time { return d.d.Now() }

// AdvanceWallClock moves the wall clock forward and fires every
// wall-clock punctuator that falls due (once, at the new time), then
// processes and commits what they caused.
func (d *Driver) AdvanceWallClock(by time.Duration) error { return d.d.AdvanceWallClock(by) }

// PipeRecord appends a raw record to its topic and processes it to the
// end: through every sub-topology it reaches, repartition topics
// included, then commits. A Partition < 0 is chosen from the key like the
// default partitioner. Use it for bytes the serdes would not produce
// (corrupt input). It returns the processing error an error policy did not
// absorb.
func (d *Driver) PipeRecord(rec *kgo.Record) error { return d.d.Pipe(rec) }

// Records returns every raw record written to topic so far, in write order:
// piped input, outputs, repartition, changelog and dead-letter records.
// The records are the driver's: do not modify them.
func (d *Driver) Records(topic string) []*kgo.Record { return d.d.Records(topic) }

// Topics lists the topics written so far (inputs, outputs and internal
// topics), sorted.
func (d *Driver) Topics() []string { return d.d.Topics() }

// InternalTopics lists the topology's repartition and changelog topics
// (their names carry the ApplicationID), sorted.
func (d *Driver) InternalTopics() []string { return d.d.InternalTopics() }

// Stores lists the topology's store names, sorted.
func (d *Driver) Stores() []string { return d.d.Stores() }

// RawEntry is a store entry as stored: for a table, an 8-byte big-endian
// timestamp, then the serialized value.
type RawEntry = engine.KV

// RawStore returns the committed entries of a store across its tasks,
// sorted by key bytes.
func (d *Driver) RawStore(name string) ([]RawEntry, error) { return d.d.StoreAll(name) }

// IsTableStore reports whether a store holds a table: its raw values
// start with the 8-byte big-endian timestamp of the record that set them.
func (d *Driver) IsTableStore(name string) bool { return d.d.IsTableStore(name) }

// Partitions is the partition count of a topic of the topology.
func (d *Driver) Partitions(topic string) (int32, bool) { return d.d.Partitions(topic) }

// Skipped counts the records an error policy skipped.
func (d *Driver) Skipped() int64 { return d.d.Skipped() }

// DeadLettered counts the records an error policy sent to the dead-letter
// topic (read them with Records(cfg.DeadLetterTopic)).
func (d *Driver) DeadLettered() int64 { return d.d.DeadLettered() }

// Topology is the topology the driver runs.
func (d *Driver) Topology() *runtime.Topology { return d.topo }
