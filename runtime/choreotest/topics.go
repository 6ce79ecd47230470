package choreotest

import (
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/runtime"
)

// Record is a typed record read from an output topic.
type Record[K, V any] struct {
	Key   K
	Value V
	// NullKey and Tombstone mark a nil key and a nil value; Key and Value
	// are then the zero values.
	NullKey, Tombstone bool
	Timestamp          time.Time
	Headers            []kgo.RecordHeader
	Partition          int32
	Offset             int64
}

// InputTopic pipes typed records into a topic the topology reads.
type InputTopic[K, V any] struct {
	d       *Driver
	topic   string
	key     runtime.Serde[K]
	val     runtime.Serde[V]
	next    time.Time
	advance time.Duration
}

// Input returns a writer for topic. Records piped without a timestamp get
// the topic's own clock, which starts at the driver's wall clock and moves
// by AutoAdvance after each record (Kafka Streams' TestInputTopic).
func Input[K, V any](d *Driver, topic string, key runtime.Serde[K], val runtime.Serde[V]) *InputTopic[K, V] {
	return &InputTopic[K, V]{d: d, topic: topic, key: key, val: val, next: d.Now()}
}

// AutoAdvance makes each record piped without a timestamp step the
// topic's clock by step. It returns in for chaining.
func (in *InputTopic[K, V]) AutoAdvance(step time.Duration) *InputTopic[K, V] {
	in.advance = step
	return in
}

// Pipe serializes k and v, pipes them at the topic's clock and processes
// them to the end.
func (in *InputTopic[K, V]) Pipe(k K, v V, headers ...kgo.RecordHeader) error {
	ts := in.next
	in.next = in.next.Add(in.advance)
	return in.PipeAt(k, v, ts, headers...)
}

// PipeAt is Pipe with an explicit record timestamp.
func (in *InputTopic[K, V]) PipeAt(k K, v V, ts time.Time, headers ...kgo.RecordHeader) error {
	kb, err := in.key.Serialize(k)
	if err != nil {
		return fmt.Errorf("choreotest: serialize key for %s: %w", in.topic, err)
	}
	vb, err := in.val.Serialize(v)
	if err != nil {
		return fmt.Errorf("choreotest: serialize value for %s: %w", in.topic, err)
	}
	if vb == nil {
		vb = []byte{} // a nil value is a tombstone: PipeTombstone
	}
	return in.d.PipeRecord(&kgo.Record{Topic: in.topic, Partition: -1, Key: kb, Value: vb, Headers: headers, Timestamp: ts})
}

// PipeTombstone pipes k with a nil value (a deletion, for a table).
func (in *InputTopic[K, V]) PipeTombstone(k K, headers ...kgo.RecordHeader) error {
	kb, err := in.key.Serialize(k)
	if err != nil {
		return fmt.Errorf("choreotest: serialize key for %s: %w", in.topic, err)
	}
	ts := in.next
	in.next = in.next.Add(in.advance)
	return in.d.PipeRecord(&kgo.Record{Topic: in.topic, Partition: -1, Key: kb, Headers: headers, Timestamp: ts})
}

// PipeNullKey pipes v with a nil key.
func (in *InputTopic[K, V]) PipeNullKey(v V, headers ...kgo.RecordHeader) error {
	vb, err := in.val.Serialize(v)
	if err != nil {
		return fmt.Errorf("choreotest: serialize value for %s: %w", in.topic, err)
	}
	if vb == nil {
		vb = []byte{}
	}
	ts := in.next
	in.next = in.next.Add(in.advance)
	return in.d.PipeRecord(&kgo.Record{Topic: in.topic, Partition: -1, Value: vb, Headers: headers, Timestamp: ts})
}

// OutputTopic reads the typed records written to a topic, in write order,
// each once.
type OutputTopic[K, V any] struct {
	d     *Driver
	topic string
	key   runtime.Serde[K]
	val   runtime.Serde[V]
	pos   int
}

// Output returns a reader of topic from its beginning.
func Output[K, V any](d *Driver, topic string, key runtime.Serde[K], val runtime.Serde[V]) *OutputTopic[K, V] {
	return &OutputTopic[K, V]{d: d, topic: topic, key: key, val: val}
}

// Len is the number of records not read yet.
func (o *OutputTopic[K, V]) Len() int { return len(o.d.Records(o.topic)) - o.pos }

// Empty reports whether every record was read.
func (o *OutputTopic[K, V]) Empty() bool { return o.Len() == 0 }

// Read returns the next record, or ErrNoRecord.
func (o *OutputTopic[K, V]) Read() (Record[K, V], error) {
	recs := o.d.Records(o.topic)
	if o.pos >= len(recs) {
		return Record[K, V]{}, fmt.Errorf("%s: %w", o.topic, ErrNoRecord)
	}
	r := recs[o.pos]
	o.pos++
	return decodeRecord(r, o.key, o.val)
}

// ReadAll returns every record not read yet.
func (o *OutputTopic[K, V]) ReadAll() ([]Record[K, V], error) {
	var out []Record[K, V]
	for !o.Empty() {
		r, err := o.Read()
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}

// ReadTable reads every record of o not read yet and keeps the last value
// per key, as a table built from the topic would: a tombstone removes its
// key; records with a nil key are left out.
func ReadTable[K comparable, V any](o *OutputTopic[K, V]) (map[K]V, error) {
	out := make(map[K]V)
	for !o.Empty() {
		r, err := o.Read()
		if err != nil {
			return out, err
		}
		switch {
		case r.NullKey:
		case r.Tombstone:
			delete(out, r.Key)
		default:
			out[r.Key] = r.Value
		}
	}
	return out, nil
}

func decodeRecord[K, V any](r *kgo.Record, key runtime.Serde[K], val runtime.Serde[V]) (Record[K, V], error) {
	out := Record[K, V]{Timestamp: r.Timestamp, Headers: r.Headers, Partition: r.Partition, Offset: r.Offset}
	var err error
	if r.Key == nil {
		out.NullKey = true
	} else if out.Key, err = key.Deserialize(r.Key); err != nil {
		return out, fmt.Errorf("choreotest: %s offset %d: deserialize key: %w", r.Topic, r.Offset, err)
	}
	if r.Value == nil {
		out.Tombstone = true
	} else if out.Value, err = val.Deserialize(r.Value); err != nil {
		return out, fmt.Errorf("choreotest: %s offset %d: deserialize value: %w", r.Topic, r.Offset, err)
	}
	return out, nil
}
