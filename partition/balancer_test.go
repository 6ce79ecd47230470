package partition

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// simMember is one group member in a broker-less simulation of the classic
// cooperative protocol, as franz-go runs it.
type simMember struct {
	id       string
	instance string
	bal      *Balancer
	topics   []string
	owned    map[string][]int32
	gen      int32
}

func newSim(id string, subs [][]string, topics ...string) *simMember {
	return &simMember{
		id:     id,
		bal:    NewBalancer(BalancerConfig{Subtopologies: subs, UserData: func() []byte { return []byte("host-" + id) }}),
		topics: slices.Sorted(slices.Values(topics)),
		owned:  map[string][]int32{},
	}
}

func (m *simMember) join() kmsg.JoinGroupResponseMember {
	jm := kmsg.NewJoinGroupResponseMember()
	jm.MemberID = m.id
	if m.instance != "" {
		jm.InstanceID = &m.instance
	}
	owned := make(map[string][]int32, len(m.owned))
	for t, ps := range m.owned {
		owned[t] = slices.Clone(ps)
	}
	jm.ProtocolMetadata = m.bal.JoinGroupMetadata(slices.Clone(m.topics), owned, m.gen)
	return jm
}

// balanceOnce runs the leader's balance over joins and returns the
// SyncGroup assignments.
func balanceOnce(t *testing.T, leader *Balancer, joins []kmsg.JoinGroupResponseMember, counts map[string]int32, gen int32) []kmsg.SyncGroupRequestGroupAssignment {
	t.Helper()
	gmb, topics, err := leader.MemberBalancer(joins)
	if err != nil {
		t.Fatalf("MemberBalancer: %v", err)
	}
	for _, j := range joins {
		var meta kmsg.ConsumerMemberMetadata
		if err := meta.ReadFrom(j.ProtocolMetadata); err != nil {
			t.Fatal(err)
		}
		for _, topic := range meta.Topics {
			if _, ok := topics[topic]; !ok {
				t.Fatalf("MemberBalancer topics %v lack %q", topics, topic)
			}
		}
	}
	gmb.(kgo.GroupMemberBalancerInfo).SetBalanceInfo(kgo.BalanceInfo{Generation: gen})
	into, err := gmb.(kgo.GroupMemberBalancerOrError).BalanceOrError(counts)
	if err != nil {
		t.Fatalf("Balance: %v", err)
	}
	return into.IntoSyncAssignment()
}

// round runs one join/sync round: the first member leads. It checks the
// cooperative safety rule (a member is only given a partition that nobody
// owned going in) and returns whether any member had to revoke something,
// in which case franz-go would rejoin at once.
func round(t *testing.T, members []*simMember, counts map[string]int32, gen int32) (revoked bool) {
	t.Helper()
	var joins []kmsg.JoinGroupResponseMember
	for _, m := range members {
		joins = append(joins, m.join())
	}
	// franz-go sorts members before balancing; shuffle to make sure we
	// do not depend on it.
	rand.Shuffle(len(joins), func(i, j int) { joins[i], joins[j] = joins[j], joins[i] })
	sync := balanceOnce(t, members[0].bal, joins, counts, gen)
	if len(sync) != len(members) {
		t.Fatalf("%d assignments for %d members", len(sync), len(members))
	}
	ownedBefore := map[string]map[int32]string{}
	for _, m := range members {
		for topic, ps := range m.owned {
			for _, p := range ps {
				if ownedBefore[topic] == nil {
					ownedBefore[topic] = map[int32]string{}
				}
				ownedBefore[topic][p] = m.id
			}
		}
	}
	byID := map[string]*simMember{}
	for _, m := range members {
		byID[m.id] = m
	}
	seen := map[string]map[int32]string{}
	for _, sa := range sync {
		m := byID[sa.MemberID]
		if m == nil {
			t.Fatalf("assignment for unknown member %q", sa.MemberID)
		}
		assigned, err := m.bal.ParseSyncAssignment(sa.MemberAssignment)
		if err != nil {
			t.Fatalf("ParseSyncAssignment: %v", err)
		}
		for topic, ps := range assigned {
			for _, p := range ps {
				if seen[topic] == nil {
					seen[topic] = map[int32]string{}
				}
				if other, dup := seen[topic][p]; dup {
					t.Fatalf("%s-%d assigned to %s and %s", topic, p, other, m.id)
				}
				seen[topic][p] = m.id
				if prev, ok := ownedBefore[topic][p]; ok && prev != m.id {
					t.Fatalf("gen %d: %s-%d given to %s while %s still owns it", gen, topic, p, m.id, prev)
				}
			}
		}
		for topic, ps := range m.owned {
			for _, p := range ps {
				if !slices.Contains(assigned[topic], p) {
					revoked = true
				}
			}
		}
		m.owned = assigned
		m.gen = gen
	}
	return revoked
}

