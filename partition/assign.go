package partition

import (
	"cmp"
	"slices"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// memberMeta is what the leader knows of one member when balancing.
type memberMeta struct {
	id         string
	instance   string
	static     bool
	join       *kmsg.JoinGroupResponseMember
	topics     map[string]bool    // topic interests
	owned      map[string][]int32 // OwnedPartitions
	generation int32
	userData   []byte
}

// sortMembers orders members as franz-go does: static members first by
// instance ID, then by member ID.
func sortMembers(ms []memberMeta) {
	slices.SortStableFunc(ms, func(a, b memberMeta) int {
		if a.static != b.static {
			if a.static {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(a.instance, b.instance); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
}

// assignResult is the leader's task plan.
type assignResult struct {
	subs   [][]string // effective sub-topologies
	nparts []int32    // tasks per sub-topology
	owner  []int      // per task (sub-topology major), member index or -1
	tasks  [][]TaskID // per member, sorted
}

// effectiveSubs returns the configured sub-topologies followed by one
// single-topic sub-topology per partitioned topic that none lists, sorted by
// name, so that no consumed topic is left unassigned (e.g. while the leader
// runs an older topology than other members).
func effectiveSubs(configured [][]string, counts map[string]int32) [][]string {
	covered := make(map[string]bool)
	for _, topics := range configured {
		for _, t := range topics {
			covered[t] = true
		}
	}
	var extra []string
	for t := range counts {
		if !covered[t] {
			extra = append(extra, t)
		}
	}
	slices.Sort(extra)
	subs := slices.Clone(configured)
	for _, t := range extra {
		subs = append(subs, []string{t})
	}
	return subs
}

// assign computes which member runs each task. It is deterministic for a
// given sorted member list, partition counts and hint. The steps:
//
//  1. A member is eligible for a sub-topology if it consumes as many of the
//     sub-topology's (partitioned) topics as the most interested member, at
//     least one; normally that is all of them.
//
//  2. Each partition claimed by several members (OwnedPartitions) belongs to
//     the claim with the highest generation, else the first member's. A
//     task stays with the eligible member holding most of its partitions
//     (then the higher generation, then member order).
//
//  3. An unowned task goes to the eligible member hint names (the owner the
//     previous plan chose, so that tasks withheld for a cooperative
//     revocation land where they were planned), else to the eligible member
//     with the fewest tasks of that sub-topology, then the fewest overall.
//
//  4. A local search lowers the potential (Σ total², Σ_s Σ cnt_s²),
//     compared lexicographically, with three kinds of move between members
//     eligible for the sub-topologies involved: a task from a member with
//     at least two more tasks than the other; a task of a sub-topology in
//     which the giver has two more than a taker with one task fewer overall;
//     and a swap of tasks of two sub-topologies. Every move lowers the
//     potential, so the search ends, and it makes no move on a state it
//     produced. When every member can run every sub-topology the result has
//     task totals, and each sub-topology's task counts, within one of each
//     other; otherwise it is as even as eligibility allows.
//
//  5. With the task counts of every member settled, each member keeps as
//     many of its previously owned tasks as its counts allow (the fewest
//     moves for these counts); other tasks stay where steps 3 and 4 put
//     them if that member has room.
func assign(configured [][]string, counts map[string]int32, members []memberMeta, hint func(sub []string, partition int32) string) assignResult {
	subs := effectiveSubs(configured, counts)
	S, M := len(subs), len(members)
	res := assignResult{subs: subs, nparts: make([]int32, S), tasks: make([][]TaskID, M)}
	base := make([]int, S+1)
	for s, topics := range subs {
		for _, t := range topics {
			res.nparts[s] = max(res.nparts[s], counts[t])
		}
		base[s+1] = base[s] + int(res.nparts[s])
	}
	res.owner = make([]int, base[S])
	prev := make([]int, base[S])

	// 1. eligibility
	elig := make([][]int, S)
	isElig := make([][]bool, S)
	for s, topics := range subs {
		isElig[s] = make([]bool, M)
		best := 0
		cover := make([]int, M)
		for m := range members {
			for _, t := range topics {
				if counts[t] > 0 && members[m].topics[t] {
					cover[m]++
				}
			}
			best = max(best, cover[m])
		}
		if best == 0 {
			continue
		}
		for m := range members {
			if cover[m] == best {
				elig[s] = append(elig[s], m)
				isElig[s][m] = true
			}
		}
	}

	// 2. stickiness: resolve claims, then task owners
	type claim struct {
		m   int
		gen int32
	}
	claims := make(map[string]map[int32]claim)
	for m := range members {
		mm := &members[m]
		for t, parts := range mm.owned {
			if counts[t] <= 0 {
				continue
			}
			ct := claims[t]
			if ct == nil {
				ct = make(map[int32]claim)
				claims[t] = ct
			}
			for _, p := range parts {
				if c, ok := ct[p]; !ok || mm.generation > c.gen {
					ct[p] = claim{m, mm.generation}
				}
			}
		}
	}
	cnt := make([][]int, M)
	for m := range cnt {
		cnt[m] = make([]int, S)
	}
	total := make([]int, M)
	tally := make([]int, M)
	for s, topics := range subs {
		for p := int32(0); p < res.nparts[s]; p++ {
			clear(tally)
			for _, t := range topics {
				if c, ok := claims[t][p]; ok && isElig[s][c.m] {
					tally[c.m]++
				}
			}
			o := -1
			for m := range members {
				if tally[m] == 0 {
					continue
				}
				if o < 0 || tally[m] > tally[o] || tally[m] == tally[o] && members[m].generation > members[o].generation {
					o = m
				}
			}
			i := base[s] + int(p)
			res.owner[i], prev[i] = o, o
			if o >= 0 {
				cnt[o][s]++
				total[o]++
			}
		}
	}

	move := func(s int, from, to int) {
		pick, pickScore := -1, 3
		for i := base[s+1] - 1; i >= base[s]; i-- {
			if res.owner[i] != from {
				continue
			}
			score := 2
			switch prev[i] {
			case to:
				score = 0
			case from:
			default:
				score = 1
			}
			if score < pickScore {
				pick, pickScore = i, score
			}
		}
		res.owner[pick] = to
		cnt[from][s]--
		total[from]--
		cnt[to][s]++
		total[to]++
	}

	// 3. unowned tasks
	index := make(map[string]int, M)
	for m := range members {
		index[members[m].id] = m
	}
	for s := range subs {
		if len(elig[s]) == 0 {
			continue
		}
		for i := base[s]; i < base[s+1]; i++ {
			if res.owner[i] >= 0 {
				continue
			}
			best := -1
			if hint != nil {
				if m, ok := index[hint(subs[s], int32(i-base[s]))]; ok && isElig[s][m] {
					best = m
				}
			}
			if best < 0 {
				for _, m := range elig[s] {
					if best < 0 || cnt[m][s] < cnt[best][s] || cnt[m][s] == cnt[best][s] && total[m] < total[best] {
						best = m
					}
				}
			}
			res.owner[i] = best
			cnt[best][s]++
			total[best]++
		}
	}

	// 4. local search
	order := make([]int, M)
	both := func(s, a, b int) bool { return isElig[s][a] && isElig[s][b] }
	// A task from a to b where total[a] >= total[b]+2: lowers Σ total².
	primary := func() (s, a, b int) {
		for m := range order {
			order[m] = m
		}
		slices.SortStableFunc(order, func(x, y int) int { return cmp.Compare(total[y], total[x]) })
		for i, a := range order {
			for j := len(order) - 1; j > i; j-- {
				b := order[j]
				if total[a]-total[b] < 2 {
					break
				}
				bestS, bestD := -1, 0
				for s := range subs {
					if both(s, a, b) && cnt[a][s] > 0 {
						if d := cnt[a][s] - cnt[b][s]; bestS < 0 || d > bestD {
							bestS, bestD = s, d
						}
					}
				}
				if bestS >= 0 {
					return bestS, a, b
				}
			}
		}
		return -1, -1, -1
	}
	// A task of s from a to b where total[a] == total[b]+1 and
	// cnt[a][s] >= cnt[b][s]+2: totals swap values, Σ cnt² drops.
	secondary := func() (s, a, b int) {
		bestS, bestA, bestB, bestD := -1, -1, -1, 1
		for a := range members {
			for b := range members {
				if total[a] != total[b]+1 {
					continue
				}
				for s := range subs {
					if d := cnt[a][s] - cnt[b][s]; d > bestD && both(s, a, b) {
						bestS, bestA, bestB, bestD = s, a, b, d
					}
				}
			}
		}
		return bestS, bestA, bestB
	}
	// A task of s from a to b and one of s2 from b to a: totals stay, Σ cnt²
	// drops when (cnt[a][s]-cnt[b][s]) + (cnt[b][s2]-cnt[a][s2]) >= 3.
	swap := func() (s, s2, a, b int) {
		bestS, bestS2, bestA, bestB, bestD := -1, -1, -1, -1, 2
		for a := range members {
			for b := range members {
				if a == b {
					continue
				}
				s, d := -1, 0
				s2, d2 := -1, 0
				for x := range subs {
					if !both(x, a, b) {
						continue
					}
					if dx := cnt[a][x] - cnt[b][x]; dx > d {
						s, d = x, dx
					}
					if dx := cnt[b][x] - cnt[a][x]; dx > d2 {
						s2, d2 = x, dx
					}
				}
				if s >= 0 && s2 >= 0 && d+d2 > bestD {
					bestS, bestS2, bestA, bestB, bestD = s, s2, a, b, d+d2
				}
			}
		}
		return bestS, bestS2, bestA, bestB
	}
	for {
		if s, a, b := primary(); s >= 0 {
			move(s, a, b)
			continue
		}
		if s, a, b := secondary(); s >= 0 {
			move(s, a, b)
			continue
		}
		if s, s2, a, b := swap(); s >= 0 {
			move(s, a, b)
			move(s2, b, a)
			continue
		}
		break
	}

	// 5. The counts are final; choose which tasks realize them so that each
	// member keeps as many of its own tasks as its counts allow (the least
	// movement for these counts). Remaining tasks stay where steps 3 and 4
	// put them when that member still has room, else go to the first
	// member with room.
	kept := make([]int, M)
	for s := range subs {
		clear(kept)
		next := make([]int, base[s+1]-base[s])
		for i := range next {
			next[i] = -1
		}
		for pass := range 2 {
			for i := base[s]; i < base[s+1]; i++ {
				m := prev[i]
				if m < 0 || next[i-base[s]] >= 0 || (pass == 0) != (res.owner[i] == m) {
					continue
				}
				if kept[m] < cnt[m][s] {
					next[i-base[s]] = m
					kept[m]++
				}
			}
		}
		for i := base[s]; i < base[s+1]; i++ {
			if m := res.owner[i]; next[i-base[s]] < 0 && m >= 0 && kept[m] < cnt[m][s] {
				next[i-base[s]] = m
				kept[m]++
			}
		}
		m := 0
		for i := base[s]; i < base[s+1]; i++ {
			if next[i-base[s]] >= 0 || res.owner[i] < 0 {
				continue
			}
			for kept[m] >= cnt[m][s] {
				m++
			}
			next[i-base[s]] = m
			kept[m]++
		}
		for i := range next {
			res.owner[base[s]+i] = next[i]
		}
	}

	for s := range subs {
		for p := int32(0); p < res.nparts[s]; p++ {
			if o := res.owner[base[s]+int(p)]; o >= 0 {
				res.tasks[o] = append(res.tasks[o], TaskID{Subtopology: s, Partition: p})
			}
		}
	}
	return res
}
