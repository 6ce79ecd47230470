package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/choreo-go/choreo/partition"
	"github.com/choreo-go/choreo/runtime"
)

// queryApp is one instance of the count topology with a query on its
// counts table.
type queryApp struct {
	id, endpoint string
	app          *runtime.App
	q            *runtime.TableQuery[string, int64]
	stop         func() error
}

func startQueryApp(t *testing.T, c *cluster, id, endpoint string, listener runtime.RestoreListener) *queryApp {
	t.Helper()
	b := runtime.NewBuilder()
	counts := runtime.Count(runtime.StreamOf(b, "in", runtime.String(), runtime.String()).GroupByKey(), runtime.Named("counts"))
	counts.ToStream().To("out")
	cfg := c.config(t.TempDir(), id)
	cfg.SessionTimeout = 5 * time.Second // room for a loaded CI machine
	cfg.ApplicationServer = endpoint
	cfg.RestoreListener = listener
	app, err := runtime.New(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	q, err := runtime.Query(app, counts)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := q.Get(context.Background(), "k0"); !errors.Is(err, runtime.ErrStoreNotReady) {
		t.Fatalf("query before Run: got %v, want ErrStoreNotReady", err)
	}
	return &queryApp{id: id, endpoint: endpoint, app: app, q: q, stop: running(t, app)}
}

// groupOwners returns the instance owning each partition of topic as the
// broker sees the group, its generation, and whether it is stable.
func groupOwners(c *cluster, group, topic string) (map[int32]string, int32, string) {
	info := c.broker.Cluster().GroupInfo(group)
	if info == nil {
		return nil, 0, "no group"
	}
	owners := map[int32]string{}
	for _, m := range info.Members {
		id := "?"
		if m.InstanceID != nil {
			id = *m.InstanceID
		}
		for _, p := range m.Assignment[topic] {
			owners[p] = id
		}
	}
	return owners, info.Epoch, info.State
}

// inputCommitted reports whether group has committed offsets at the end
// of every partition of topic: what it processed is then in its stores.
func inputCommitted(c *cluster, group, topic string) func() (bool, string) {
	return func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ends, err := c.adm.ListEndOffsets(ctx, topic)
		if err != nil {
			return false, err.Error()
		}
		committed, err := c.adm.FetchOffsets(ctx, group)
		if err != nil {
			return false, err.Error()
		}
		ok, why := true, ""
		ends.Each(func(e kadm.ListedOffset) {
			o, found := committed.Lookup(topic, e.Partition)
			if !found || o.At < e.Offset {
				ok, why = false, fmt.Sprintf("partition %d: committed %d, end %d", e.Partition, o.At, e.Offset)
			}
		})
		return ok, why
	}
}