// converge runs rounds until nobody revokes; it returns the number of rounds.
func converge(t *testing.T, members []*simMember, counts map[string]int32, gen *int32) int {
	t.Helper()
	for n := 1; n <= 4; n++ {
		*gen++
		if !round(t, members, counts, *gen) {
			return n
		}
	}
	t.Fatal("no convergence in 4 rounds")
	return 0
}

// tasksOf returns a member's tasks, failing unless all partitions of each
// task that the member can consume are assigned to it together.
func tasksOf(t *testing.T, subs [][]string, counts map[string]int32, m *simMember) []TaskID {
	t.Helper()
	tasks := TasksFor(subs, m.owned)
	for _, id := range tasks {
		for _, topic := range subs[id.Subtopology] {
			if id.Partition < counts[topic] && slices.Contains(m.topics, topic) && !slices.Contains(m.owned[topic], id.Partition) {
				t.Fatalf("%s owns task %v but not %s-%d: %v", m.id, id, topic, id.Partition, m.owned)
			}
		}
	}
	return tasks
}

func checkBalanced(t *testing.T, subs [][]string, counts map[string]int32, members []*simMember) {
	t.Helper()
	all := map[string]map[int32]bool{}
	perSub := make([][]int, len(subs))
	var totals []int
	for _, m := range members {
		tasks := tasksOf(t, subs, counts, m)
		totals = append(totals, len(tasks))
		c := make([]int, len(subs))
		for _, id := range tasks {
			c[id.Subtopology]++
		}
		for s := range subs {
			perSub[s] = append(perSub[s], c[s])
		}
		for topic, ps := range m.owned {
			for _, p := range ps {
				if all[topic] == nil {
					all[topic] = map[int32]bool{}
				}
				all[topic][p] = true
			}
		}
	}
	for topic, n := range counts {
		if len(all[topic]) != int(n) {
			t.Fatalf("topic %s: %d of %d partitions assigned", topic, len(all[topic]), n)
		}
	}
	if spread(totals) > 1 {
		t.Fatalf("task totals %v", totals)
	}
	for s := range subs {
		if spread(perSub[s]) > 1 {
			t.Fatalf("sub-topology %d task counts %v", s, perSub[s])
		}
	}
}

func spread(xs []int) int {
	if len(xs) == 0 {
		return 0
	}
	return slices.Max(xs) - slices.Min(xs)
}

func snapshot(members []*simMember, subs [][]string) map[string][]TaskID {
	out := map[string][]TaskID{}
	for _, m := range members {
		out[m.id] = TasksFor(subs, m.owned)
	}
	return out
}

var (
	twoSubs   = [][]string{{"a", "b"}, {"c"}}
	twoCounts = map[string]int32{"a": 6, "b": 6, "c": 6}
)

func TestBalanceInitial(t *testing.T) {
	for n := 1; n <= 3; n++ {
		t.Run(fmt.Sprint(n, "members"), func(t *testing.T) {
			var members []*simMember
			for i := range n {
				members = append(members, newSim(fmt.Sprintf("m%d", i), twoSubs, "a", "b", "c"))
			}
			var gen int32
			if rounds := converge(t, members, twoCounts, &gen); rounds != 1 {
				t.Fatalf("initial assignment took %d rounds", rounds)
			}
			checkBalanced(t, twoSubs, twoCounts, members)
			for _, m := range members {
				got := len(tasksOf(t, twoSubs, twoCounts, m))
				if got != 12/n {
					t.Fatalf("%s has %d tasks, want %d", m.id, got, 12/n)
				}
				for s := range twoSubs {
					c := 0
					for _, id := range TasksFor(twoSubs, m.owned) {
						if id.Subtopology == s {
							c++
						}
					}
					if c != 6/n {
						t.Fatalf("%s has %d tasks of sub-topology %d, want %d", m.id, c, s, 6/n)
					}
				}
			}
			checkInfo(t, members, twoSubs, gen)
		})
	}
}

