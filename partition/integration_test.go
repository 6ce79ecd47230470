package partition

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// tracked is a group consumer whose current partitions are tracked through
// franz-go's assignment callbacks.
type tracked struct {
	cl  *kgo.Client
	bal *Balancer
	mu  sync.Mutex
	own map[string]map[int32]bool
}

func (c *tracked) owned() map[string][]int32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string][]int32{}
	for t, ps := range c.own {
		for p := range ps {
			out[t] = append(out[t], p)
		}
		slices.Sort(out[t])
	}
	return out
}

func startTracked(t *testing.T, addrs []string, name string, subs [][]string) *tracked {
	t.Helper()
	c := &tracked{own: map[string]map[int32]bool{}}
	c.bal = NewBalancer(BalancerConfig{
		Subtopologies: subs,
		UserData:      func() []byte { return []byte(name + ":8080") },
	})
	update := func(ps map[string][]int32, add bool) {
		c.mu.Lock()
		defer c.mu.Unlock()
		for topic, parts := range ps {
			if c.own[topic] == nil {
				c.own[topic] = map[int32]bool{}
			}
			for _, p := range parts {
				if add {
					c.own[topic][p] = true
				} else {
					delete(c.own[topic], p)
				}
			}
		}
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(addrs...),
		kgo.ConsumerGroup("choreo-partition-it"),
		kgo.ConsumeTopics("a", "b"),
		kgo.Balancers(c.bal),
		kgo.SessionTimeout(1500*time.Millisecond),
		kgo.HeartbeatInterval(200*time.Millisecond),
		kgo.RebalanceTimeout(3*time.Second),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) { update(ps, true) }),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) { update(ps, false) }),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) { update(ps, false) }),
	)
	if err != nil {
		t.Fatal(err)
	}
	c.cl = cl
	return c
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last state: %s", what, last)
		}
		<-tick.C
	}
}

func TestBalancerWithKfake(t *testing.T) {
	cluster, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.SeedTopics(6, "a", "b"),
		kfake.GroupMinSessionTimeout(500*time.Millisecond),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	subs := [][]string{{"a", "b"}}

	c1 := startTracked(t, cluster.ListenAddrs(), "one", subs)
	defer c1.cl.Close()
	c2 := startTracked(t, cluster.ListenAddrs(), "two", subs)
	defer c2.cl.Close()

	split := func() (bool, string) {
		o1, o2 := c1.owned(), c2.owned()
		state := fmt.Sprintf("one=%v two=%v", o1, o2)
		union := map[int32]bool{}
		for _, o := range []map[string][]int32{o1, o2} {
			if !slices.Equal(o["a"], o["b"]) { // partition p of a iff p of b
				return false, state
			}
			if len(o["a"]) != 3 { // 6 tasks over two members
				return false, state
			}
			for _, p := range o["a"] {
				if union[p] {
					return false, state
				}
				union[p] = true
			}
		}
		return len(union) == 6, state
	}
	eventually(t, 15*time.Second, "two members to split 6 tasks", split)

	// Both members received the same group-wide view, naming each owner.
	eventually(t, 5*time.Second, "assignment info", func() (bool, string) {
		i1, i2 := c1.bal.LastAssignment(), c2.bal.LastAssignment()
		if i1 == nil || i2 == nil || i1.Generation != i2.Generation || len(i1.Owners) != 6 {
			return false, fmt.Sprintf("%+v / %+v", i1, i2)
		}
		for _, c := range []struct {
			tr   *tracked
			name string
		}{{c1, "one"}, {c2, "two"}} {
			for _, p := range c.tr.owned()["a"] {
				for _, topic := range []string{"a", "b"} {
					if ud, ok := i2.OwnerOf(topic, p); !ok || string(ud) != c.name+":8080" {
						return false, fmt.Sprintf("OwnerOf(%s, %d) = %q", topic, p, ud)
					}
				}
			}
		}
		return maps.EqualFunc(i1.Owners, i2.Owners, func(x, y []byte) bool { return string(x) == string(y) }), "owners differ"
	})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c2.cl.LeaveGroupContext(ctx); err != nil {
		t.Fatalf("LeaveGroup: %v", err)
	}
	c2.cl.Close()

	eventually(t, 15*time.Second, "the survivor to own all partitions", func() (bool, string) {
		o := c1.owned()
		all := []int32{0, 1, 2, 3, 4, 5}
		return slices.Equal(o["a"], all) && slices.Equal(o["b"], all), fmt.Sprint(o)
	})
	eventually(t, 5*time.Second, "a one-member assignment info", func() (bool, string) {
		info := c1.bal.LastAssignment()
		if info == nil || len(info.Members) != 1 || len(info.Members[0].Tasks) != 6 {
			return false, fmt.Sprintf("%+v", info)
		}
		return true, ""
	})
}
