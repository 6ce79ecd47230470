package bench

// Micro-benchmarks of the hot paths that are not benchmarked elsewhere
// (state has store get/put, partition has murmur2): serdes, the load
// generator, and the per-record cost of a whole App through the DSL. The
// App benchmarks run the App in this process against the standalone broker
// (a child process, so the broker's allocations are not counted), keep it
// running across the benchmark's rounds, and time only the processing of
// each round's b.N records: those are produced in a transaction while the
// timer is stopped and become visible to the App (which reads committed)
// at once when the timer starts and the transaction commits.
//
//	go test -run '^$' -bench . -benchmem ./bench/

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/bench/load"
	"github.com/choreo-go/choreo/changelog"
	"github.com/choreo-go/choreo/examples/orders/orders"
	"github.com/choreo-go/choreo/runtime"
)

func TestMain(m *testing.M) {
	code := m.Run()
	shared.close()
	os.Exit(code)
}

// sharedEnv is the broker and the running apps of the App benchmarks.
type sharedEnv struct {
	mu       sync.Mutex
	started  bool
	err      error
	dir      string
	broker   *brokerProc
	h        *harness
	fixtures map[string]*appFixture
}

var shared sharedEnv

func (s *sharedEnv) get(b *testing.B) *harness {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		s.started = true
		s.err = s.start()
	}
	if s.err != nil {
		b.Fatal(s.err)
	}
	return s.h
}

func (s *sharedEnv) start() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var err error
	if s.dir, err = os.MkdirTemp("", "choreo-microbench-"); err != nil {
		return err
	}
	t, err := buildTools(ctx, filepath.Join(s.dir, "bin"))
	if err != nil {
		return err
	}
	if s.broker, err = startBroker(ctx, t, filepath.Join(s.dir, "broker"), ""); err != nil {
		return err
	}
	cl, err := kgo.NewClient(append(orders.ProducerOpts(), kgo.SeedBrokers(s.broker.addrs...))...)
	if err != nil {
		return err
	}
	s.h = &harness{brokers: s.broker.addrs, tmp: s.dir, cl: cl, adm: kadm.NewClient(cl), logs: &tailBuffer{max: 64 << 10}}
	s.fixtures = make(map[string]*appFixture)
	return nil
}

func (s *sharedEnv) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.fixtures {
		f.close()
	}
	if s.h != nil {
		s.h.cl.Close()
	}
	if s.broker != nil {
		_ = s.broker.stop()
	}
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
}

// appFixture is an App kept running across the rounds of one benchmark,
// with a transactional producer feeding its input.
type appFixture struct {
	in   string
	m    *meter
	app  *app
	prod *kgo.Client
	gen  *load.Gen
	want int64
}

func (f *appFixture) close() {
	if f.app != nil {
		_ = f.app.close()
	}
	if f.prod != nil {
		f.prod.Close()
	}
}

// fixture returns the running App of benchmark name, starting it with the
// topology of build (reading in, writing out) on first use. preload, if
// not nil, loads other topics first and returns how many output records
// (of outputs) mark the App ready.
func fixture(b *testing.B, name string, outputs func(app string) []string,
	build func(rb *runtime.Builder, in, out string), preload func(ctx context.Context, h *harness) (int64, error)) *appFixture {
	b.StopTimer() // the testing package starts it before calling the benchmark
	h := shared.get(b)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if f := shared.fixtures[name]; f != nil {
		return f
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	in, out, appID := name+"-in", name+"-out", name+"-app"
	if err := h.createTopics(ctx, false, in, out); err != nil {
		b.Fatal(err)
	}
	var ready int64
	if preload != nil {
		var err error
		if ready, err = preload(ctx, h); err != nil {
			b.Fatal(err)
		}
	}
	outs := []string{out}
	if outputs != nil {
		outs = append(outs, outputs(appID)...)
	}
	f := &appFixture{in: in, m: newMeter([]string{in}, outs, 0), want: ready,
		gen: load.NewGen(load.Spec{Topic: in, Keys: 10_000, ValueSize: 100, Count: 1})}
	rb := runtime.NewBuilder()
	build(rb, in, out)
	var err error
	if f.app, err = h.startApp(context.Background(), rb, appID, filepath.Join(h.tmp, appID), f.m, nil); err != nil {
		b.Fatal(err)
	}
	shared.fixtures[name] = f
	if err := f.app.wait(ctx, f.app.running, "the app to run"); err != nil {
		b.Fatal(err)
	}
	if ready > 0 {
		if err := f.m.waitOutputs(ctx, ready); err != nil {
			b.Fatalf("preload not processed: %v", err)
		}
	}
	f.prod, err = kgo.NewClient(append(orders.ProducerOpts(),
		kgo.SeedBrokers(h.brokers...),
		kgo.TransactionalID(name+"-producer"),
		kgo.MaxBufferedRecords(1<<20),
	)...)
	if err != nil {
		b.Fatal(err)
	}
	// A first transaction warms up the producer and the App's fetches.
	if err := f.produce(ctx, 100); err != nil {
		b.Fatal(err)
	}
	if err := f.commit(ctx); err != nil {
		b.Fatal(err)
	}
	return f
}

// produce writes n records in a new transaction.
func (f *appFixture) produce(ctx context.Context, n int) error {
	if err := f.prod.BeginTransaction(); err != nil {
		return err
	}
	var perr firstErr
	for range n {
		f.prod.Produce(ctx, f.gen.Next(), func(_ *kgo.Record, err error) {
			if err != nil {
				perr.set(err)
			}
		})
	}
	if err := f.prod.Flush(ctx); err != nil {
		return err
	}
	f.want += int64(n)
	return perr.get()
}

// commit commits the transaction and waits for its outputs.
func (f *appFixture) commit(ctx context.Context) error {
	if err := f.prod.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return err
	}
	if err := f.m.waitOutputs(ctx, f.want); err != nil {
		return fmt.Errorf("waiting for %d outputs: %w (have %d)", f.want, err, f.m.outN.Load())
	}
	return nil
}