// checkInfo checks that every member received the same AssignmentInfo and
// that it matches what each member owns.
func checkInfo(t *testing.T, members []*simMember, subs [][]string, gen int32) {
	t.Helper()
	first := members[0].bal.LastAssignment()
	if first == nil {
		t.Fatal("no assignment info")
	}
	if first.Generation != gen {
		t.Fatalf("info generation %d, want %d", first.Generation, gen)
	}
	for _, m := range members {
		info := m.bal.LastAssignment()
		if fmt.Sprint(info.Members) != fmt.Sprint(first.Members) {
			t.Fatalf("members disagree on the assignment info")
		}
		mine := TasksFor(subs, m.owned)
		var mi *MemberInfo
		for i := range info.Members {
			if info.Members[i].MemberID == m.id {
				mi = &info.Members[i]
			}
		}
		if mi == nil || !slices.Equal(mi.Tasks, mine) {
			t.Fatalf("info tasks of %s = %v, owns %v", m.id, mi, mine)
		}
		if string(mi.UserData) != "host-"+m.id {
			t.Fatalf("user data %q", mi.UserData)
		}
		for _, id := range mine {
			if ud, ok := info.Owners[id]; !ok || string(ud) != "host-"+m.id {
				t.Fatalf("Owners[%v] = %q", id, ud)
			}
			if o, ok := info.Owner(id); !ok || o.MemberID != m.id {
				t.Fatalf("Owner(%v) = %v", id, o)
			}
			for _, topic := range subs[id.Subtopology] {
				if ud, ok := info.OwnerOf(topic, id.Partition); !ok || string(ud) != "host-"+m.id {
					t.Fatalf("OwnerOf(%s, %d) = %q, %v", topic, id.Partition, ud, ok)
				}
			}
		}
	}
	if !slices.EqualFunc(first.Subtopologies, subs, slices.Equal) {
		t.Fatalf("info sub-topologies %v", first.Subtopologies)
	}
}

func TestBalanceMemberJoinsSticky(t *testing.T) {
	members := []*simMember{newSim("m0", twoSubs, "a", "b", "c"), newSim("m1", twoSubs, "a", "b", "c")}
	var gen int32
	converge(t, members, twoCounts, &gen)
	before := snapshot(members, twoSubs)

	members = append(members, newSim("m2", twoSubs, "a", "b", "c"))
	// First round: the newcomer gets nothing yet, the others only give up
	// what must move (4 tasks: 2 of each sub-topology), and keep the rest.
	gen++
	if !round(t, members, twoCounts, gen) {
		t.Fatal("no revocation in the first round after a join")
	}
	if len(members[2].owned) != 0 {
		t.Fatalf("newcomer got %v before the revocation round", members[2].owned)
	}
	var kept int
	for _, m := range members[:2] {
		now := TasksFor(twoSubs, m.owned)
		for _, id := range now {
			if !slices.Contains(before[m.id], id) {
				t.Fatalf("%s gained %v in a revocation round", m.id, id)
			}
		}
		tasksOf(t, twoSubs, twoCounts, m)
		kept += len(now)
	}
	if kept != 8 {
		t.Fatalf("old members kept %d tasks, want 8 (only 4 move)", kept)
	}
	// Second round: the newcomer gets the revoked tasks, nothing else moves.
	gen++
	if round(t, members, twoCounts, gen) {
		t.Fatal("second round revoked again")
	}
	checkBalanced(t, twoSubs, twoCounts, members)
	after := snapshot(members, twoSubs)
	for _, id := range []string{"m0", "m1"} {
		if len(after[id]) != 4 {
			t.Fatalf("%s has %v", id, after[id])
		}
		for _, task := range after[id] {
			if !slices.Contains(before[id], task) {
				t.Fatalf("%s gained %v", id, task)
			}
		}
	}
	checkInfo(t, members, twoSubs, gen)
	// Stable: another rebalance changes nothing.
	gen++
	if round(t, members, twoCounts, gen) {
		t.Fatal("a stable group revoked partitions")
	}
	if fmt.Sprint(snapshot(members, twoSubs)) != fmt.Sprint(after) {
		t.Fatal("a stable group moved tasks")
	}
}

