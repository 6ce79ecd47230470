package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/choreo-go/choreo/changelog"
	"github.com/choreo-go/choreo/internal/graph"
	"github.com/choreo-go/choreo/partition"
)

// subtopology is a compiled sub-topology with its topic names resolved for
// this app id.
type subtopology struct {
	id      int
	nodes   []*graph.Node // parents before children
	sources []sourceRef
	topics  []string // real names, sorted
	stores  []string
	// internal marks repartition topics among topics.
	internal map[string]bool
}

type sourceRef struct {
	node   *graph.Node
	topics map[string]bool
}

func topicName(appID string, internal bool, name string) string {
	if internal {
		return graph.Repartition(appID, name)
	}
	return name
}

func resolveSubtopologies(topo *graph.Topology, appID string) ([]*subtopology, error) {
	var subs []*subtopology
	for i, st := range topo.Subtopologies {
		if st.ID != i {
			return nil, fmt.Errorf("engine: sub-topology ids must be dense, got %d at %d", st.ID, i)
		}
		s := &subtopology{id: st.ID, nodes: st.Nodes, stores: slices.Clone(st.Stores), internal: make(map[string]bool)}
		for _, src := range st.Sources {
			ref := sourceRef{node: src, topics: make(map[string]bool)}
			for _, tp := range src.Topics {
				name := topicName(appID, src.InternalTopic, tp)
				ref.topics[name] = true
				s.topics = append(s.topics, name)
				if src.InternalTopic {
					s.internal[name] = true
				}
			}
			s.sources = append(s.sources, ref)
		}
		sort.Strings(s.topics)
		s.topics = slices.Compact(s.topics)
		sort.Strings(s.stores)
		subs = append(subs, s)
	}
	return subs, nil
}

// setupTopics waits for the brokers, checks the user's topics, derives
// repartition partition counts, checks co-partitioning and creates the
// internal topics. Unreachable brokers are an outage: it retries and logs
// until ctx ends. A missing topic or a partition mismatch is a fatal error.
func (e *Engine) setupTopics(ctx context.Context) error {
	names, nsources := e.userTopicNames()

	var details map[string]changelog.TopicInfo
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var err error
		details, err = changelog.DescribeTopics(actx, e.adm, names...)
		cancel()
		if err == nil || (errors.Is(err, kerr.UnknownTopicOrPartition) && details != nil && !isAuthError(err)) {
			// Missing topics are reported below, by name.
			e.lc.brokerOK()
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !isRetriable(err) {
			return fmt.Errorf("reading topic metadata: %w", err)
		}
		if rerr := e.credentialsRefused(); rerr != nil {
			return rerr
		}
		e.log.Warn("waiting for brokers", "attempt", attempt+1, "brokers", strings.Join(e.cfg.Brokers, ","), "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff(attempt)):
		}
	}
	var missing []string
	e.partitions = make(map[string]int32)
	e.maxBytes = make(map[string]int32)
	for _, n := range names {
		d, ok := details[n]
		if !ok || d.Partitions == 0 {
			missing = append(missing, n)
			continue
		}
		e.partitions[n] = d.Partitions
		e.maxBytes[n] = d.MaxMessageBytes
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s (create them before starting the app)", ErrMissingTopic, strings.Join(missing, ", "))
	}
	if e.cfg.UseDeadLetter {
		if err := e.ensureDeadLetterTopic(ctx); err != nil {
			return err
		}
	}

	specs, err := e.planInternalTopics()
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		err := changelog.EnsureTopics(ctx, e.adm, specs)
		if err == nil {
			break
		}
		if !isRetriable(err) || ctx.Err() != nil {
			return fmt.Errorf("creating internal topics: %w", e.createDenied(ctx, specs, err))
		}
		e.log.Warn("waiting for brokers to create internal topics", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff(attempt)):
		}
	}
	var clTopics []string
	for _, t := range e.changelogs {
		clTopics = append(clTopics, t)
	}
	// Input topic ids key the checkpointed input offsets.
	e.inputIDs = make(map[string][16]byte)
	for _, n := range names {
		e.inputIDs[n] = details[n].ID
	}
	clTopics = append(clTopics, e.repartTops...)
	if len(clTopics) > 0 {
		// A topic just created may take a moment to show in metadata.
		for attempt := 0; ; attempt++ {
			ids, err := changelog.TopicIDs(ctx, e.adm, clTopics...)
			if err == nil {
				e.topicIDs = ids
				for _, t := range e.repartTops {
					e.inputIDs[t] = ids[t]
				}
				break
			}
			if (!isRetriable(err) && !errors.Is(err, kerr.UnknownTopicOrPartition)) || ctx.Err() != nil {
				return fmt.Errorf("reading changelog topic ids: %w", err)
			}
			e.log.Debug("waiting for changelog topic metadata", "err", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff(attempt)):
			}
		}
	}
	e.log.Info("topics ready", "sources", nsources, "internal", len(specs))
	return nil
}

