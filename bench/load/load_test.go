package load

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/examples/orders/orders"
	"github.com/choreo-go/choreo/internal/testbroker"
)

func TestKey(t *testing.T) {
	for i, want := range map[int]string{0: "k000000000", 123: "k000000123", 999_999_999: "k999999999", 1_234_567_890: "k1234567890"} {
		if got := string(Key(i)); got != want {
			t.Errorf("Key(%d) = %q, want %q", i, got, want)
		}
		if got := string(AppendKey([]byte("x"), i)); got != "x"+want {
			t.Errorf("AppendKey(x, %d) = %q", i, got)
		}
	}
}

func TestGenDeterministic(t *testing.T) {
	s := Spec{Topic: "t", Keys: 1000, Count: 1, Dist: Zipf}
	a, b, c := NewGen(s), NewGen(s), NewGen(Spec{Topic: "t", Keys: 1000, Count: 1, Dist: Zipf, Seed: 2})
	same := true
	for range 100 {
		ra, rb, rc := a.Next(), b.Next(), c.Next()
		if string(ra.Key) != string(rb.Key) || string(ra.Value) != string(rb.Value) {
			t.Fatal("same spec, different records")
		}
		if string(ra.Key) != string(rc.Key) || string(ra.Value) != string(rc.Value) {
			same = false
		}
		if len(ra.Value) != 100 || strings.Trim(string(ra.Value), Alphabet) != "" {
			t.Fatalf("value %q: want 100 bytes of the alphabet", ra.Value)
		}
	}
	if same {
		t.Error("another seed gave the same records")
	}
}

func TestGenDistributions(t *testing.T) {
	const keys, n = 100, 100_000
	count := func(s Spec) []int {
		g := NewGen(s)
		c := make([]int, keys)
		for range n {
			c[g.KeyIndex()]++
		}
		return c
	}
	u := count(Spec{Topic: "t", Keys: keys, Count: 1})
	for i, c := range u {
		if c < n/keys/2 || c > n/keys*2 {
			t.Errorf("uniform: key %d drawn %d times of %d", i, c, n)
		}
	}
	z := count(Spec{Topic: "t", Keys: keys, Count: 1, Dist: Zipf})
	if z[0] < 10*z[keys-1] || z[0] < n/10 {
		t.Errorf("zipf: hottest key %d, coldest %d: not skewed", z[0], z[keys-1])
	}
	seq := count(Spec{Topic: "t", Keys: keys, Count: 1, Sequential: true})
	for i, c := range seq {
		if c != n/keys {
			t.Errorf("sequential: key %d drawn %d times", i, c)
		}
	}
}

func TestSpecValidate(t *testing.T) {
	for _, s := range []Spec{
		{},
		{Topic: "t"},
		{Topic: "t", Count: -1},
		{Topic: "t", Count: 1, Dist: Zipf, ZipfS: 0.5},
	} {
		if err := s.Validate(); err == nil {
			t.Errorf("%+v accepted", s)
		}
	}
	if err := (Spec{Topic: "t", Duration: time.Second}).Validate(); err != nil {
		t.Error(err)
	}
	if d, err := ParseDist("zipf"); err != nil || d != Zipf {
		t.Errorf("ParseDist(zipf) = %v, %v", d, err)
	}
	if _, err := ParseDist("normal"); err == nil {
		t.Error("ParseDist(normal) accepted")
	}
}

func TestStampCreated(t *testing.T) {
	r := &kgo.Record{}
	now := time.Now()
	Stamp(r, now)
	got, ok := Created(r)
	if !ok || !got.Equal(time.Unix(0, now.UnixNano())) || !r.Timestamp.Equal(now) {
		t.Errorf("Created = %v %v, want %v", got, ok, now)
	}
	ts := time.UnixMilli(1_000)
	r = &kgo.Record{Timestamp: ts}
	Stamp(r, now)
	if !r.Timestamp.Equal(ts) {
		t.Error("Stamp replaced an existing timestamp")
	}
	if _, ok := Created(&kgo.Record{}); ok {
		t.Error("Created without header")
	}
}