func TestBalanceMemberLeaves(t *testing.T) {
	members := []*simMember{newSim("m0", twoSubs, "a", "b", "c"), newSim("m1", twoSubs, "a", "b", "c"), newSim("m2", twoSubs, "a", "b", "c")}
	var gen int32
	converge(t, members, twoCounts, &gen)
	before := snapshot(members, twoSubs)
	members = slices.Delete(members, 1, 2) // m1 leaves
	if rounds := converge(t, members, twoCounts, &gen); rounds != 1 {
		t.Fatalf("a leave took %d rounds; survivors should only gain", rounds)
	}
	checkBalanced(t, twoSubs, twoCounts, members)
	for _, m := range members {
		now := TasksFor(twoSubs, m.owned)
		for _, id := range before[m.id] {
			if !slices.Contains(now, id) {
				t.Fatalf("%s lost %v when m1 left", m.id, id)
			}
		}
		if len(now) != 6 {
			t.Fatalf("%s has %d tasks", m.id, len(now))
		}
	}
	// The last one standing gets everything.
	members = members[:1]
	converge(t, members, twoCounts, &gen)
	if got := len(TasksFor(twoSubs, members[0].owned)); got != 12 {
		t.Fatalf("sole member has %d tasks", got)
	}
	checkBalanced(t, twoSubs, twoCounts, members)
}

func TestBalanceColocatedUnevenCounts(t *testing.T) {
	subs := [][]string{{"a", "b", "c"}}
	counts := map[string]int32{"a": 6, "b": 3, "c": 4}
	members := []*simMember{newSim("m0", subs, "a", "b", "c"), newSim("m1", subs, "a", "b", "c"), newSim("m2", subs, "a", "b", "c")}
	var gen int32
	converge(t, members, counts, &gen)
	checkBalanced(t, subs, counts, members) // 6 tasks, 2 each, all partitions assigned
	for _, m := range members {
		for _, id := range tasksOf(t, subs, counts, m) {
			for _, topic := range subs[0] {
				has := slices.Contains(m.owned[topic], id.Partition)
				if has != (id.Partition < counts[topic]) {
					t.Fatalf("%s task %v: has %s-%d = %v", m.id, id, topic, id.Partition, has)
				}
			}
		}
	}
	info := members[0].bal.LastAssignment()
	if !slices.Equal(info.Partitions, []int32{6}) {
		t.Fatalf("info partitions %v", info.Partitions)
	}
}

func TestBalanceInterests(t *testing.T) {
	// m1 runs an older topology without sub-topology [c]; m2 one that
	// reads topic x which the leader's topology does not know.
	members := []*simMember{newSim("m0", twoSubs, "a", "b", "c"), newSim("m1", twoSubs, "a", "b"), newSim("m2", twoSubs, "a", "b", "c", "x")}
	counts := map[string]int32{"a": 6, "b": 6, "c": 6, "x": 2}
	var gen int32
	converge(t, members, counts, &gen)
	if len(members[1].owned["c"]) != 0 {
		t.Fatalf("m1 got %v of c, which it does not consume", members[1].owned["c"])
	}
	if len(members[0].owned["x"])+len(members[1].owned["x"]) != 0 || len(members[2].owned["x"]) != 2 {
		t.Fatal("x went to a member that does not consume it")
	}
	for _, m := range members {
		tasksOf(t, append(slices.Clone(twoSubs), []string{"x"}), counts, m)
	}
	// 6 tasks of [a b] over 3, 6 of [c] over m0 and m2, 2 of [x] on m2:
	// 14 tasks can still be balanced to within one.
	totals := []int{}
	for _, m := range members {
		totals = append(totals, len(TasksFor(append(slices.Clone(twoSubs), []string{"x"}), m.owned)))
	}
	if spread(totals) > 1 {
		t.Fatalf("totals %v", totals)
	}
	info := members[2].bal.LastAssignment()
	if len(info.Subtopologies) != 3 || !slices.Equal(info.Subtopologies[2], []string{"x"}) {
		t.Fatalf("info sub-topologies %v", info.Subtopologies)
	}
	if ud, ok := info.OwnerOf("x", 1); !ok || string(ud) != "host-m2" {
		t.Fatalf("OwnerOf(x, 1) = %q", ud)
	}
}