// round produces b.N records in a transaction with the timer stopped, then
// times their commit and processing up to the wanted outputs.
func (f *appFixture) round(b *testing.B) {
	b.StopTimer()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := f.produce(ctx, b.N); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.StartTimer()
	start := time.Now()
	if err := f.commit(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if testing.Verbose() {
		b.Logf("%d records in %v", b.N, time.Since(start))
	}
}

// BenchmarkApp is the per-record cost of a whole App (source, operators,
// sink, store and changelog, commits) on the standalone broker: ns/op and
// allocs/op are per input record.
func BenchmarkApp(b *testing.B) {
	b.Run("stateless", func(b *testing.B) {
		// filter (keeps every record) → mapValues → to: the DSL's
		// per-record cost over a passthrough.
		f := fixture(b, "mb-stateless", nil, func(rb *runtime.Builder, in, out string) {
			s := runtime.StreamOf(rb, in, runtime.String(), runtime.Bytes(), runtime.Named("source"))
			runtime.MapValues(s.Filter(func(_ string, v []byte) bool { return len(v) > 0 }, runtime.Named("filter")),
				func(_ string, v []byte) []byte { return v }, runtime.Named("map")).To(out, runtime.Named("sink"))
		}, nil)
		f.round(b)
	})
	b.Run("count", func(b *testing.B) {
		f := fixture(b, "mb-count", nil, W2Topology, nil)
		f.round(b)
	})
	b.Run("join", func(b *testing.B) {
		const keys = 10_000
		var table string
		f := fixture(b, "mb-join", func(app string) []string { return []string{changelog.TopicName(app, "table")} },
			func(rb *runtime.Builder, in, out string) { W3Topology(rb, in, table, out) },
			func(ctx context.Context, h *harness) (int64, error) {
				table = "mb-join-table"
				if err := h.createTopics(ctx, true, table); err != nil {
					return 0, err
				}
				_, err := load.Produce(ctx, h.cl, load.Spec{Topic: table, Keys: keys, ValueSize: 100, Count: keys, Sequential: true}, nil)
				return keys, err
			})
		f.round(b)
	})
}

// BenchmarkSerde is the cost of the runtime's serdes on the scenario's
// types and the benchmark payloads.
func BenchmarkSerde(b *testing.B) {
	line := orders.LineEvent{OrderID: "O00001234", LineNo: 3, CustomerID: "C0042", ProductID: "P000042",
		Quantity: 7, Status: orders.StatusConfirmed, Seq: 123456, EventTime: 1_790_000_000_000}
	priced := orders.Price(line, orders.Product{ProductID: "P000042", Family: "truck", UnitPriceCents: 12_345_678})
	portfolio := orders.Portfolio{CustomerID: "C0042", OpenLines: 12, ConfirmedLines: 7, ShippedLines: 30,
		CancelledLines: 2, OpenValueCents: 987_654_321, LastEventTime: 1_790_000_000_000}
	value := load.NewGen(load.Spec{Topic: "-", Count: 1}).Value()
	serdeBench(b, "String", runtime.String(), "k000001234")
	serdeBench(b, "Int64", runtime.Int64(), int64(42))
	serdeBench(b, "Bytes100", runtime.Bytes(), value)
	serdeBench(b, "Msgpack/LineEvent", runtime.Msgpack[orders.LineEvent](), line)
	serdeBench(b, "Msgpack/PricedLine", runtime.Msgpack[orders.PricedLine](), priced)
	serdeBench(b, "Msgpack/Portfolio", runtime.Msgpack[orders.Portfolio](), portfolio)
	serdeBench(b, "JSON/LineEvent", runtime.JSON[orders.LineEvent](), line)
}

func serdeBench[T any](b *testing.B, name string, s runtime.Serde[T], v T) {
	data, err := s.Serialize(v)
	if err != nil {
		b.Fatal(err)
	}
	b.Run(name+"/serialize", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := s.Serialize(v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run(name+"/deserialize", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := s.Deserialize(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkLoadGen is the cost of generating one keyed record.
func BenchmarkLoadGen(b *testing.B) {
	for _, d := range []load.Dist{load.Uniform, load.Zipf} {
		b.Run(d.String(), func(b *testing.B) {
			g := load.NewGen(load.Spec{Topic: "t", Keys: 1_000_000, Dist: d, Count: 1})
			b.ReportAllocs()
			for b.Loop() {
				_ = g.Next()
			}
		})
	}
}