func broker(t *testing.T) (*kgo.Client, *kadm.Client) {
	t.Helper()
	b, err := testbroker.Start(testbroker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	cl, err := kgo.NewClient(append(orders.ProducerOpts(), kgo.SeedBrokers(b.Addrs()...))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl, kadm.NewClient(cl)
}

// consume reads n records of topics from the start.
func consume(t *testing.T, ctx context.Context, cl *kgo.Client, n int, topics ...string) []*kgo.Record {
	t.Helper()
	c, err := kgo.NewClient(append(cl.Opts(), kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out []*kgo.Record
	for len(out) < n {
		fs := c.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records: %v", len(out), n, ctx.Err())
		}
		out = append(out, fs.Records()...)
	}
	return out
}

func TestProducePaced(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, adm := broker(t)
	if err := CreateTopic(ctx, adm, "paced", 3, false); err != nil {
		t.Fatal(err)
	}
	if err := CreateTopic(ctx, adm, "paced", 3, false); err != nil {
		t.Fatalf("existing topic: %v", err)
	}
	observed := 0
	const n, rate = 300, 1000.0
	st, err := Produce(ctx, cl, Spec{Topic: "paced", Keys: 50, ValueSize: 20, Count: n, Rate: rate}, func(*kgo.Record) { observed++ })
	if err != nil {
		t.Fatal(err)
	}
	if st.Records != n || observed != n || st.Bytes != n*(10+20) {
		t.Errorf("stats %+v, observed %d", st, observed)
	}
	if min := time.Duration(float64(n-1) / rate * float64(time.Second)); st.Elapsed < min {
		t.Errorf("%d records at %v/s took %v, want ≥ %v", n, rate, st.Elapsed, min)
	}
	recs := consume(t, ctx, cl, n, "paced")
	for _, r := range recs {
		if _, ok := Created(r); !ok {
			t.Fatalf("record without %s header", HeaderCreated)
		}
		if want := orders.PartitionFor(string(r.Key), 3); r.Partition != want {
			t.Fatalf("key %s on partition %d, murmur2 says %d", r.Key, r.Partition, want)
		}
	}
}

func TestProduceDuration(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, adm := broker(t)
	if err := CreateTopic(ctx, adm, "timed", 1, false); err != nil {
		t.Fatal(err)
	}
	st, err := Produce(ctx, cl, Spec{Topic: "timed", Rate: 500, Duration: 300 * time.Millisecond, NoHeader: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Records < 100 || st.Records > 200 {
		t.Errorf("%d records in 300ms at 500/s", st.Records)
	}
	if recs := consume(t, ctx, cl, int(st.Records), "timed"); len(recs[0].Headers) != 0 {
		t.Error("header despite NoHeader")
	}
}

func TestProduceOrders(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, adm := broker(t)
	if err := orders.CreateTopics(ctx, adm, 3); err != nil {
		t.Fatal(err)
	}
	o := orders.Options{Products: 20, Lines: orders.LinesFor(200), MaxEvents: 200, Customers: 10, Seed: 3, Rate: 2000}
	var last int
	st, err := ProduceOrders(ctx, cl, o, func(n int) { last = n })
	if err != nil {
		t.Fatal(err)
	}
	if st.Records != 220 || last != 200 {
		t.Errorf("stats %+v, events reported %d", st, last)
	}
	recs := consume(t, ctx, cl, 220, orders.TopicProducts, orders.TopicOrderLines)
	for _, r := range recs {
		if _, ok := Created(r); !ok {
			t.Fatal("record without creation header")
		}
		// Order events keep the generator's event time as timestamp.
		if r.Timestamp.After(time.Now().Add(time.Minute)) || r.Timestamp.Before(time.Now().Add(-time.Hour)) {
			t.Errorf("timestamp %v", r.Timestamp)
		}
	}
}