func TestBalanceConflictingClaims(t *testing.T) {
	subs := [][]string{{"a", "b"}}
	counts := map[string]int32{"a": 4, "b": 4}
	// m1 is a zombie from generation 3 still claiming task 0_0, which m0
	// owns as of generation 7.
	m0 := newSim("m0", subs, "a", "b")
	m0.owned = map[string][]int32{"a": {0, 1}, "b": {0, 1}}
	m0.gen = 7
	m1 := newSim("m1", subs, "a", "b")
	m1.owned = map[string][]int32{"a": {0, 2, 3}, "b": {0, 2, 3}}
	m1.gen = 3
	members := []*simMember{m1, m0} // the zombie leads and comes first
	gen := int32(7)
	converge(t, members, counts, &gen)
	if !slices.Equal(m0.owned["a"], []int32{0, 1}) || !slices.Equal(m1.owned["a"], []int32{2, 3}) {
		t.Fatalf("m0 %v m1 %v: the generation 7 claim should win", m0.owned, m1.owned)
	}
	checkBalanced(t, subs, counts, members)

	// Equal generations: the first member (by member ID) keeps it.
	m0.owned = map[string][]int32{"a": {0, 1}, "b": {0, 1}}
	m1.owned = map[string][]int32{"a": {0, 2, 3}, "b": {0, 2, 3}}
	m0.gen, m1.gen = 9, 9
	gen = 9
	converge(t, members, counts, &gen)
	if !slices.Contains(m0.owned["a"], 0) || !slices.Contains(m0.owned["b"], 0) {
		t.Fatalf("m0 %v m1 %v: on a tie the first member keeps the task", m0.owned, m1.owned)
	}
	checkBalanced(t, subs, counts, members)
}

func TestBalanceDeterministic(t *testing.T) {
	subs := [][]string{{"a", "b"}, {"c"}, {"d"}}
	counts := map[string]int32{"a": 7, "b": 7, "c": 5, "d": 3}
	var joins []kmsg.JoinGroupResponseMember
	var leader *Balancer
	for i := range 4 {
		m := newSim(fmt.Sprintf("member-%d", i), subs, "a", "b", "c", "d")
		if i == 1 {
			m.owned = map[string][]int32{"a": {0, 1, 2, 3}, "b": {0, 1, 2, 3}, "d": {0, 1, 2}}
			m.gen = 4
		}
		if i == 3 {
			m.instance = "static-a"
		}
		leader = m.bal
		joins = append(joins, m.join())
	}
	want := balanceOnce(t, leader, slices.Clone(joins), counts, 5)
	for range 50 {
		rand.Shuffle(len(joins), func(i, j int) { joins[i], joins[j] = joins[j], joins[i] })
		got := balanceOnce(t, leader, slices.Clone(joins), counts, 5)
		if len(got) != len(want) {
			t.Fatal("different member count")
		}
		for i := range got {
			if got[i].MemberID != want[i].MemberID || !bytes.Equal(got[i].MemberAssignment, want[i].MemberAssignment) {
				t.Fatalf("assignment differs for %s", got[i].MemberID)
			}
		}
	}
	for i := 1; i < len(want); i++ {
		if want[i-1].MemberID >= want[i].MemberID {
			t.Fatal("assignments not sorted by member")
		}
	}
}

// TestBalanceRandomized checks the invariants over many random groups and
// membership changes: co-located tasks, balance, cooperative safety (in
// round), convergence in two rounds.
func TestBalanceRandomized(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for iter := range 200 {
		nsub := 1 + rng.IntN(4)
		var subs [][]string
		counts := map[string]int32{}
		var all []string
		for s := range nsub {
			var topics []string
			n := int32(1 + rng.IntN(16))
			for k := range 1 + rng.IntN(3) {
				topic := fmt.Sprintf("t%d_%d", s, k)
				topics = append(topics, topic)
				all = append(all, topic)
				counts[topic] = n
			}
			subs = append(subs, topics)
		}
		var members []*simMember
		next := 0
		add := func() {
			members = append(members, newSim(fmt.Sprintf("m%02d", next), subs, all...))
			next++
		}
		for range 1 + rng.IntN(5) {
			add()
		}
		var gen int32
		for step := range 6 {
			rounds := converge(t, members, counts, &gen)
			if rounds > 2 {
				t.Fatalf("iter %d step %d: %d rounds", iter, step, rounds)
			}
			checkBalanced(t, subs, counts, members)
			switch {
			case len(members) > 1 && rng.IntN(2) == 0:
				i := rng.IntN(len(members))
				members = slices.Delete(members, i, i+1)
			default:
				add()
			}
		}
	}
}