// userTopicNames lists the user topics the app reads or writes, sorted,
// and how many of them it reads.
func (e *Engine) userTopicNames() (names []string, nsources int) {
	sources, sinks := e.userTopics()
	names = slices.Concat(sources, sinks)
	slices.Sort(names)
	return slices.Compact(names), len(sources)
}

// planInternalTopics derives the repartition topics' partition counts from
// e.partitions (the user topics' counts), checks co-partitioning and names
// the changelogs; it returns the internal topics to create. It needs no
// broker: the test driver runs it on declared partition counts.
func (e *Engine) planInternalTopics() ([]changelog.TopicSpec, error) {
	g := e.topo.Graph
	if err := e.derivePartitions(); err != nil {
		return nil, err
	}

	// Co-partitioning: every group of joined sources must agree.
	var groups [][]string
	for _, grp := range e.topo.CopartitionGroups {
		var names []string
		for _, ct := range grp {
			names = append(names, topicName(e.cfg.AppID, ct.Internal, ct.Name))
		}
		groups = append(groups, names)
	}
	if err := partition.CheckCopartitioned(groups, e.partitions); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}

	// Internal topics.
	var specs []changelog.TopicSpec
	cfgs := func(extra map[string]string) map[string]*string {
		out := make(map[string]*string)
		for k, v := range e.cfg.InternalTopicConfigs {
			out[k] = &v
		}
		for k, v := range extra {
			out[k] = &v
		}
		return out
	}
	for _, topic := range e.repartTops {
		specs = append(specs, changelog.TopicSpec{
			Name: topic, Partitions: e.partitions[topic], ReplicationFactor: e.cfg.ReplicationFactor,
			// Purged after each commit, so records need no retention limit.
			Configs: cfgs(map[string]string{"cleanup.policy": "delete", "retention.ms": "-1"}),
		})
	}
	e.changelogs = make(map[string]string)
	for _, s := range e.subs {
		np := int32(0)
		for _, t := range s.topics {
			np = max(np, e.partitions[t])
		}
		for _, name := range s.stores {
			spec := g.Stores[name]
			if spec == nil || !spec.Logged {
				continue
			}
			topic := graph.Changelog(e.cfg.AppID, name)
			e.changelogs[name] = topic
			e.partitions[topic] = np
			specs = append(specs, changelog.TopicSpec{
				Name: topic, Partitions: np, ReplicationFactor: e.cfg.ReplicationFactor, Compacted: true,
				Configs: cfgs(map[string]string{"cleanup.policy": "compact"}),
			})
		}
	}
	return specs, nil
}

