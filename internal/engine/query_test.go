package engine

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/choreo-go/choreo/partition"
	"github.com/choreo-go/choreo/state"
)

func TestEndpointCodec(t *testing.T) {
	for _, ep := range []string{"", "10.0.0.7:8080", "[::1]:9", "orders-0.orders.svc.cluster.local:8080"} {
		if got := decodeEndpoint(encodeEndpoint(ep)); got != ep {
			t.Errorf("round trip %q: got %q", ep, got)
		}
	}
	// A later version may append fields: they are ignored.
	ext := append(encodeEndpoint("h:1"), 0x07, 'x', 'y')
	if got := decodeEndpoint(ext); got != "h:1" {
		t.Errorf("with trailing fields: got %q", got)
	}
	for name, b := range map[string][]byte{
		"nil":             nil,
		"unknown version": append([]byte{9}, encodeEndpoint("h:1")[1:]...),
		"truncated":       encodeEndpoint("host:8080")[:5],
		"bad length":      {endpointVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
	} {
		if got := decodeEndpoint(b); got != "" {
			t.Errorf("%s: got %q, want none", name, got)
		}
	}
}

func TestValidateEndpoint(t *testing.T) {
	for _, ok := range []string{"", "localhost:8080", "10.1.2.3:1", "[::1]:65535"} {
		if err := validateEndpoint(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"localhost", ":8080", "host:0", "host:http", "host:70000", "a:b:c"} {
		if err := validateEndpoint(bad); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%q: got %v, want ErrInvalidConfig", bad, err)
		}
	}
}

// queryEngine is an engine with two sub-topologies, as New resolves them:
// 0 reads "in" and holds store "counts", 1 reads "other" and holds "x".
func queryEngine(self string) *Engine {
	subs := []*subtopology{
		{id: 0, topics: []string{"in"}, stores: []string{"counts"}},
		{id: 1, topics: []string{"other"}, stores: []string{"x"}},
	}
	e := &Engine{subs: subs, topicSub: map[string]*subtopology{"in": subs[0], "other": subs[1]}}
	e.lc = lifecycle{state: Running, now: time.Now}
	e.cfg.InstanceID = self
	return e
}

// assignment is a group assignment of 4 tasks per sub-topology in which the
// leader numbered the sub-topologies the other way round than queryEngine:
// the lookup must go by topic, not by index. Instance "a" owns the even
// partitions of "in", "b" the odd ones.
func assignment() *partition.AssignmentInfo {
	info := &partition.AssignmentInfo{
		Generation:    3,
		Subtopologies: [][]string{{"other"}, {"in"}},
		Partitions:    []int32{4, 4},
		Members: []partition.MemberInfo{
			{MemberID: "m-a", InstanceID: "a", UserData: encodeEndpoint("a.example:8080")},
			{MemberID: "m-b", InstanceID: "b", UserData: encodeEndpoint("b.example:8080")},
		},
		Owners: map[partition.TaskID][]byte{},
	}
	for s := range 2 {
		for p := range int32(4) {
			m := &info.Members[p%2]
			tid := partition.TaskID{Subtopology: s, Partition: p}
			m.Tasks = append(m.Tasks, tid)
			info.Owners[tid] = m.UserData
		}
	}
	for i := range info.Members {
		slices.SortFunc(info.Members[i].Tasks, partition.Compare)
	}
	return info
}

func TestQueryOwnerAndGet(t *testing.T) {
	e := queryEngine("a")
	key := func(i int) []byte { return fmt.Appendf(nil, "k%d", i) }
	if _, _, err := e.StoreGet("counts", key(0)); !errors.Is(err, ErrStoreNotReady) {
		t.Fatalf("before any assignment: got %v, want ErrStoreNotReady", err)
	}
	e.query.setAssignment(assignment(), "a")
	if _, err := e.KeyOwner("nope", key(0)); !errors.Is(err, ErrUnknownStore) {
		t.Fatalf("unknown store: got %v", err)
	}

	// Instance "a" holds its even partitions of sub-topology 0 ("in").
	dbs := map[int32]state.DB{}
	for p := int32(0); p < 4; p += 2 {
		db := state.NewMemory()
		t.Cleanup(func() { _ = db.Close() })
		dbs[p] = db
		e.query.opened(partition.TaskID{Subtopology: 0, Partition: p}, db)
	}
	var ws state.WriteSet
	for i := range 40 {
		if p := partition.ForKey(key(i), 4); p%2 == 0 {
			ws = state.WriteSet{}
			ws.Put("counts", key(i), fmt.Appendf(nil, "v%d", i))
			if err := dbs[p].Apply(&ws, nil, false); err != nil {
				t.Fatal(err)
			}
		}
	}

	for i := range 40 {
		k := key(i)
		p := partition.ForKey(k, 4)
		o, err := e.KeyOwner("counts", k)
		if err != nil {
			t.Fatal(err)
		}
		wantOwner := []string{"a", "b"}[p%2]
		if o.InstanceID != wantOwner || o.Endpoint != wantOwner+".example:8080" || o.Local != (wantOwner == "a") ||
			o.Partition != p || o.Task != (partition.TaskID{Subtopology: 1, Partition: p}) {
			t.Fatalf("key %s (partition %d): owner %+v", k, p, o)
		}
		v, ok, err := e.StoreGet("counts", k)
		if wantOwner == "b" {
			var nl *NotLocalError
			if !errors.As(err, &nl) || !errors.Is(err, ErrNotLocal) || nl.Owner != o {
				t.Fatalf("key %s owned by b: got %v", k, err)
			}
			continue
		}
		// Assigned here but still restoring.
		if !errors.Is(err, ErrStoreNotReady) {
			t.Fatalf("key %s restoring: got %q %v %v", k, v, ok, err)
		}
	}

	e.query.activated(partition.TaskID{Subtopology: 0, Partition: 0})
	e.query.activated(partition.TaskID{Subtopology: 0, Partition: 2})
	for i := range 40 {
		k := key(i)
		if partition.ForKey(k, 4)%2 != 0 {
			continue
		}
		v, ok, err := e.StoreGet("counts", k)
		if err != nil || !ok || string(v) != fmt.Sprintf("v%d", i) {
			t.Fatalf("key %s: got %q %v %v", k, v, ok, err)
		}
	}
	for i := 0; ; i++ {
		// An absent key of a local task.
		if k := fmt.Appendf(nil, "absent%d", i); partition.ForKey(k, 4) == 0 {
			if _, ok, err := e.StoreGet("counts", k); err != nil || ok {
				t.Fatalf("absent key %s: ok %v err %v", k, ok, err)
			}
			break
		}
	}

	// A task not opened yet that the assignment gives to this instance.
	e.query.closed(partition.TaskID{Subtopology: 0, Partition: 2})
	for i := range 40 {
		if k := key(i); partition.ForKey(k, 4) == 2 {
			if _, _, err := e.StoreGet("counts", k); !errors.Is(err, ErrStoreNotReady) {
				t.Fatalf("key %s of an unopened local task: got %v", k, err)
			}
			break
		}
	}

	// A DB closed under the query (revocation racing the read).
	e.query.opened(partition.TaskID{Subtopology: 0, Partition: 2}, dbs[2])
	e.query.activated(partition.TaskID{Subtopology: 0, Partition: 2})
	_ = dbs[2].Close()
	for i := range 40 {
		if k := key(i); partition.ForKey(k, 4) == 2 {
			if _, _, err := e.StoreGet("counts", k); !errors.Is(err, ErrStoreNotReady) || !errors.Is(err, state.ErrClosed) {
				t.Fatalf("key %s of a closed DB: got %v", k, err)
			}
			break
		}
	}

	e.lc.set(NotRunning)
	if _, _, err := e.StoreGet("counts", key(0)); !errors.Is(err, ErrStoreNotReady) {
		t.Fatalf("stopped app: got %v", err)
	}
}

func TestQueryRangeMergesTasks(t *testing.T) {
	e := queryEngine("a")
	e.query.setAssignment(assignment(), "a")
	var dbs []state.DB
	var want []string
	for p := range int32(3) {
		db := state.NewMemory()
		t.Cleanup(func() { _ = db.Close() })
		dbs = append(dbs, db)
		var ws state.WriteSet
		for i := range 10 {
			k := fmt.Sprintf("k%02d", int(p)+3*i) // interleaved across the tasks
			ws.Put("counts", []byte(k), []byte("v"+k))
			want = append(want, k)
		}
		ws.Put("x", []byte("k00"), []byte("another store")) // not seen
		if err := db.Apply(&ws, nil, false); err != nil {
			t.Fatal(err)
		}
		e.query.opened(partition.TaskID{Subtopology: 0, Partition: p}, db)
		e.query.activated(partition.TaskID{Subtopology: 0, Partition: p})
	}
	slices.Sort(want)

	collect := func(lo, hi []byte) ([]string, error) {
		it, err := e.StoreRange("counts", lo, hi)
		if err != nil {
			return nil, err
		}
		defer it.Close()
		var got []string
		for it.Next() {
			if !bytes.Equal(it.Value(), append([]byte("v"), it.Key()...)) {
				return got, fmt.Errorf("key %s: value %s", it.Key(), it.Value())
			}
			got = append(got, string(it.Key()))
		}
		return got, it.Err()
	}
	got, err := collect(nil, nil)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("all: got %v %v, want %v", got, err, want)
	}
	got, err = collect([]byte("k05"), []byte("k12"))
	if err != nil || !slices.Equal(got, want[5:12]) {
		t.Fatalf("range: got %v %v, want %v", got, err, want[5:12])
	}

	// A task closing during the iteration ends it with ErrStoreNotReady.
	it, err := e.StoreRange("counts", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !it.Next() {
		t.Fatal(it.Err())
	}
	_ = dbs[1].Close()
	n := 1
	for it.Next() {
		n++
	}
	if err := it.Err(); !errors.Is(err, ErrStoreNotReady) || n >= len(want) {
		t.Fatalf("after a close: %d rows, err %v; want fewer than %d and ErrStoreNotReady", n, err, len(want))
	}
	_ = it.Close()

	// A restoring task makes the whole local store not ready.
	e.query.closed(partition.TaskID{Subtopology: 0, Partition: 1})
	e.query.opened(partition.TaskID{Subtopology: 0, Partition: 3}, state.NewMemory())
	if _, err := e.StoreRange("counts", nil, nil); !errors.Is(err, ErrStoreNotReady) {
		t.Fatalf("with a restoring task: got %v", err)
	}
}

func TestQueryInstances(t *testing.T) {
	e := queryEngine("b")
	if _, err := e.Instances(); !errors.Is(err, ErrStoreNotReady) {
		t.Fatalf("before any assignment: got %v", err)
	}
	e.query.setAssignment(assignment(), "b")
	ins, err := e.Instances()
	if err != nil {
		t.Fatal(err)
	}
	if len(ins) != 2 {
		t.Fatalf("got %d instances", len(ins))
	}
	a, b := ins[0], ins[1]
	if a.InstanceID != "a" || a.Local || a.Endpoint != "a.example:8080" || b.InstanceID != "b" || !b.Local || b.Endpoint != "b.example:8080" {
		t.Fatalf("instances %+v", ins)
	}
	if !slices.Equal(a.Partitions["in"], []int32{0, 2}) || !slices.Equal(b.Partitions["in"], []int32{1, 3}) ||
		!slices.Equal(b.Partitions["other"], []int32{1, 3}) || !slices.Equal(a.Stores, []string{"counts", "x"}) {
		t.Fatalf("instances %+v", ins)
	}
}

// TestAwaitingTasks: between the sync that gives this instance new tasks
// and franz-go handing them over, the app is not Running.
func TestAwaitingTasks(t *testing.T) {
	e := queryEngine("a")
	e.tasks = map[partition.TaskID]*task{}
	if e.awaitingTasks() {
		t.Fatal("awaiting tasks before any assignment")
	}
	e.query.setAssignment(assignment(), "a")
	if !e.awaitingTasks() {
		t.Fatal("not awaiting the assigned tasks")
	}
	// "a" owns partitions 0 and 2 of both sub-topologies; the leader
	// numbers them the other way round.
	for s := range 2 {
		for p := int32(0); p < 4; p += 2 {
			e.tasks[partition.TaskID{Subtopology: s, Partition: p}] = &task{}
		}
	}
	if e.awaitingTasks() {
		t.Fatal("awaiting tasks that are open")
	}
	delete(e.tasks, partition.TaskID{Subtopology: 1, Partition: 2})
	if !e.awaitingTasks() {
		t.Fatal("not awaiting task 1_2 (the leader's 0_2)")
	}
}