func TestBalanceMinimalMovesOnJoin(t *testing.T) {
	// With everything balanced, a join moves exactly the tasks the
	// newcomer needs: no task moves between old members.
	rng := rand.New(rand.NewPCG(3, 5))
	for iter := range 50 {
		subs := [][]string{{"a", "b"}, {"c"}}
		n := int32(2 + rng.IntN(20))
		counts := map[string]int32{"a": n, "b": n, "c": int32(1 + rng.IntN(20))}
		var members []*simMember
		for i := range 1 + rng.IntN(4) {
			members = append(members, newSim(fmt.Sprintf("m%d", i), subs, "a", "b", "c"))
		}
		var gen int32
		converge(t, members, counts, &gen)
		before := snapshot(members, subs)
		members = append(members, newSim("new", subs, "a", "b", "c"))
		converge(t, members, counts, &gen)
		checkBalanced(t, subs, counts, members)
		after := snapshot(members, subs)
		for id, tasks := range after {
			if id == "new" {
				continue
			}
			for _, task := range tasks {
				if !slices.Contains(before[id], task) {
					t.Fatalf("iter %d: %s gained %v on a join", iter, id, task)
				}
			}
		}
		total := 0
		for _, c := range []int32{n, counts["c"]} {
			total += int(c)
		}
		if got, want := len(after["new"]), total/len(members); got != want && got != want+1 {
			t.Fatalf("iter %d: newcomer has %d tasks, want about %d", iter, got, want)
		}
	}
}

func TestJoinGroupMetadataEncoding(t *testing.T) {
	b := NewBalancer(BalancerConfig{UserData: func() []byte { return []byte("10.0.0.1:8080") }})
	if b.ProtocolName() != DefaultProtocolName || !b.IsCooperative() {
		t.Fatal("defaults")
	}
	if NewBalancer(BalancerConfig{ProtocolName: "x"}).ProtocolName() != "x" {
		t.Fatal("protocol name")
	}
	raw := b.JoinGroupMetadata([]string{"a", "b"}, map[string][]int32{"b": {3, 1}, "a": {2}}, 42)
	var meta kmsg.ConsumerMemberMetadata
	if err := meta.ReadFrom(raw); err != nil {
		t.Fatal(err)
	}
	if meta.Version != 3 || meta.Generation != 42 || !slices.Equal(meta.Topics, []string{"a", "b"}) {
		t.Fatalf("meta %+v", meta)
	}
	if len(meta.OwnedPartitions) != 2 || meta.OwnedPartitions[0].Topic != "a" || !slices.Equal(meta.OwnedPartitions[1].Partitions, []int32{1, 3}) {
		t.Fatalf("owned %+v", meta.OwnedPartitions)
	}
	if got := decodeMemberData(meta.UserData); string(got) != "10.0.0.1:8080" {
		t.Fatalf("user data %q", got)
	}
	// Deterministic: the coordinator compares metadata to decide on a rebalance.
	if again := b.JoinGroupMetadata([]string{"a", "b"}, map[string][]int32{"a": {2}, "b": {1, 3}}, 42); !bytes.Equal(raw, again) {
		t.Fatal("metadata not deterministic")
	}
	for _, bad := range [][]byte{nil, {}, {2, 1, 'x'}, {1}, {1, 5, 'x'}, {1, 0}} {
		if got := decodeMemberData(bad); got != nil {
			t.Fatalf("decodeMemberData(%v) = %q", bad, got)
		}
	}
}

