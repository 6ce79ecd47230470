package orders

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/internal/graph"
)

// SourceTopics returns every topic the topology's consumer group reads for
// application appID: the two input topics and the three repartition topics.
func SourceTopics(appID string) []string {
	return []string{
		TopicProducts,
		TopicOrderLines,
		graph.Repartition(appID, NameLinesByProduct),
		graph.Repartition(appID, NameLinesByLine),
		graph.Repartition(appID, NameLinesByCustomer),
	}
}

// How often WaitProcessed looks, and how long the group must stay caught
// up before it counts as done.
const (
	waitPoll   = 200 * time.Millisecond
	waitSettle = time.Second
)

// WaitProcessed returns when group has processed everything in topics: on
// every partition the committed offset has reached the end offset (lag 0),
// and nothing changed for about a second (records in flight between
// sub-topologies would show up as new end offsets). A partition whose
// only records past the committed offset are transaction markers counts as
// caught up: an exactly-once group commits the offset after its last data
// record, while the end offset also covers the commit marker that follows.
// That check reads the partition through a new client made from cl.Opts(),
// so cl must be a plain client, as for [ReadInputs].
//
// It returns ctx's error if ctx ends first. Topics that do not exist yet
// (internal topics before the app created them) count as not caught up.
func WaitProcessed(ctx context.Context, cl *kgo.Client, group string, topics []string) error {
	adm := kadm.NewClient(cl)
	tick := time.NewTicker(waitPoll)
	defer tick.Stop()
	var (
		prev      map[tpKey][2]int64         // (committed, end) per partition
		since     time.Time                  // when prev was first seen all caught up
		markerOK  = make(map[tpKey][2]int64) // partitions with only markers left, at that state
		probed    = make(map[tpKey][2]int64) // partitions already probed at that state
		lastState map[tpKey][2]int64
		stateSeen time.Time
	)
	for {
		state, err := lagState(ctx, adm, group, topics)
		if err == nil {
			if !maps.Equal(state, lastState) {
				lastState, stateSeen = state, time.Now()
			}
			var behind, probe []tpKey
			for k, ce := range state {
				if ce[0] < ce[1] && markerOK[k] != ce {
					behind = append(behind, k)
					if probed[k] != ce {
						probe = append(probe, k)
					}
				}
			}
			// The group is idle but behind: maybe only markers remain.
			if len(probe) > 0 && time.Since(stateSeen) >= waitSettle {
				only, err := onlyMarkers(ctx, cl, state, probe)
				if err != nil && ctx.Err() == nil {
					return err
				}
				for _, k := range probe {
					probed[k] = state[k]
				}
				for _, k := range only {
					markerOK[k] = state[k]
				}
				behind = slices.DeleteFunc(behind, func(k tpKey) bool { return markerOK[k] == state[k] })
			}
			switch {
			case len(behind) > 0:
				prev = nil
			case prev == nil || !maps.Equal(prev, state):
				prev, since = state, time.Now()
			case time.Since(since) >= waitSettle:
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("orders: waiting for group %s to process %v: %w (last error: %v)", group, topics, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

type tpKey struct {
	topic     string
	partition int32
}

// lagState returns (committed, end) for every partition of topics; a
// partition the group never committed has committed = log start offset
// (nothing to do there if the log is empty).
func lagState(ctx context.Context, adm *kadm.Client, group string, topics []string) (map[tpKey][2]int64, error) {
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, err
	}
	for _, t := range topics {
		if _, ok := ends[t]; !ok {
			return nil, fmt.Errorf("topic %s does not exist", t)
		}
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, err
	}
	committed, err := adm.FetchOffsetsForTopics(ctx, group, topics...)
	if err == nil {
		err = committed.Error()
	}
	if errors.Is(err, kerr.GroupIDNotFound) {
		committed, err = nil, nil // no commits yet
	}
	if err != nil {
		return nil, err
	}
	state := make(map[tpKey][2]int64)
	ends.Each(func(e kadm.ListedOffset) {
		c := int64(-1)
		if o, ok := committed.Lookup(e.Topic, e.Partition); ok {
			c = o.At
		}
		if s, ok := starts.Lookup(e.Topic, e.Partition); ok && c < s.Offset {
			// Never committed, or committed below a purge: only what
			// lies above the log start can still be waiting.
			if c >= 0 || s.Offset == e.Offset {
				c = s.Offset
			}
		}
		state[tpKey{e.Topic, e.Partition}] = [2]int64{c, e.Offset}
	})
	return state, nil
}

// onlyMarkers returns those of the partitions whose records in
// [committed, end) are all control records (read-committed: aborted data
// is skipped as well).
func onlyMarkers(ctx context.Context, cl *kgo.Client, state map[tpKey][2]int64, parts []tpKey) ([]tpKey, error) {
	from := make(map[string]map[int32]kgo.Offset)
	pending := make(map[tpKey]bool)
	for _, k := range parts {
		c := state[k][0]
		if c < 0 {
			continue // never committed and not empty: real lag
		}
		if from[k.topic] == nil {
			from[k.topic] = make(map[int32]kgo.Offset)
		}
		from[k.topic][k.partition] = kgo.NewOffset().At(c)
		pending[k] = true
	}
	if len(pending) == 0 {
		return nil, nil
	}
	rd, err := kgo.NewClient(append(cl.Opts(),
		kgo.ConsumePartitions(from),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	)...)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	// Markers of committed transactions are below the last stable offset
	// and come back at once; give up after a while (an open transaction
	// holds the partition back: not caught up).
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var only []tpKey
	for len(pending) > 0 && pctx.Err() == nil {
		fs := rd.PollFetches(pctx)
		fs.EachRecord(func(r *kgo.Record) {
			k := tpKey{r.Topic, r.Partition}
			if !pending[k] {
				return
			}
			end := state[k][1]
			switch {
			case r.Offset >= end:
				return
			case !r.Attrs.IsControl():
				delete(pending, k) // data waiting: behind
			case r.Offset == end-1:
				delete(pending, k)
				only = append(only, k)
			}
		})
	}
	return only, nil
}
