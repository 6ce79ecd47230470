// Package topicread reads committed records of topic partitions between two
// offsets, for tests and checkers that compare what is in Kafka with a
// model.
package topicread

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Offsets maps topic → partition → offset.
type Offsets = map[string]map[int32]int64

// Range hands fn every committed data record of the partitions in from,
// from that offset up to (not including) the offset in to, from one
// goroutine, read by a read-committed consumer of its own built with opts
// (seed brokers, security settings). Control records are fetched too (and
// not handed on), so a range ending in a transaction marker is known to be
// read; aborted records are skipped by the consumer. It returns when every
// partition is read, at the first fetch error, or when ctx ends.
func Range(ctx context.Context, opts []kgo.Opt, from, to Offsets, fn func(*kgo.Record)) error {
	type tp struct {
		t string
		p int32
	}
	remaining := make(map[tp]int64)
	consume := make(map[string]map[int32]kgo.Offset)
	for topic, ps := range from {
		for p, f := range ps {
			end, ok := to[topic][p]
			if !ok || f >= end {
				continue
			}
			remaining[tp{topic, p}] = end
			if consume[topic] == nil {
				consume[topic] = make(map[int32]kgo.Offset)
			}
			consume[topic][p] = kgo.NewOffset().At(f)
		}
	}
	if len(remaining) == 0 {
		return nil
	}
	rd, err := kgo.NewClient(append(opts,
		kgo.ConsumePartitions(consume),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	)...)
	if err != nil {
		return fmt.Errorf("topicread: reader client: %w", err)
	}
	defer rd.Close()
	for len(remaining) > 0 {
		fs := rd.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("topicread: %w; still waiting for %v (an open transaction?)", err, remaining)
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if ferr == nil {
				ferr = fmt.Errorf("topicread: fetch %s partition %d: %w", t, p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			k := tp{r.Topic, r.Partition}
			end, ok := remaining[k]
			if !ok || r.Offset >= end {
				return
			}
			if !r.Attrs.IsControl() {
				fn(r)
			}
			if r.Offset >= end-1 {
				delete(remaining, k)
			}
		})
	}
	return nil
}