// TestQueryTwoInstances: with the group settled and the output complete,
// every key is answered by exactly one instance, with the right count; the
// other answers ErrNotLocal naming the owner's endpoint; KeyOwner, asked
// on both, agrees with the partition's owner as the broker sees the
// group; Range and All split the table between the instances.
func TestQueryTwoInstances(t *testing.T) {
	c := newCluster(t)
	c.createTopic("in", 4)
	c.createTopic("out", 4)
	const keys = 60
	want := produceCounts(c, 0, 1200, keys)
	a := startQueryApp(t, c, "i1", "i1.test:7001", nil)
	b := startQueryApp(t, c, "i2", "i2.test:7002", nil)
	apps := []*queryApp{a, b}
	byID := map[string]*queryApp{a.id: a, b.id: b}

	eventually(t, 60*time.Second, "both running, the group stable with both members", func() (bool, string) {
		owners, _, st := groupOwners(c, "count-app", "in")
		n := map[string]int{}
		for _, id := range owners {
			n[id]++
		}
		if st != "Stable" || len(owners) != 4 || n["i1"] == 0 || n["i2"] == 0 {
			return false, fmt.Sprintf("group %s %v", st, owners)
		}
		// Each instance has received this assignment (the broker knows
		// it first) and has its tasks running.
		for _, x := range apps {
			ins, err := x.app.Instances()
			if err != nil {
				return false, fmt.Sprintf("%s: %v", x.id, err)
			}
			for _, in := range ins {
				for _, p := range in.Partitions["in"] {
					if owners[p] != in.InstanceID {
						return false, fmt.Sprintf("%s has not seen the group's assignment %v yet", x.id, owners)
					}
				}
			}
			if x.app.State() != runtime.Running {
				return false, fmt.Sprintf("%s is %v", x.id, x.app.State())
			}
		}
		return true, ""
	})
	eventually(t, 60*time.Second, "counts complete", equalCounts(c, want))
	// Keys of a task that is not open on its owner yet (a rebalance that
	// began after the wait above) answer ErrStoreNotReady, the documented
	// answer to retry.
	eventually(t, 60*time.Second, "every task open on its owner", func() (bool, string) {
		for i := range keys {
			for _, x := range apps {
				if _, _, err := x.q.Get(context.Background(), "k"+strconv.Itoa(i)); errors.Is(err, runtime.ErrStoreNotReady) {
					return false, fmt.Sprintf("%s: %v", x.id, err)
				}
			}
		}
		return true, ""
	})
	// Outputs are produced as records are processed, the stores written
	// at the commit that then commits the input offsets.
	eventually(t, 60*time.Second, "input committed", inputCommitted(c, "count-app", "in"))

	ctx := context.Background()
	check := func() error {
		owners, _, _ := groupOwners(c, "count-app", "in")
		for i := range keys {
			k := "k" + strconv.Itoa(i)
			p := partition.ForKey([]byte(k), 4)
			owner := owners[p]
			if owner == "" {
				return fmt.Errorf("partition %d of %s has no owner in the group", p, k)
			}
			local := 0
			for _, x := range apps {
				o, err := x.q.KeyOwner(k)
				if err != nil {
					return fmt.Errorf("%s: KeyOwner(%s): %w", x.id, k, err)
				}
				if o.InstanceID != owner || o.Endpoint != byID[owner].endpoint || o.Local != (x.id == owner) || o.Partition != p {
					return fmt.Errorf("%s: KeyOwner(%s) = %+v; the group has partition %d on %s", x.id, k, o, p, owner)
				}
				v, ok, err := x.q.Get(ctx, k)
				var nl *runtime.NotLocalError
				switch {
				case err == nil:
					if !ok || v != want[k] {
						return fmt.Errorf("%s: Get(%s) = %d, %v; want %d", x.id, k, v, ok, want[k])
					}
					if x.id != owner {
						return fmt.Errorf("%s answered %s locally, but the group has partition %d on %s", x.id, k, p, owner)
					}
					local++
				case errors.As(err, &nl) && errors.Is(err, runtime.ErrNotLocal):
					if nl.Owner.InstanceID != owner || nl.Owner.Endpoint != byID[owner].endpoint || x.id == owner {
						return fmt.Errorf("%s: Get(%s) names owner %+v; the group has partition %d on %s", x.id, k, nl.Owner, p, owner)
					}
				default:
					return fmt.Errorf("%s: Get(%s): %w", x.id, k, err)
				}
			}
			if local != 1 {
				return fmt.Errorf("key %s answered locally by %d instances", k, local)
			}
		}

		// All: each instance yields its own keys, sorted; together every
		// key once.
		seen := map[string]int64{}
		for _, x := range apps {
			var got []string
			for row, err := range x.q.All(ctx) {
				if err != nil {
					return fmt.Errorf("%s: All: %w", x.id, err)
				}
				if owners[partition.ForKey([]byte(row.Key), 4)] != x.id {
					return fmt.Errorf("%s: All yields %s, which it does not own", x.id, row.Key)
				}
				if _, dup := seen[row.Key]; dup || row.Timestamp <= 0 {
					return fmt.Errorf("%s: All yields %s again or without a timestamp (%d)", x.id, row.Key, row.Timestamp)
				}
				seen[row.Key] = row.Value
				got = append(got, row.Key)
			}
			if len(got) == 0 || !slices.IsSorted(got) {
				return fmt.Errorf("%s: All yields %v: want its keys, sorted", x.id, got)
			}
		}
		if !maps.Equal(seen, want) {
			return fmt.Errorf("All on both instances: %v, want %v", seen, want)
		}

		// Range [k2, k4): the keys k2, k20..k29, k3, k30..k39 split
		// between the instances.
		var inRange []string
		for _, x := range apps {
			for row, err := range x.q.Range(ctx, "k2", "k4") {
				if err != nil {
					return fmt.Errorf("%s: Range: %w", x.id, err)
				}
				inRange = append(inRange, row.Key)
			}
		}
		slices.Sort(inRange)
		var wantRange []string
		for k := range want {
			if k >= "k2" && k < "k4" {
				wantRange = append(wantRange, k)
			}
		}
		slices.Sort(wantRange)
		if !slices.Equal(inRange, wantRange) {
			return fmt.Errorf("Range(k2, k4) on both: %v, want %v", inRange, wantRange)
		}

		// Instances: both list both, with the partitions they really own.
		for _, x := range apps {
			ins, err := x.app.Instances()
			if err != nil {
				return fmt.Errorf("%s: Instances: %w", x.id, err)
			}
			if len(ins) != 2 {
				return fmt.Errorf("%s: Instances: %+v", x.id, ins)
			}
			for _, in := range ins {
				for _, p := range in.Partitions["in"] {
					if owners[p] != in.InstanceID {
						return fmt.Errorf("%s: Instances lists partition %d under %s; the group has it on %s", x.id, p, in.InstanceID, owners[p])
					}
				}
				if in.Local != (in.InstanceID == x.id) || in.Endpoint != byID[in.InstanceID].endpoint || !slices.Contains(in.Stores, "counts") {
					return fmt.Errorf("%s: Instances: %+v", x.id, in)
				}
			}
		}
		return nil
	}
	// A rebalance between the reads would mix two assignments: a check
	// that saw the group change is repeated; any other failure is final.
	for attempt := 0; ; attempt++ {
		_, gen, _ := groupOwners(c, "count-app", "in")
		err := check()
		_, genAfter, st := groupOwners(c, "count-app", "in")
		if gen == genAfter && st == "Stable" {
			if err != nil {
				t.Fatal(err)
			}
			break
		}
		if attempt == 5 {
			t.Fatalf("the group kept rebalancing during the checks (generation %d → %d, %s); last: %v", gen, genAfter, st, err)
		}
		eventually(t, 30*time.Second, "the group stable again", func() (bool, string) {
			_, _, st := groupOwners(c, "count-app", "in")
			return st == "Stable", st
		})
	}

	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.q.Get(ctx, "k0"); !errors.Is(err, runtime.ErrStoreNotReady) {
		t.Fatalf("query after Close: got %v, want ErrStoreNotReady", err)
	}
	if _, err := a.app.Instances(); !errors.Is(err, runtime.ErrStoreNotReady) {
		t.Fatalf("Instances after Close: got %v, want ErrStoreNotReady", err)
	}
}

