package orders

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/choreo-go/choreo/partition"
)

// ProducerOpts are the client options a producer of the scenario needs: keys
// partitioned with murmur2 exactly like the Java client's default
// partitioner (kgo's default does the same for keyed records; this makes it
// explicit).
func ProducerOpts() []kgo.Opt {
	return []kgo.Opt{kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil))}
}

// PartitionFor returns the partition that the Java client's default
// partitioner (and kgo's) chooses for key among n partitions.
func PartitionFor(key string, n int32) int32 { return partition.ForKey([]byte(key), n) }

// Record encodes the item as a Kafka record: the key, the msgpack value
// (nil for a product deletion) and the timestamp.
func (it Item) Record() (*kgo.Record, error) {
	r := &kgo.Record{Topic: it.Topic, Key: []byte(it.Key), Timestamp: time.UnixMilli(it.Timestamp)}
	var err error
	switch it.Topic {
	case TopicProducts:
		if it.Product != nil {
			r.Value, err = msgpack.Marshal(it.Product)
		}
	case TopicOrderLines:
		r.Value, err = msgpack.Marshal(&it.Line)
	default:
		err = fmt.Errorf("orders: item for unknown topic %q", it.Topic)
	}
	return r, err
}

// CreateTopics creates the scenario's topics: products (compacted) and
// order-lines with the given partition count, and order-portfolio (the app
// would create it too). Topics that exist already are left as they are.
func CreateTopics(ctx context.Context, adm *kadm.Client, partitions int32) error {
	compact := "compact"
	for _, t := range []struct {
		name    string
		configs map[string]*string
	}{
		{TopicProducts, map[string]*string{"cleanup.policy": &compact}},
		{TopicOrderLines, nil},
		{TopicPortfolio, nil},
	} {
		resp, err := adm.CreateTopic(ctx, partitions, -1, t.configs, t.name)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("orders: create topic %s: %w", t.name, err)
		}
	}
	return nil
}

// Produce writes the load o to the products and order-lines topics through
// cl, keyed and partitioned with murmur2 (see [ProducerOpts]; every record's
// partition is checked against [PartitionFor]). A zero o.Start is resolved
// with [Options.Resolve] at the time of the call. The catalogue and every
// product change are flushed before the records after them are produced, so
// a product change is on the broker before the events that may use it.
// With o.Rate > 0 the records after the catalogue are paced at that rate.
// progress, if not nil, is called now and then from Produce's goroutine
// with the number of order-line events produced so far (acknowledged at the
// last call).
func Produce(ctx context.Context, cl *kgo.Client, o Options, progress func(n int)) error {
	o = o.Resolve(time.Now())
	items, err := Generate(o)
	if err != nil {
		return err
	}
	if o.Events() == 0 {
		return nil
	}
	parts, err := partitionCounts(ctx, kadm.NewClient(cl), TopicProducts, TopicOrderLines)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu       sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		cancel(err)
	}
	promise := func(r *kgo.Record, err error) {
		if err != nil {
			fail(fmt.Errorf("orders: produce to %s: %w", r.Topic, err))
			return
		}
		if want := PartitionFor(string(r.Key), parts[r.Topic]); r.Partition != want {
			fail(fmt.Errorf("orders: key %q went to %s partition %d, murmur2 says %d: use ProducerOpts",
				r.Key, r.Topic, r.Partition, want))
		}
	}
	flush := func() error {
		if err := cl.Flush(ctx); err != nil {
			return err
		}
		return context.Cause(ctx)
	}

	var (
		events int
		paced  int64
		t0     time.Time
		timer  *time.Timer
	)
	for it := range items {
		if !it.Change && it.Topic == TopicOrderLines && t0.IsZero() {
			// The catalogue is complete.
			if err := flush(); err != nil {
				return producedErr(ctx, err)
			}
			t0 = time.Now()
		}
		if o.Rate > 0 && !t0.IsZero() {
			due := t0.Add(time.Duration(float64(paced) / o.Rate * float64(time.Second)))
			paced++
			if wait := time.Until(due); wait > 0 {
				if timer == nil {
					timer = time.NewTimer(wait)
					defer timer.Stop()
				} else {
					timer.Reset(wait)
				}
				select {
				case <-ctx.Done():
					return producedErr(ctx, ctx.Err())
				case <-timer.C:
				}
			}
		}
		r, err := it.Record()
		if err != nil {
			return err
		}
		cl.Produce(ctx, r, promise)
		if it.Change {
			if err := flush(); err != nil {
				return producedErr(ctx, err)
			}
		}
		if it.Topic == TopicOrderLines {
			events++
			if progress != nil && events%1000 == 0 {
				progress(events)
			}
		}
		if ctx.Err() != nil {
			return producedErr(ctx, ctx.Err())
		}
	}
	if err := flush(); err != nil {
		return producedErr(ctx, err)
	}
	if progress != nil {
		progress(events)
	}
	return nil
}

// producedErr prefers the cause a promise recorded over the cancellation it
// triggered.
func producedErr(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

// partitionCounts returns the partition count of each topic, which must exist.
func partitionCounts(ctx context.Context, adm *kadm.Client, topics ...string) (map[string]int32, error) {
	td, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("orders: list topics: %w", err)
	}
	out := make(map[string]int32, len(topics))
	for _, t := range topics {
		d, ok := td[t]
		if !ok || d.Err != nil || len(d.Partitions) == 0 {
			return nil, fmt.Errorf("orders: topic %s does not exist (CreateTopics first): %v", t, d.Err)
		}
		out[t] = int32(len(d.Partitions))
	}
	return out, nil
}
