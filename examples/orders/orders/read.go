package orders

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/internal/topicread"
	"github.com/vmihailenco/msgpack/v5"
)

// ProductRecord is one record of the products topic.
type ProductRecord struct {
	Key string
	// Product is the decoded value; nil is a tombstone (deletion).
	Product   *Product
	Timestamp int64
	Partition int32
	Offset    int64
}

// LineRecord is one record of the order-lines topic.
type LineRecord struct {
	Key       string
	Event     LineEvent
	Timestamp int64
	Partition int32
	Offset    int64
}

// Inputs are the contents of the two input topics, each in (partition,
// offset) order.
type Inputs struct {
	Products []ProductRecord
	Lines    []LineRecord
	// Undecodable counts records whose value is not a msgpack map of the
	// right shape (or a line record without a value); they are left out.
	Undecodable int
}

// ReadInputs reads products and order-lines from their start to their end
// offsets as of the call, read-committed. It consumes through a new client
// made from cl.Opts(), so cl must be a plain (non-group, non-transactional)
// client; it carries the seed brokers, TLS and SASL.
func ReadInputs(ctx context.Context, cl *kgo.Client) (Inputs, error) {
	var in Inputs
	err := consumeAll(ctx, cl, []string{TopicProducts, TopicOrderLines}, func(r *kgo.Record) {
		switch r.Topic {
		case TopicProducts:
			pr := ProductRecord{Key: string(r.Key), Timestamp: r.Timestamp.UnixMilli(), Partition: r.Partition, Offset: r.Offset}
			if r.Value != nil {
				var p Product
				if err := msgpack.Unmarshal(r.Value, &p); err != nil {
					in.Undecodable++
					return
				}
				pr.Product = &p
			}
			in.Products = append(in.Products, pr)
		case TopicOrderLines:
			var e LineEvent
			if r.Value == nil || msgpack.Unmarshal(r.Value, &e) != nil {
				in.Undecodable++
				return
			}
			in.Lines = append(in.Lines, LineRecord{Key: string(r.Key), Event: e, Timestamp: r.Timestamp.UnixMilli(), Partition: r.Partition, Offset: r.Offset})
		}
	})
	if err != nil {
		return Inputs{}, err
	}
	slices.SortFunc(in.Products, func(a, b ProductRecord) int {
		return cmp.Or(cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
	})
	slices.SortFunc(in.Lines, func(a, b LineRecord) int {
		return cmp.Or(cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
	})
	return in, nil
}

// ReadPortfolioTopic reads order-portfolio to its end offsets
// (read-committed) and returns the latest value per customer key; a
// tombstone removes the customer. cl is used as in [ReadInputs].
func ReadPortfolioTopic(ctx context.Context, cl *kgo.Client) (map[string]Portfolio, error) {
	type latest struct {
		p      *Portfolio
		offset int64
	}
	last := make(map[string]latest)
	var decodeErr error
	err := consumeAll(ctx, cl, []string{TopicPortfolio}, func(r *kgo.Record) {
		k := string(r.Key)
		if l, ok := last[k]; ok && l.offset > r.Offset {
			return // one key lives in one partition, but be safe
		}
		l := latest{offset: r.Offset}
		if r.Value != nil {
			l.p = new(Portfolio)
			if err := msgpack.Unmarshal(r.Value, l.p); err != nil && decodeErr == nil {
				decodeErr = fmt.Errorf("orders: %s partition %d offset %d: %w", r.Topic, r.Partition, r.Offset, err)
			}
		}
		last[k] = l
	})
	if err == nil {
		err = decodeErr
	}
	if err != nil {
		return nil, err
	}
	out := make(map[string]Portfolio, len(last))
	for k, l := range last {
		if l.p != nil {
			out[k] = *l.p
		}
	}
	return out, nil
}

// consumeAll hands every committed data record of topics between the start
// and end offsets listed at the call to fn, from one goroutine. Control
// records are fetched too (and not handed on), so that a partition whose
// last offsets hold transaction markers is known to be done.
func consumeAll(ctx context.Context, cl *kgo.Client, topics []string, fn func(*kgo.Record)) error {
	adm := kadm.NewClient(cl)
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return fmt.Errorf("orders: list start offsets of %v: %w", topics, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("orders: list end offsets of %v: %w", topics, err)
	}
	for _, t := range topics {
		if _, ok := ends[t]; !ok {
			return fmt.Errorf("orders: topic %s does not exist", t)
		}
	}
	from, to := topicread.Offsets{}, topicread.Offsets{}
	ends.Each(func(e kadm.ListedOffset) {
		s, _ := starts.Lookup(e.Topic, e.Partition)
		if from[e.Topic] == nil {
			from[e.Topic], to[e.Topic] = map[int32]int64{}, map[int32]int64{}
		}
		from[e.Topic][e.Partition], to[e.Topic][e.Partition] = s.Offset, e.Offset
	})
	if err := topicread.Range(ctx, cl.Opts(), from, to, fn); err != nil {
		return fmt.Errorf("orders: reading %v: %w", topics, err)
	}
	return nil
}
