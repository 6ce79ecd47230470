package changelog

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// ErrPartitionMismatch is wrapped by the error EnsureTopics returns when an
// existing topic has another partition count than its spec asks for.
var ErrPartitionMismatch = errors.New("changelog: partition count mismatch")

// Defaults Kafka applies when a topic does not override the config.
const (
	// DefaultDeleteRetention is Kafka's default delete.retention.ms (1 day).
	DefaultDeleteRetention = 24 * time.Hour
	// DefaultMaxMessageBytes is Kafka's default max.message.bytes.
	DefaultMaxMessageBytes = 1048588
)

// TopicName returns the changelog topic of store in application app:
// "<app>-<store>-changelog".
func TopicName(app, store string) string {
	return app + "-" + store + "-changelog"
}

// TopicSpec describes a topic the application needs.
type TopicSpec struct {
	// Name is the topic name.
	Name string
	// Partitions is the partition count the topic must have.
	Partitions int32
	// ReplicationFactor of a created topic; -1 uses the broker default.
	ReplicationFactor int16
	// Configs are topic configs set when the topic is created (existing
	// topics are not altered).
	Configs map[string]*string
	// Compacted sets cleanup.policy=compact on creation unless Configs
	// already sets cleanup.policy. Changelog topics are compacted.
	Compacted bool
}

// EnsureTopics creates the topics of specs that do not exist and checks the
// partition count of those that do. Creation races with another instance
// (TOPIC_ALREADY_EXISTS) are tolerated: the topic is then checked like an
// existing one. A wrong partition count is an error wrapping
// ErrPartitionMismatch that names the topic and both counts. Broker errors are
// wrapped with %w, so errors.Is works with kerr errors (for example to tell a
// retriable error from an authorization failure). All specs are processed;
// the errors of several topics are joined.
func EnsureTopics(ctx context.Context, adm *kadm.Client, specs []TopicSpec) error {
	if len(specs) == 0 {
		return nil
	}
	want := make(map[string]TopicSpec, len(specs))
	names := make([]string, 0, len(specs))
	for _, s := range specs {
		if s.Name == "" {
			return errors.New("changelog: topic spec without a name")
		}
		if s.Partitions <= 0 {
			return fmt.Errorf("changelog: topic %q: partitions must be positive, got %d", s.Name, s.Partitions)
		}
		if prev, dup := want[s.Name]; dup {
			if prev.Partitions != s.Partitions {
				return fmt.Errorf("changelog: topic %q specified twice with %d and %d partitions: %w",
					s.Name, prev.Partitions, s.Partitions, ErrPartitionMismatch)
			}
			continue
		}
		want[s.Name] = s
		names = append(names, s.Name)
	}
	sort.Strings(names)

	details, err := adm.ListTopics(fresh(ctx), names...)
	if err != nil {
		return fmt.Errorf("changelog: list topics: %w", err)
	}
	var errs []error
	for _, name := range names {
		spec := want[name]
		td, ok := details[name]
		switch {
		case ok && td.Err == nil:
			errs = append(errs, checkPartitions(spec, td))
			continue
		case ok && !errors.Is(td.Err, kerr.UnknownTopicOrPartition):
			errs = append(errs, fmt.Errorf("changelog: describe topic %q: %w", name, td.Err))
			continue
		}
		errs = append(errs, create(ctx, adm, spec))
	}
	return errors.Join(errs...)
}

func create(ctx context.Context, adm *kadm.Client, spec TopicSpec) error {
	configs := maps.Clone(spec.Configs)
	if spec.Compacted {
		if configs == nil {
			configs = make(map[string]*string, 1)
		}
		if _, set := configs["cleanup.policy"]; !set {
			compact := "compact"
			configs["cleanup.policy"] = &compact
		}
	}
	rf := spec.ReplicationFactor
	if rf == 0 {
		rf = -1
	}
	_, err := adm.CreateTopic(ctx, spec.Partitions, rf, configs, spec.Name)
	if err == nil {
		return nil
	}
	if !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("changelog: create topic %q: %w", spec.Name, err)
	}
	// Somebody else created it meanwhile: check it like an existing topic.
	details, err := adm.ListTopics(fresh(ctx), spec.Name)
	if err != nil {
		return fmt.Errorf("changelog: list topic %q: %w", spec.Name, err)
	}
	td, ok := details[spec.Name]
	if !ok {
		return fmt.Errorf("changelog: topic %q exists but is not in metadata: %w", spec.Name, kerr.UnknownTopicOrPartition)
	}
	if td.Err != nil {
		return fmt.Errorf("changelog: describe topic %q: %w", spec.Name, td.Err)
	}
	return checkPartitions(spec, td)
}

func checkPartitions(spec TopicSpec, td kadm.TopicDetail) error {
	if got := int32(len(td.Partitions)); got != spec.Partitions {
		return fmt.Errorf("changelog: topic %q has %d partitions, expected %d: %w",
			spec.Name, got, spec.Partitions, ErrPartitionMismatch)
	}
	return nil
}

