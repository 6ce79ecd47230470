package runtime

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Header is a Kafka record header. Headers pass through every operator
// unchanged, so a header set upstream (a correlation id) reaches every
// output derived from the record.
type Header = kgo.RecordHeader

// Record is a typed record flowing through a topology.
//
// Operators share the Headers slice of their input with their outputs: treat
// it as read-only and copy it before changing it.
type Record[K, V any] struct {
	Key   K
	Value V
	// Timestamp in milliseconds since the epoch.
	Timestamp int64
	Headers   []Header
	// Tombstone marks a record without a value: nil on the wire, the
	// deletion of a key in a table. Value is then the zero value. Sinks
	// write a nil value for it; stream aggregations and stream–table joins
	// skip it.
	Tombstone bool

	// nullKey marks a record read with a nil key (Key is the zero value); a
	// sink writes a nil key again. Operators that compute a key clear it.
	nullKey bool
}

// KeyValue is a key and a value, the output of FlatMap.
type KeyValue[K, V any] struct {
	Key   K
	Value V
}

// change is what tables forward: the old and the new value of a key.
// hasOld is false for an insert, hasNew is false for a delete.
type change[V any] struct {
	oldV, newV     V
	hasOld, hasNew bool
}

// processor is the per-record interface of every node instance of the
// typed DSL. Parents type-assert their children to it once, at
// instantiation.
type processor[K, V any] interface {
	process(r Record[K, V]) error
}

// fanout forwards a record to every child in order.
type fanout[K, V any] []processor[K, V]

func (f fanout[K, V]) forward(r Record[K, V]) error {
	for _, c := range f {
		if err := c.process(r); err != nil {
			return err
		}
	}
	return nil
}

// dropCounter counts the records a node drops (and logs them at debug).
type dropCounter struct{ n atomic.Int64 }

// ErrNullKey is the processing error of a record with a nil key reaching an
// operator that needs a key (a stream aggregation or a stream–table join).
// Config.ProcessingErrors decides what happens to it.
var ErrNullKey = errors.New("runtime: null key where a key is needed")

// dropInvalid counts a record dropped because it cannot be processed (a
// null key where a key is needed): like Kafka Streams, it is logged at warn.
func (d *dropCounter) dropInvalid(log *slog.Logger, node, reason string) {
	d.n.Add(1)
	if log != nil {
		log.Warn("record dropped", "node", node, "reason", reason)
	}
}

func (d *dropCounter) drop(log *slog.Logger, node, reason string) {
	d.n.Add(1)
	if log != nil && log.Enabled(context.Background(), slog.LevelDebug) {
		log.Debug("record dropped", "node", node, "reason", reason)
	}
}
