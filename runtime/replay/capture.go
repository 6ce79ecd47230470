package replay

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/internal/topicread"
	"github.com/choreo-go/choreo/runtime/choreotest"
)

// Capture records topics from a live cluster: every committed record from
// each partition's log start to its last stable offset as of the call
// (read-committed: aborted transactions are left out). opts are the
// client options of a plain consumer (seed brokers, TLS, SASL).
func Capture(ctx context.Context, opts []kgo.Opt, topics ...string) (*Recording, error) {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("replay: capture: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("replay: capture: list start offsets: %w", err)
	}
	ends, err := adm.ListCommittedOffsets(ctx, topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("replay: capture: list end offsets: %w", err)
	}
	rec := &Recording{Partitions: make(map[string]int32)}
	from, to := topicread.Offsets{}, topicread.Offsets{}
	for _, topic := range topics {
		ps, ok := ends[topic]
		if !ok || len(ps) == 0 {
			return nil, fmt.Errorf("replay: capture: topic %s does not exist", topic)
		}
		rec.Partitions[topic] = int32(len(ps))
		from[topic], to[topic] = map[int32]int64{}, map[int32]int64{}
		for p, o := range ps {
			to[topic][p] = o.Offset
			from[topic][p] = starts[topic][p].Offset
		}
	}
	err = topicread.Range(ctx, opts, from, to, func(r *kgo.Record) {
		rec.Records = append(rec.Records, FromKafka(r))
	})
	if err != nil {
		return nil, fmt.Errorf("replay: capture: %w", err)
	}
	rec.sort()
	return rec, nil
}

// FromDriver records topics of a test driver run: what was piped into its
// input topics, or what it wrote anywhere.
func FromDriver(d *choreotest.Driver, topics ...string) *Recording {
	rec := &Recording{Partitions: make(map[string]int32)}
	for _, topic := range topics {
		if n, ok := d.Partitions(topic); ok {
			rec.Partitions[topic] = n
		}
		for _, r := range d.Records(topic) {
			rec.Records = append(rec.Records, FromKafka(r))
		}
	}
	rec.sort()
	return rec
}

// sort orders the records by topic, partition and offset.
func (rec *Recording) sort() {
	slices.SortStableFunc(rec.Records, func(a, b Record) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
	})
}

func timeMillis(ms int64) time.Time { return time.UnixMilli(ms) }