// TopicIDs returns the topic IDs of topics. A topic that does not exist is an
// error wrapping kerr.UnknownTopicOrPartition; the IDs found are returned
// along with the error.
func TopicIDs(ctx context.Context, adm *kadm.Client, topics ...string) (map[string][16]byte, error) {
	details, err := adm.ListTopics(fresh(ctx), topics...)
	if err != nil {
		return nil, fmt.Errorf("changelog: list topics: %w", err)
	}
	out := make(map[string][16]byte, len(topics))
	var errs []error
	for _, t := range topics {
		td, ok := details[t]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("changelog: topic %q: %w", t, kerr.UnknownTopicOrPartition))
		case td.Err != nil:
			errs = append(errs, fmt.Errorf("changelog: topic %q: %w", t, td.Err))
		default:
			out[t] = td.ID
		}
	}
	return out, errors.Join(errs...)
}

// TopicInfo is what the runtime needs to know about an existing topic.
type TopicInfo struct {
	// Name is the topic name.
	Name string
	// ID is the topic ID (all zero if the broker has no topic IDs).
	ID [16]byte
	// Partitions is the partition count.
	Partitions int32
	// CleanupPolicy is the cleanup.policy value, e.g. "compact",
	// "delete" or "compact,delete".
	CleanupPolicy string
	// MaxMessageBytes is max.message.bytes: the largest record batch the
	// topic accepts.
	MaxMessageBytes int32
	// DeleteRetention is delete.retention.ms: how long tombstones stay in
	// a compacted topic after compaction reached them.
	DeleteRetention time.Duration
}

// Compacted reports whether cleanup.policy includes compact.
func (t TopicInfo) Compacted() bool {
	for _, p := range strings.Split(t.CleanupPolicy, ",") {
		if strings.TrimSpace(p) == "compact" {
			return true
		}
	}
	return false
}

// DescribeTopics returns the partition count, topic ID and the configs the
// runtime needs (cleanup.policy, max.message.bytes, delete.retention.ms) of
// each topic, from metadata and DescribeConfigs. Configs a broker does not
// report take Kafka's defaults. A missing topic is an error wrapping
// kerr.UnknownTopicOrPartition; the topics found are returned along with the
// error.
func DescribeTopics(ctx context.Context, adm *kadm.Client, topics ...string) (map[string]TopicInfo, error) {
	if len(topics) == 0 {
		return map[string]TopicInfo{}, nil
	}
	details, err := adm.ListTopics(fresh(ctx), topics...)
	if err != nil {
		return nil, fmt.Errorf("changelog: list topics: %w", err)
	}
	var (
		errs    []error
		present []string
		out     = make(map[string]TopicInfo, len(topics))
	)
	for _, t := range topics {
		td, ok := details[t]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("changelog: topic %q: %w", t, kerr.UnknownTopicOrPartition))
		case td.Err != nil:
			errs = append(errs, fmt.Errorf("changelog: topic %q: %w", t, td.Err))
		default:
			out[t] = TopicInfo{
				Name:            t,
				ID:              td.ID,
				Partitions:      int32(len(td.Partitions)),
				CleanupPolicy:   "delete",
				MaxMessageBytes: DefaultMaxMessageBytes,
				DeleteRetention: DefaultDeleteRetention,
			}
			present = append(present, t)
		}
	}
	if len(present) == 0 {
		return out, errors.Join(errs...)
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, present...)
	if err != nil {
		return nil, fmt.Errorf("changelog: describe topic configs: %w", err)
	}
	for _, rc := range rcs {
		info, ok := out[rc.Name]
		if !ok {
			continue
		}
		if rc.Err != nil {
			errs = append(errs, fmt.Errorf("changelog: describe configs of topic %q: %w", rc.Name, rc.Err))
			delete(out, rc.Name)
			continue
		}
		for _, c := range rc.Configs {
			if c.Value == nil {
				continue
			}
			v := *c.Value
			switch c.Key {
			case "cleanup.policy":
				info.CleanupPolicy = v
			case "max.message.bytes":
				if n, err := strconv.ParseInt(v, 10, 32); err == nil {
					info.MaxMessageBytes = int32(n)
				}
			case "delete.retention.ms":
				if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
					info.DeleteRetention = time.Duration(n) * time.Millisecond
				}
			}
		}
		out[rc.Name] = info
	}
	return out, errors.Join(errs...)
}

// fresh makes kadm requests of ctx bypass the client's metadata cache, which
// kadm otherwise uses for up to kgo.MetadataMinAge (5 s by default): a topic
// just created, deleted or recreated would be seen as it was. The fresh
// answer also refreshes the cache for later requests.
func fresh(ctx context.Context) context.Context {
	return kadm.WithAuthorizedOps(ctx)
}

// retriable reports whether err from a broker interaction is worth retrying:
// retriable Kafka errors, and anything that is not a Kafka error (network
// failures, timeouts). Authorization failures and other non-retriable Kafka
// errors are not.
func retriable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, ErrPartitionMismatch) {
		return false
	}
	if _, ok := errors.AsType[*kadm.AuthError](err); ok {
		return false
	}
	if ke, ok := errors.AsType[*kerr.Error](err); ok {
		return ke.Retriable
	}
	return true
}