func TestAssignmentInfoRoundTripAndCorruption(t *testing.T) {
	members := []memberMeta{{id: "m-1", instance: "pod-0", userData: []byte("h0:1")}, {id: "m-2"}}
	subs := [][]string{{"a", "b"}, {"c"}}
	raw := encodeInfo(-3, subs, []int32{3, 2}, members, []int{0, 1, -1, 1, 0})
	info, err := DecodeAssignmentInfo(raw)
	if err != nil {
		t.Fatal(err)
	}
	if info.Generation != -3 || !slices.Equal(info.Partitions, []int32{3, 2}) || len(info.Members) != 2 {
		t.Fatalf("info %+v", info)
	}
	if m := info.Members[0]; m.MemberID != "m-1" || m.InstanceID != "pod-0" || string(m.UserData) != "h0:1" || !slices.Equal(m.Tasks, []TaskID{{0, 0}, {1, 1}}) {
		t.Fatalf("member 0 %+v", m)
	}
	if m := info.Members[1]; m.InstanceID != "" || m.UserData != nil || !slices.Equal(m.Tasks, []TaskID{{0, 1}, {1, 0}}) {
		t.Fatalf("member 1 %+v", m)
	}
	if _, ok := info.Owners[TaskID{0, 2}]; ok {
		t.Fatal("unowned task has an owner")
	}
	if len(info.Owners) != 4 {
		t.Fatalf("owners %v", info.Owners)
	}
	if ud, ok := info.OwnerOf("b", 0); !ok || string(ud) != "h0:1" {
		t.Fatalf("OwnerOf(b, 0) = %q %v", ud, ok)
	}
	for _, q := range []struct {
		topic string
		p     int32
	}{{"b", 3}, {"zz", 0}, {"a", -1}} {
		if _, ok := info.OwnerOf(q.topic, q.p); ok {
			t.Fatalf("OwnerOf(%s, %d) found an owner", q.topic, q.p)
		}
	}
	// Wrapped in a ConsumerMemberAssignment.
	var ka kmsg.ConsumerMemberAssignment
	ka.UserData = raw
	if info2, err := DecodeAssignmentInfo(ka.AppendTo(nil)); err != nil || fmt.Sprint(info2) != fmt.Sprint(info) {
		t.Fatalf("wrapped decode: %v", err)
	}
	// Every truncation fails cleanly, as do random corruptions.
	for i := range len(raw) {
		if _, err := decodeInfo(raw[:i]); err == nil {
			t.Fatalf("truncated to %d bytes decoded", i)
		}
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for range 5000 {
		bad := slices.Clone(raw)
		bad[rng.IntN(len(bad))] = byte(rng.Uint32())
		_, _ = decodeInfo(bad) // must not panic
	}
	if _, err := DecodeAssignmentInfo([]byte{9}); err == nil {
		t.Fatal("unknown version decoded")
	}
}

func TestParseSyncAssignmentEmptyAndCallback(t *testing.T) {
	var got []*AssignmentInfo
	b := NewBalancer(BalancerConfig{OnAssignment: func(i *AssignmentInfo) { got = append(got, i) }})
	m, err := b.ParseSyncAssignment(nil)
	if err != nil || len(m) != 0 || b.LastAssignment() != nil {
		t.Fatalf("empty assignment: %v %v", m, err)
	}
	if _, err := b.ParseSyncAssignment([]byte{0, 0, 0}); err == nil {
		t.Fatal("garbage parsed")
	}
	var ka kmsg.ConsumerMemberAssignment
	at := kmsg.NewConsumerMemberAssignmentTopic()
	at.Topic, at.Partitions = "a", []int32{1}
	ka.Topics = append(ka.Topics, at)
	ka.UserData = encodeInfo(1, [][]string{{"a"}}, []int32{2}, []memberMeta{{id: "x"}}, []int{-1, 0})
	m, err = b.ParseSyncAssignment(ka.AppendTo(nil))
	if err != nil || !maps.EqualFunc(m, map[string][]int32{"a": {1}}, slices.Equal) {
		t.Fatalf("parse: %v %v", m, err)
	}
	if len(got) != 1 || got[0] != b.LastAssignment() || !slices.Equal(got[0].Members[0].Tasks, []TaskID{{0, 1}}) {
		t.Fatalf("callback %v", got)
	}
}

func TestEffectiveSubsDuplicateTopic(t *testing.T) {
	b := NewBalancer(BalancerConfig{Subtopologies: [][]string{{"a", "b"}, {"b", "c"}}})
	if fmt.Sprint(b.subs) != "[[a b] [c]]" {
		t.Fatalf("subs %v", b.subs)
	}
	subs := effectiveSubs(b.subs, map[string]int32{"z": 1, "a": 1, "y": 2})
	if fmt.Sprint(subs) != "[[a b] [c] [y] [z]]" {
		t.Fatalf("effective %v", subs)
	}
}

// TestBalanceRandomizedInterests mixes members with different topic
// interests: every partition of a consumed topic is assigned, only to a
// member that consumes it, tasks stay co-located and the cooperative rules
// hold.
func TestBalanceRandomizedInterests(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 17))
	subs := [][]string{{"a", "b"}, {"c"}, {"d", "e"}}
	counts := map[string]int32{"a": 8, "b": 8, "c": 5, "d": 4, "e": 4, "x": 3}
	all := []string{"a", "b", "c", "d", "e", "x"}
	for iter := range 100 {
		var members []*simMember
		next := 0
		add := func() {
			var topics []string
			for _, topic := range all {
				if rng.IntN(4) != 0 {
					topics = append(topics, topic)
				}
			}
			members = append(members, newSim(fmt.Sprintf("m%02d", next), subs, topics...))
			next++
		}
		for range 1 + rng.IntN(4) {
			add()
		}
		var gen int32
		for step := range 5 {
			converge(t, members, counts, &gen)
			consumed := map[string]bool{}
			assigned := map[string]int{}
			for _, m := range members {
				for _, topic := range m.topics {
					consumed[topic] = true
				}
				for topic, ps := range m.owned {
					if !slices.Contains(m.topics, topic) {
						t.Fatalf("iter %d step %d: %s got %s it does not consume", iter, step, m.id, topic)
					}
					assigned[topic] += len(ps)
				}
				tasksOf(t, append(slices.Clone(subs), []string{"x"}), counts, m)
			}
			// A task goes to one member whole; when no member consumes all
			// topics of its sub-topology, the partitions its owner does
			// not consume wait. Otherwise everything consumed is assigned.
			full := map[string]bool{"x": true}
			for _, sub := range subs {
				for _, m := range members {
					if !slices.ContainsFunc(sub, func(topic string) bool { return !slices.Contains(m.topics, topic) }) {
						for _, topic := range sub {
							full[topic] = true
						}
					}
				}
			}
			for topic := range consumed {
				if full[topic] && assigned[topic] != int(counts[topic]) {
					t.Fatalf("iter %d step %d: %d of %d partitions of %s assigned", iter, step, assigned[topic], counts[topic], topic)
				}
			}
			if len(members) > 1 && rng.IntN(2) == 0 {
				i := rng.IntN(len(members))
				members = slices.Delete(members, i, i+1)
			} else {
				add()
			}
		}
	}
}