// derivePartitions sets the partition count of every repartition topic:
// explicit, else that of the external topics it is co-partitioned with (a
// repartition feeding a join takes the table's count), else the largest
// count among the sources of the sub-topology that writes it.
func (e *Engine) derivePartitions() error {
	writers := map[string]*subtopology{} // repartition topic → writing sub-topology
	for _, s := range e.subs {
		for _, n := range s.nodes {
			if n.Kind == graph.KindSink && n.InternalTopic {
				writers[graph.Repartition(e.cfg.AppID, n.Topic)] = s
			}
		}
	}
	e.repartTops = nil
	for name, spec := range e.topo.Repartitions {
		topic := graph.Repartition(e.cfg.AppID, name)
		e.repartTops = append(e.repartTops, topic)
		if spec.Partitions > 0 {
			e.partitions[topic] = spec.Partitions
		}
	}
	sort.Strings(e.repartTops)
	// Iterate to a fixed point: repartitions can chain.
	for range len(e.repartTops) + 1 {
		changed := false
		for _, topic := range e.repartTops {
			if e.partitions[topic] > 0 {
				continue
			}
			var n int32
			for _, grp := range e.topo.CopartitionGroups {
				in := false
				for _, ct := range grp {
					if topicName(e.cfg.AppID, ct.Internal, ct.Name) == topic {
						in = true
					}
				}
				if !in {
					continue
				}
				for _, ct := range grp {
					if p := e.partitions[topicName(e.cfg.AppID, ct.Internal, ct.Name)]; p > n {
						n = p
					}
				}
			}
			if n == 0 {
				if w := writers[topic]; w != nil {
					for _, t := range w.topics {
						n = max(n, e.partitions[t])
					}
				}
			}
			if n > 0 {
				e.partitions[topic] = n
				changed = true
			}
		}
		if !changed {
			break
		}
	}
	for _, topic := range e.repartTops {
		if e.partitions[topic] == 0 {
			return fmt.Errorf("%w: cannot derive the partition count of %s; set it with WithPartitions", ErrInvalidConfig, topic)
		}
	}
	return nil
}

// ensureDeadLetterTopic creates the dead-letter topic when it is missing,
// with as many partitions as the largest user topic, and learns its
// partition count and size limit.
func (e *Engine) ensureDeadLetterTopic(ctx context.Context) error {
	var np int32 = 1
	for _, n := range e.partitions {
		np = max(np, n)
	}
	topic := e.cfg.DeadLetterTopic
	spec := changelog.TopicSpec{Name: topic, Partitions: np, ReplicationFactor: e.cfg.ReplicationFactor}
	for attempt := 0; ; attempt++ {
		err := changelog.EnsureTopics(ctx, e.adm, []changelog.TopicSpec{spec})
		if err == nil || errors.Is(err, changelog.ErrPartitionMismatch) { // an existing one keeps its partitioning
			var d map[string]changelog.TopicInfo
			d, err = changelog.DescribeTopics(ctx, e.adm, topic)
			if err == nil {
				e.partitions[topic] = d[topic].Partitions
				e.maxBytes[topic] = d[topic].MaxMessageBytes
				return nil
			}
		}
		if (!isRetriable(err) && !errors.Is(err, kerr.UnknownTopicOrPartition)) || isAuthError(err) || ctx.Err() != nil || attempt > 50 {
			return fmt.Errorf("creating the dead-letter topic %s: %w", topic, e.createDenied(ctx, []changelog.TopicSpec{spec}, err))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff(attempt)):
		}
	}
}

// createDenied names the Create right when err is an authorization failure
// and one of specs' topics is still missing: creating it was refused. Other
// errors are returned as they are.
func (e *Engine) createDenied(ctx context.Context, specs []changelog.TopicSpec, err error) error {
	if !isAuthError(err) {
		return err
	}
	names := make([]string, 0, len(specs))
	for _, s := range specs {
		names = append(names, s.Name)
	}
	sort.Strings(names)
	details, lerr := e.adm.ListTopics(ctx, names...)
	if lerr != nil {
		return err
	}
	for _, n := range names {
		if td, ok := details[n]; !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
			return &AuthorizationError{Resource: kmsg.ACLResourceTypeTopic, Name: n, Operation: kmsg.ACLOperationCreate, Request: "create topic", Err: err}
		}
	}
	return err
}
