package engine

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/internal/graph"
	"github.com/choreo-go/choreo/partition"
)

// Dead-letter record headers. The first six are Kafka Streams' (KIP-1034),
// so tools written for its dead-letter queues read ours too.
const (
	HeaderException  = "__streams.errors.exception"
	HeaderMessage    = "__streams.errors.message"
	HeaderStacktrace = "__streams.errors.stacktrace"
	HeaderTopic      = "__streams.errors.topic"
	HeaderPartition  = "__streams.errors.partition"
	HeaderOffset     = "__streams.errors.offset"
	// HeaderProcessor names the operator that failed (empty when unknown).
	HeaderProcessor = "__choreo.errors.processor"
	// HeaderTimestamp is the failed record's timestamp (ms since epoch).
	HeaderTimestamp = "__choreo.errors.timestamp"
	// HeaderKind is deserialization, processing or production.
	HeaderKind = "__choreo.errors.kind"
	// HeaderOutputTopic is, for a production error, the topic the record
	// was meant for.
	HeaderOutputTopic = "__choreo.errors.output.topic"
)

// panicError is a panic recovered from user code, with its stack.
type panicError struct {
	value any
	stack []byte
}

func (p *panicError) Error() string { return fmt.Sprintf("%v: %v", ErrPanic, p.value) }
func (p *panicError) Unwrap() error { return ErrPanic }

// errRecordTooLarge is the production error for an oversized output record.
var errRecordTooLarge = errors.New("record larger than the topic's max.message.bytes")

// decide asks the configured policy what to do with a failed record.
func (e *Engine) decide(kind ErrorKind, r *kgo.Record, err error) Action {
	if e.cfg.OnError == nil {
		return Fail
	}
	return e.cfg.OnError(kind, r, err)
}

// handleRecordError applies the policy to an input record whose processing
// failed; its writes and sends are already rolled back.
func (e *Engine) handleRecordError(t *task, kind ErrorKind, r *kgo.Record, err error) error {
	action := e.decide(kind, r, err)
	e.met.recordError(kind, action)
	switch action {
	case Skip:
		e.skipped.Add(1)
		t.log.Warn("skipping record", "kind", kind.String(), "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
		return nil
	case DeadLetter:
		e.deadLettered.Add(1)
		t.log.Warn("dead-lettering record", "kind", kind.String(), "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
		dl := e.deadLetter(kind, r, r, err)
		t.countSent(dl.Topic)
		e.produce(dl, e.sendPromise)
		return nil
	}
	return fmt.Errorf("task %s: %s error at %s/%d offset %d: %w", t.name, kind, r.Topic, r.Partition, r.Offset, err)
}

// handleProductionError applies the policy to an output record that cannot
// be produced; the input record's other effects stand.
func (e *Engine) handleProductionError(t *task, out *kgo.Record, err error) error {
	in := &kgo.Record{Topic: t.rc.Topic, Partition: t.rc.Partition, Offset: t.rc.Offset, Timestamp: time.UnixMilli(t.rc.Timestamp)}
	action := e.decide(ProductionError, out, err)
	e.met.recordError(ProductionError, action)
	switch action {
	case Skip:
		e.skipped.Add(1)
		t.log.Warn("skipping output record", "topic", out.Topic, "input_topic", in.Topic, "input_offset", in.Offset, "err", err)
		return nil
	case DeadLetter:
		e.deadLettered.Add(1)
		t.log.Warn("dead-lettering output record", "topic", out.Topic, "input_topic", in.Topic, "input_offset", in.Offset, "err", err)
		// With the record's other outputs: dropped too if it fails later.
		t.sends = append(t.sends, e.deadLetter(ProductionError, out, in, err))
		return nil
	}
	return fmt.Errorf("task %s: production error for %s (input %s/%d offset %d): %w", t.name, out.Topic, in.Topic, in.Partition, in.Offset, err)
}

// deadLetter builds the dead-letter record for rec: its key, value and
// headers plus error headers; source names the input record that failed.
// Under exactly-once it is produced in the open transaction.
func (e *Engine) deadLetter(kind ErrorKind, rec, source *kgo.Record, err error) *kgo.Record {
	headers := make([]kgo.RecordHeader, 0, len(rec.Headers)+10)
	headers = append(headers, rec.Headers...)
	add := func(k, v string) { headers = append(headers, kgo.RecordHeader{Key: k, Value: []byte(v)}) }
	add(HeaderException, exceptionName(err))
	add(HeaderMessage, err.Error())
	var pe *panicError
	if errors.As(err, &pe) {
		headers = append(headers, kgo.RecordHeader{Key: HeaderStacktrace, Value: pe.stack})
	}
	add(HeaderTopic, source.Topic)
	add(HeaderPartition, strconv.FormatInt(int64(source.Partition), 10))
	add(HeaderOffset, strconv.FormatInt(source.Offset, 10))
	var ge *graph.Error
	if errors.As(err, &ge) {
		add(HeaderProcessor, ge.Node)
	}
	add(HeaderTimestamp, strconv.FormatInt(source.Timestamp.UnixMilli(), 10))
	add(HeaderKind, kind.String())
	if kind == ProductionError {
		add(HeaderOutputTopic, rec.Topic)
	}
	dl := &kgo.Record{
		Topic:     e.cfg.DeadLetterTopic,
		Key:       rec.Key,
		Value:     rec.Value,
		Headers:   headers,
		Timestamp: source.Timestamp,
	}
	if n := e.partitions[e.cfg.DeadLetterTopic]; rec.Key != nil && n > 0 {
		dl.Partition = partition.ForKey(rec.Key, n)
	}
	if kind == ProductionError && e.tooLarge(dl) {
		// The record cannot go anywhere whole: keep the error and where
		// it came from, without the oversized bytes.
		dl.Value = nil
		add("__choreo.errors.truncated", "value dropped: "+strconv.Itoa(len(rec.Value))+" bytes")
		dl.Headers = headers
	}
	return dl
}

// exceptionName is the most specific Go type in err's chain, like the Java
// exception class name of KIP-1034.
func exceptionName(err error) string {
	name := fmt.Sprintf("%T", err)
	for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
		switch u.(type) {
		case *graph.Error:
			continue
		}
		name = fmt.Sprintf("%T", u)
	}
	return name
}

// recordSize estimates a record's size in a batch of its own: Kafka checks
// max.message.bytes against the batch.
func recordSize(r *kgo.Record) int {
	n := 61 + 21 + len(r.Key) + len(r.Value) // batch header, record overhead
	for _, h := range r.Headers {
		n += 10 + len(h.Key) + len(h.Value)
	}
	return n
}

// tooLarge reports whether r exceeds its topic's max.message.bytes (or the
// producer's batch limit).
func (e *Engine) tooLarge(r *kgo.Record) bool {
	limit := int(producerBatchMaxBytes)
	if m, ok := e.maxBytes[r.Topic]; ok && int(m) < limit {
		limit = int(m)
	}
	return recordSize(r) > limit
}