func BenchmarkBalance(b *testing.B) {
	var subs [][]string
	counts := map[string]int32{}
	var all []string
	for s := range 10 {
		topics := []string{fmt.Sprintf("in-%d", s), fmt.Sprintf("table-%d", s)}
		for _, topic := range topics {
			counts[topic] = 64
			all = append(all, topic)
		}
		subs = append(subs, topics)
	}
	var joins []kmsg.JoinGroupResponseMember
	var leader *Balancer
	for i := range 50 {
		m := newSim(fmt.Sprintf("member-%03d", i), subs, all...)
		if i < 49 { // 49 members own everything, one joins
			for s := range subs {
				for p := int32(i % 49); p < 64; p += 49 {
					for _, topic := range subs[s] {
						m.owned[topic] = append(m.owned[topic], p)
					}
				}
			}
			m.gen = 3
		}
		leader = m.bal
		joins = append(joins, m.join())
	}
	b.ReportAllocs()
	for b.Loop() {
		gmb, _, err := leader.MemberBalancer(slices.Clone(joins))
		if err != nil {
			b.Fatal(err)
		}
		into, err := gmb.(kgo.GroupMemberBalancerOrError).BalanceOrError(counts)
		if err != nil {
			b.Fatal(err)
		}
		_ = into.IntoSyncAssignment()
	}
}