// blockingRestores holds every store restore at its start until released.
type blockingRestores struct {
	started chan struct{}
	once    sync.Once
	release chan struct{}
}

func (r *blockingRestores) OnRestoreStart(string, string, string, int32, int64, int64) {
	r.once.Do(func() { close(r.started) })
	<-r.release
}
func (r *blockingRestores) OnBatchRestored(string, string, string, int32, int64, int64) {}
func (r *blockingRestores) OnRestoreEnd(string, string, string, int32, int64)           {}
func (r *blockingRestores) OnRestoreSuspended(string, string, string, int32, int64)     {}

// TestQueryWhileRestoring: a store that restores is not queryable (as in
// Kafka Streams) although the instance owns its keys; once restored it
// answers with the restored counts.
func TestQueryWhileRestoring(t *testing.T) {
	c := newCluster(t)
	c.createTopic("in", 2)
	c.createTopic("out", 2)
	want := produceCounts(c, 0, 300, 10)
	first := startQueryApp(t, c, "i1", "i1.test:7001", nil)
	eventually(t, 60*time.Second, "counts", equalCounts(c, want))
	eventually(t, 60*time.Second, "input committed", inputCommitted(c, "count-app", "in"))
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}

	// A new instance with an empty state directory restores the changelog.
	r := &blockingRestores{started: make(chan struct{}), release: make(chan struct{})}
	var release sync.Once
	second := startQueryApp(t, c, "i2", "i2.test:7002", r)
	// Registered after the app's stop, so it runs first: a blocked
	// restore would hold up closing the task.
	t.Cleanup(func() { release.Do(func() { close(r.release) }) })
	select {
	case <-r.started:
	case <-time.After(60 * time.Second):
		t.Fatal("no restore started within 60 s")
	}
	ctx := context.Background()
	eventually(t, 30*time.Second, "the new instance owns every key", func() (bool, string) {
		for k := range want {
			o, err := second.q.KeyOwner(k)
			if err != nil || !o.Local || o.Endpoint != "i2.test:7002" {
				return false, fmt.Sprintf("KeyOwner(%s) = %+v, %v", k, o, err)
			}
		}
		return true, ""
	})
	for k := range want {
		if _, _, err := second.q.Get(ctx, k); !errors.Is(err, runtime.ErrStoreNotReady) {
			t.Fatalf("Get(%s) while restoring: got %v, want ErrStoreNotReady", k, err)
		}
	}
	for _, err := range second.q.All(ctx) {
		if !errors.Is(err, runtime.ErrStoreNotReady) {
			t.Fatalf("All while restoring: got %v, want ErrStoreNotReady", err)
		}
	}

	release.Do(func() { close(r.release) })
	eventually(t, 60*time.Second, "restored counts answered", func() (bool, string) {
		for k, n := range want {
			v, ok, err := second.q.Get(ctx, k)
			if err != nil || !ok || v != n {
				return false, fmt.Sprintf("Get(%s) = %d, %v, %v; want %d", k, v, ok, err, n)
			}
		}
		return true, ""
	})
}

