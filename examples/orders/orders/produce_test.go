package orders

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/choreo-go/choreo/internal/testbroker"
)

// TestPartitionForMatchesKgo: kgo's default partitioner and the explicit
// one of ProducerOpts place keys where PartitionFor says.
func TestPartitionForMatchesKgo(t *testing.T) {
	sticky := kgo.StickyKeyPartitioner(nil).ForTopic("t")
	def := kgo.UniformBytesPartitioner(64<<10, true, true, nil).ForTopic("t")
	for i := range 5000 {
		key := OrderID(i)
		r := &kgo.Record{Key: []byte(key)}
		for _, n := range []int{1, 6, 7, 12} {
			want := int(PartitionFor(key, int32(n)))
			if got := sticky.Partition(r, n); got != want {
				t.Fatalf("sticky %s/%d: %d, want %d", key, n, got, want)
			}
			if got := def.(kgo.TopicBackupPartitioner).PartitionByBackup(r, n, nil); got != want {
				t.Fatalf("default %s/%d: %d, want %d", key, n, got, want)
			}
		}
	}
}

func startBroker(t *testing.T) (*testbroker.Broker, *kgo.Client) {
	t.Helper()
	b, err := testbroker.Start(testbroker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	cl, err := kgo.NewClient(append(ProducerOpts(), kgo.SeedBrokers(b.Addrs()...))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return b, cl
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestProduceReadInputsRoundtrip produces a small load into 6 partitions,
// reads it back and checks it against the generator: every event, the
// murmur2 placement of every order, per-line order within the partition.
func TestProduceReadInputsRoundtrip(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	_, cl := startBroker(t)
	if err := CreateTopics(ctx, kadm.NewClient(cl), 6); err != nil {
		t.Fatal(err)
	}
	if err := CreateTopics(ctx, kadm.NewClient(cl), 6); err != nil {
		t.Fatal("second CreateTopics:", err)
	}
	o := small(42)
	o.Lines = 4000
	o.PriceChanges, o.Deletes = 4, 2
	var last int
	if err := Produce(ctx, cl, o, func(n int) { last = n }); err != nil {
		t.Fatal(err)
	}
	if last != o.Events() {
		t.Fatalf("progress ended at %d, want %d", last, o.Events())
	}
	in, err := ReadInputs(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if in.Undecodable != 0 || len(in.Lines) != o.Events() || len(in.Products) != o.Products+o.PriceChanges+o.Deletes {
		t.Fatalf("read %d events, %d products, %d undecodable", len(in.Lines), len(in.Products), in.Undecodable)
	}

	// Same events as generated (Start was resolved by Produce: compare
	// everything but the timestamps, and those relative to each other).
	want := map[int64]LineEvent{}
	items, _ := Generate(o)
	for it := range items {
		if it.Topic == TopicOrderLines {
			want[it.Line.Seq] = it.Line
		}
	}
	base := in.Lines[0].Event.EventTime - want[in.Lines[0].Event.Seq].EventTime
	partOf := map[string]int32{}
	lastSeq := map[string]int64{}
	parts := map[int32]bool{}
	for _, r := range in.Lines {
		e := r.Event
		w := want[e.Seq]
		w.EventTime += base
		if e != w || r.Timestamp != e.EventTime || r.Key != e.OrderID {
			t.Fatalf("read %+v (ts %d key %s), generated %+v", e, r.Timestamp, r.Key, w)
		}
		delete(want, e.Seq)
		if p, ok := partOf[e.OrderID]; ok && p != r.Partition {
			t.Fatalf("order %s in partitions %d and %d", e.OrderID, p, r.Partition)
		}
		partOf[e.OrderID] = r.Partition
		parts[r.Partition] = true
		if p := PartitionFor(e.OrderID, 6); p != r.Partition {
			t.Fatalf("order %s in partition %d, murmur2 says %d", e.OrderID, r.Partition, p)
		}
		if e.Seq <= lastSeq[e.LineKey()] {
			t.Fatalf("line %s out of order in its partition", e.LineKey())
		}
		lastSeq[e.LineKey()] = e.Seq
	}
	if len(want) != 0 || len(parts) != 6 {
		t.Fatalf("%d events missing; %d partitions used", len(want), len(parts))
	}
	var tombstones int
	for _, r := range in.Products {
		if r.Product == nil {
			tombstones++
		} else if r.Product.ProductID != r.Key {
			t.Fatalf("product record %+v", r)
		}
		if p := PartitionFor(r.Key, 6); p != r.Partition {
			t.Fatalf("product %s in partition %d, murmur2 says %d", r.Key, r.Partition, p)
		}
	}
	if tombstones != o.Deletes {
		t.Fatalf("%d tombstones", tombstones)
	}
	m, st := Evaluate(in)
	if len(m) == 0 || st.Products != o.Products-o.Deletes || st.Events != o.Events() {
		t.Fatalf("model: %d customers, %+v", len(m), st)
	}
	t.Logf("model: %+v", st)
}

// TestProduceRate: a paced load takes about as long as its rate says.
func TestProduceRate(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	_, cl := startBroker(t)
	if err := CreateTopics(ctx, kadm.NewClient(cl), 2); err != nil {
		t.Fatal(err)
	}
	o := Options{Products: 5, Lines: 100, Customers: 5, Seed: 1, Rate: 500}
	start := time.Now()
	if err := Produce(ctx, cl, o, nil); err != nil {
		t.Fatal(err)
	}
	// 250 events at 500/s: about half a second.
	if d := time.Since(start); d < 400*time.Millisecond || d > 10*time.Second {
		t.Fatalf("paced produce took %v", d)
	}
}

// TestProduceWrongPartitioner: Produce refuses a client that does not
// partition like Java.
func TestProduceWrongPartitioner(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	b, _ := startBroker(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs()...), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := CreateTopics(ctx, kadm.NewClient(cl), 6); err != nil {
		t.Fatal(err)
	}
	if err := Produce(ctx, cl, small(1), nil); err == nil {
		t.Fatal("no error with a round-robin partitioner")
	}
}

func TestReadPortfolioTopic(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	_, cl := startBroker(t)
	if err := CreateTopics(ctx, kadm.NewClient(cl), 3); err != nil {
		t.Fatal(err)
	}
	rec := func(p *Portfolio, key string) *kgo.Record {
		r := &kgo.Record{Topic: TopicPortfolio, Key: []byte(key)}
		if p != nil {
			r.Value, _ = msgpack.Marshal(p)
		}
		return r
	}
	var rs []*kgo.Record
	for i := range 30 {
		c := fmt.Sprintf("C%04d", i%10)
		rs = append(rs, rec(&Portfolio{CustomerID: c, OpenLines: int64(i)}, c))
	}
	rs = append(rs, rec(nil, "C0003"))
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	got, err := ReadPortfolioTopic(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 9 || got["C0007"].OpenLines != 27 {
		t.Fatalf("%+v", got)
	}
	if _, ok := got["C0003"]; ok {
		t.Fatal("tombstone ignored")
	}
}
