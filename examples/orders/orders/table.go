package orders

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/choreo-go/choreo/changelog"
)

// ChangelogTopic returns the changelog topic of store in application
// appID: "<appID>-<store>-changelog", e.g. ChangelogTopic(AppID,
// NamePortfolio) = "orders-portfolio-changelog".
func ChangelogTopic(appID, store string) string { return changelog.TopicName(appID, store) }

// storeValueHeader is the length of the timestamp in front of every store
// value (runtime/doc.go, "Tables are changelogs of changes").
const storeValueHeader = 8

// ReadTable returns the final contents of a table from the changelog topic
// of its store: the topic is read from its start to its end offsets as of
// the call, read-committed, and the latest record of every key wins; a
// record with a nil value (tombstone) deletes the key.
//
// Store values are an 8-byte big-endian timestamp followed by the
// serialized value; ReadTable decodes the rest with msgpack into a T (the
// serde of the tables of [Topology]). A value shorter than the timestamp,
// a value that does not decode, or a key found in two partitions (a key
// lives in the partition of its task) is an error. cl is used as in
// [ReadInputs]: it must be a plain client.
//
// The changelog holds what the app committed, so read it once the app is
// stopped, or once [WaitProcessed] returned.
func ReadTable[T any](ctx context.Context, cl *kgo.Client, topic string) (map[string]T, error) {
	type latest struct {
		v         *T
		partition int32
	}
	last := make(map[string]latest)
	var recErr error
	err := consumeAll(ctx, cl, []string{topic}, func(r *kgo.Record) {
		if recErr != nil {
			return
		}
		k := string(r.Key)
		if l, ok := last[k]; ok && l.partition != r.Partition {
			recErr = fmt.Errorf("orders: %s: key %q in partitions %d and %d", topic, k, l.partition, r.Partition)
			return
		}
		l := latest{partition: r.Partition}
		if r.Value != nil {
			if len(r.Value) < storeValueHeader {
				recErr = fmt.Errorf("orders: %s partition %d offset %d: store value of %d bytes has no timestamp", r.Topic, r.Partition, r.Offset, len(r.Value))
				return
			}
			l.v = new(T)
			if err := msgpack.Unmarshal(r.Value[storeValueHeader:], l.v); err != nil {
				recErr = fmt.Errorf("orders: %s partition %d offset %d: %w", r.Topic, r.Partition, r.Offset, err)
				return
			}
		}
		last[k] = l // records of a partition come in offset order
	})
	if err == nil {
		err = recErr
	}
	if err != nil {
		return nil, err
	}
	out := make(map[string]T, len(last))
	for k, l := range last {
		if l.v != nil {
			out[k] = *l.v
		}
	}
	return out, nil
}

// ReadTables returns the final contents of the two tables of [Topology]
// that the model predicts, read with [ReadTable] from the changelogs of
// application appID: the portfolio table (store [NamePortfolio]), to
// compare with [Evaluate], and the lines table (store [NameLines]), keyed
// by "order_id/line_no", to compare with [EvaluateLines].
func ReadTables(ctx context.Context, cl *kgo.Client, appID string) (map[string]Portfolio, map[string]PricedLine, error) {
	portfolio, err := ReadTable[Portfolio](ctx, cl, ChangelogTopic(appID, NamePortfolio))
	if err != nil {
		return nil, nil, err
	}
	lines, err := ReadTable[PricedLine](ctx, cl, ChangelogTopic(appID, NameLines))
	if err != nil {
		return nil, nil, err
	}
	return portfolio, lines, nil
}
