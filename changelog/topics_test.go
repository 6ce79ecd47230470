package changelog

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

func TestTopicName(t *testing.T) {
	if got := TopicName("orders", "portfolio"); got != "orders-portfolio-changelog" {
		t.Fatal(got)
	}
}

func TestEnsureTopics(t *testing.T) {
	e := newEnv(t)
	retention := "60000"
	specs := []TopicSpec{
		{Name: TopicName("app", "a"), Partitions: 3, ReplicationFactor: -1, Compacted: true},
		{Name: TopicName("app", "b"), Partitions: 5, ReplicationFactor: -1, Compacted: true, Configs: map[string]*string{"delete.retention.ms": &retention}},
		{Name: "app-repartition", Partitions: 2, ReplicationFactor: -1},
	}
	if err := EnsureTopics(e.ctx(), e.adm, specs); err != nil {
		t.Fatal(err)
	}
	// Idempotent.
	if err := EnsureTopics(e.ctx(), e.adm, specs); err != nil {
		t.Fatal(err)
	}
	infos, err := DescribeTopics(e.ctx(), e.adm, specs[0].Name, specs[1].Name, specs[2].Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range specs {
		info := infos[s.Name]
		if info.Partitions != s.Partitions {
			t.Errorf("%s: %d partitions, want %d", s.Name, info.Partitions, s.Partitions)
		}
		if info.Compacted() != s.Compacted {
			t.Errorf("%s: cleanup.policy %q, compacted want %v", s.Name, info.CleanupPolicy, s.Compacted)
		}
		if info.ID == ([16]byte{}) {
			t.Errorf("%s: zero topic id", s.Name)
		}
		if info.MaxMessageBytes <= 0 {
			t.Errorf("%s: max.message.bytes %d", s.Name, info.MaxMessageBytes)
		}
	}
	if d := infos[specs[0].Name].DeleteRetention; d != DefaultDeleteRetention {
		t.Errorf("default delete retention %v", d)
	}
	if d := infos[specs[1].Name].DeleteRetention; d != time.Minute {
		t.Errorf("delete retention %v, want 1m", d)
	}

	ids, err := TopicIDs(e.ctx(), e.adm, specs[0].Name, specs[1].Name)
	if err != nil {
		t.Fatal(err)
	}
	if ids[specs[0].Name] != infos[specs[0].Name].ID || ids[specs[0].Name] == ids[specs[1].Name] {
		t.Errorf("topic ids %x", ids)
	}

	// A mismatch names the topic and both counts.
	bad := []TopicSpec{{Name: specs[1].Name, Partitions: 4, Compacted: true}, {Name: TopicName("app", "c"), Partitions: 1, Compacted: true}}
	err = EnsureTopics(e.ctx(), e.adm, bad)
	if !errors.Is(err, ErrPartitionMismatch) {
		t.Fatalf("err = %v, want ErrPartitionMismatch", err)
	}
	for _, want := range []string{specs[1].Name, "5 partitions", "expected 4"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	// The other spec was still created.
	if _, err := TopicIDs(e.ctx(), e.adm, bad[1].Name); err != nil {
		t.Errorf("topic c not created: %v", err)
	}

	// Missing topics are reported with the Kafka error.
	if _, err := TopicIDs(e.ctx(), e.adm, "nope"); !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Errorf("TopicIDs(nope) err = %v", err)
	}
	if _, err := DescribeTopics(e.ctx(), e.adm, "nope"); !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Errorf("DescribeTopics(nope) err = %v", err)
	}

	// Invalid specs.
	if err := EnsureTopics(e.ctx(), e.adm, []TopicSpec{{Name: "x", Partitions: 0}}); err == nil {
		t.Error("zero partitions accepted")
	}
}

func TestEnsureTopicsRace(t *testing.T) {
	e := newEnv(t)
	specs := []TopicSpec{
		{Name: TopicName("race", "a"), Partitions: 4, ReplicationFactor: -1, Compacted: true},
		{Name: TopicName("race", "b"), Partitions: 2, ReplicationFactor: -1, Compacted: true},
	}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = EnsureTopics(e.ctx(), e.adm, specs) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	infos, err := DescribeTopics(e.ctx(), e.adm, specs[0].Name, specs[1].Name)
	if err != nil {
		t.Fatal(err)
	}
	if infos[specs[0].Name].Partitions != 4 || infos[specs[1].Name].Partitions != 2 || !infos[specs[0].Name].Compacted() {
		t.Fatalf("%+v", infos)
	}
}

func TestEnsureTopicsBrokerError(t *testing.T) {
	e := newEnv(t)
	// An authorization failure on creation is reported with errors.Is.
	h := e.b.Cluster().Fault(faultCreateTopics(kerr.TopicAuthorizationFailed))
	defer h.Remove()
	err := EnsureTopics(e.ctx(), e.adm, []TopicSpec{{Name: "denied", Partitions: 1, Compacted: true}})
	if !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("err = %v", err)
	}
	if retriable(err) {
		t.Error("authorization failure classified retriable")
	}
}

func TestRetriable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{kerr.NotLeaderForPartition, true},
		{kerr.UnknownTopicOrPartition, true},
		{kerr.TopicAuthorizationFailed, false},
		{ErrPartitionMismatch, false},
		{errors.New("dial tcp: connection refused"), true},
	} {
		if got := retriable(tc.err); got != tc.want {
			t.Errorf("retriable(%v) = %v", tc.err, got)
		}
	}
}