func TestQueryRejectsTablesWithoutStore(t *testing.T) {
	b := runtime.NewBuilder()
	tbl := runtime.TableOf(b, "t", runtime.String(), runtime.Int64(), runtime.Named("t"))
	filtered := tbl.Filter(func(string, int64) bool { return true })
	filtered.ToStream().To("out")
	app, err := runtime.New(b, runtime.Config{Brokers: []string{"127.0.0.1:1"}, ApplicationID: "q", InMemoryState: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := runtime.Query(app, filtered); !errors.Is(err, runtime.ErrUnknownStore) {
		t.Fatalf("Query(filtered table): got %v, want ErrUnknownStore", err)
	}
	other := runtime.NewBuilder()
	foreign := runtime.TableOf(other, "t2", runtime.String(), runtime.Int64(), runtime.Named("t2"))
	if _, err := runtime.Query(app, foreign); !errors.Is(err, runtime.ErrUnknownStore) {
		t.Fatalf("Query(table of another topology): got %v, want ErrUnknownStore", err)
	}
	if _, err := runtime.Query(app, tbl); err != nil {
		t.Fatalf("Query(materialized table): %v", err)
	}
	_, err = runtime.New(countTopology(), runtime.Config{Brokers: []string{"b:1"}, ApplicationID: "q", InMemoryState: true, ApplicationServer: "no-port"})
	if !errors.Is(err, runtime.ErrInvalidConfig) {
		t.Fatalf("ApplicationServer without port: got %v, want ErrInvalidConfig", err)
	}
}
