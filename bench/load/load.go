// Package load generates benchmark load for a Kafka cluster: records of a
// chosen size whose keys are uniform or Zipf-distributed over N keys, at a
// chosen rate or as fast as possible, and the order events of the
// order-portfolio scenario (ORDERS.md) from its generator. Every record
// carries the header [HeaderCreated], its creation time in nanoseconds
// since the epoch, so a consumer of the outputs can measure end-to-end
// latency.
//
// The same Spec (and seed) always yields the same keys and values; only
// the creation-time header and the record timestamp follow the wall clock.
package load

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// HeaderCreated is the header holding a record's creation time: the decimal
// nanoseconds since the Unix epoch at which the generator created it.
const HeaderCreated = "choreo-created-ns"

// Alphabet is the set of bytes values are made of: printable, so outputs
// can be read with kcat, and compressible about as much as text payloads.
const Alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// Dist is a key distribution.
type Dist int

const (
	// Uniform draws every key with the same probability.
	Uniform Dist = iota
	// Zipf draws key i with a probability proportional to 1/(1+i)^s: a few
	// very hot keys.
	Zipf
)

func (d Dist) String() string {
	if d == Zipf {
		return "zipf"
	}
	return "uniform"
}

// ParseDist parses "uniform" or "zipf".
func ParseDist(s string) (Dist, error) {
	switch s {
	case "uniform", "":
		return Uniform, nil
	case "zipf":
		return Zipf, nil
	}
	return 0, fmt.Errorf("load: unknown key distribution %q (uniform, zipf)", s)
}

// DefaultZipfS is the default Zipf exponent.
const DefaultZipfS = 1.1

// Spec describes a load of keyed records.
type Spec struct {
	// Topic receives the records.
	Topic string
	// Keys is the number of distinct keys (default 10,000); see Key.
	Keys int
	// Dist is the key distribution.
	Dist Dist
	// ZipfS is the Zipf exponent (> 1; default DefaultZipfS).
	ZipfS float64
	// ValueSize is the value size in bytes (default 100).
	ValueSize int
	// Count is the number of records; 0 with a Duration produces until
	// the duration ends.
	Count int64
	// Rate paces the records per second; 0 produces as fast as possible.
	Rate float64
	// Duration stops the load after this long (0: no limit).
	Duration time.Duration
	// Seed makes the load reproducible.
	Seed uint64
	// NoHeader leaves out the creation-time header.
	NoHeader bool
	// Sequential makes record i use key i mod Keys instead of a random
	// key, so the first Keys records hold every key once (a table load).
	Sequential bool
}

func (s Spec) withDefaults() Spec {
	if s.Keys <= 0 {
		s.Keys = 10_000
	}
	if s.ValueSize <= 0 {
		s.ValueSize = 100
	}
	if s.ZipfS == 0 {
		s.ZipfS = DefaultZipfS
	}
	return s
}

// Validate reports whether the spec describes a load.
func (s Spec) Validate() error {
	s = s.withDefaults()
	switch {
	case s.Topic == "":
		return errors.New("load: no topic")
	case s.Count < 0 || s.Rate < 0 || s.Duration < 0:
		return errors.New("load: negative count, rate or duration")
	case s.Count == 0 && s.Duration == 0:
		return errors.New("load: neither a count nor a duration")
	case s.Dist == Zipf && !(s.ZipfS > 1):
		return fmt.Errorf("load: Zipf exponent %v must be > 1", s.ZipfS)
	}
	return nil
}

// Key returns the i-th key of every load: "k" and i in 9 digits, so that
// loads and tables over the same key count share their keys.
func Key(i int) []byte { return AppendKey(make([]byte, 0, 10), i) }

// AppendKey appends Key(i) to b.
func AppendKey(b []byte, i int) []byte {
	b = append(b, 'k')
	var digits [20]byte
	d := strconv.AppendInt(digits[:0], int64(i), 10)
	for range 9 - len(d) {
		b = append(b, '0')
	}
	return append(b, d...)
}

// Gen yields the keys and values of a Spec deterministically.
type Gen struct {
	s    Spec
	r    *rand.Rand
	zipf *rand.Zipf
	pool []byte
	n    int64
}

// NewGen returns the generator of s.
func NewGen(s Spec) *Gen {
	s = s.withDefaults()
	r := rand.New(rand.NewPCG(s.Seed, 0x6c6f61642d67656e))
	g := &Gen{s: s, r: r, pool: make([]byte, 64<<10+s.ValueSize)}
	for i := range g.pool {
		g.pool[i] = Alphabet[r.IntN(len(Alphabet))]
	}
	if s.Dist == Zipf && s.Keys > 1 {
		g.zipf = rand.NewZipf(r, s.ZipfS, 1, uint64(s.Keys-1))
	}
	return g
}

// KeyIndex draws the index of the next key.
func (g *Gen) KeyIndex() int {
	defer func() { g.n++ }()
	switch {
	case g.s.Sequential:
		return int(g.n % int64(g.s.Keys))
	case g.zipf != nil:
		return int(g.zipf.Uint64())
	default:
		return g.r.IntN(g.s.Keys)
	}
}

// Value returns a new value: ValueSize bytes of Alphabet.
func (g *Gen) Value() []byte {
	off := g.r.IntN(len(g.pool) - g.s.ValueSize + 1)
	return append(make([]byte, 0, g.s.ValueSize), g.pool[off:off+g.s.ValueSize]...)
}

// ValueView returns the next value without copying: a view of the
// generator's pool, valid until the caller is done with it (it never
// changes, but must not be modified).
func (g *Gen) ValueView() []byte {
	off := g.r.IntN(len(g.pool) - g.s.ValueSize + 1)
	return g.pool[off : off+g.s.ValueSize : off+g.s.ValueSize]
}

// Next returns the next record (topic, key, value; no header, no timestamp).
func (g *Gen) Next() *kgo.Record {
	return &kgo.Record{Topic: g.s.Topic, Key: Key(g.KeyIndex()), Value: g.Value()}
}

// Stamp sets the creation-time header of r to now, and its timestamp too
// unless it has one.
func Stamp(r *kgo.Record, now time.Time) {
	if r.Timestamp.IsZero() {
		r.Timestamp = now
	}
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: HeaderCreated, Value: strconv.AppendInt(nil, now.UnixNano(), 10)})
}

// Created returns the creation time of r from its header.
func Created(r *kgo.Record) (time.Time, bool) {
	for _, h := range r.Headers {
		if h.Key == HeaderCreated {
			ns, err := strconv.ParseInt(string(h.Value), 10, 64)
			if err != nil {
				return time.Time{}, false
			}
			return time.Unix(0, ns), true
		}
	}
	return time.Time{}, false
}

// Stats describes a produced load.
type Stats struct {
	// Records is the number of records acknowledged by the broker.
	Records int64 `json:"records"`
	// Bytes is the total size of their keys and values.
	Bytes int64 `json:"bytes"`
	// Elapsed is the time from the first record to the last acknowledgement.
	Elapsed time.Duration `json:"elapsed_ns"`
}

// Rate is the achieved records per second.
func (s Stats) Rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Records) / s.Elapsed.Seconds()
}

// Producer produces records through a client, paced at a rate, and
// records the first produce error. It is the loop behind Produce and
// ProduceOrders.
type Producer struct {
	cl     *kgo.Client
	rate   float64
	t0     time.Time
	paced  int64
	timer  *time.Timer
	header bool

	mu      sync.Mutex
	err     error
	records int64
	bytes   int64
}

// NewProducer returns a Producer through cl; rate 0 means unpaced. With
// header, every record gets the creation-time header.
func NewProducer(cl *kgo.Client, rate float64, header bool) *Producer {
	return &Producer{cl: cl, rate: rate, header: header}
}

// Pace starts the pacing clock now (records produced before are not paced).
func (p *Producer) Pace() { p.t0, p.paced = time.Now(), 0 }

// Send waits for r's turn at the rate, stamps it (header, and timestamp
// if it has none) and produces it.
func (p *Producer) Send(ctx context.Context, r *kgo.Record) error {
	if p.rate > 0 && !p.t0.IsZero() {
		due := p.t0.Add(time.Duration(float64(p.paced) / p.rate * float64(time.Second)))
		p.paced++
		if wait := time.Until(due); wait > 0 {
			if p.timer == nil {
				p.timer = time.NewTimer(wait)
			} else {
				p.timer.Reset(wait)
			}
			select {
			case <-ctx.Done():
				p.timer.Stop()
				return ctx.Err()
			case <-p.timer.C:
			}
		}
	}
	now := time.Now()
	if p.header {
		Stamp(r, now)
	} else if r.Timestamp.IsZero() {
		r.Timestamp = now
	}
	p.cl.Produce(ctx, r, p.promise)
	return p.Err()
}

func (p *Producer) promise(r *kgo.Record, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		if p.err == nil {
			p.err = fmt.Errorf("load: produce to %s: %w", r.Topic, err)
		}
		return
	}
	p.records++
	p.bytes += int64(len(r.Key) + len(r.Value))
}

// Err is the first produce error.
func (p *Producer) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Acked is the number of records acknowledged so far.
func (p *Producer) Acked() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.records
}

// Flush waits for every record and returns the first produce error.
func (p *Producer) Flush(ctx context.Context) error {
	if err := p.cl.Flush(ctx); err != nil {
		return err
	}
	return p.Err()
}

func (p *Producer) stats(start time.Time) Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{Records: p.records, Bytes: p.bytes, Elapsed: time.Since(start)}
}

// Produce writes the load s through cl (keys partitioned by the client's
// partitioner: kgo's default is murmur2 like the Java client). observe, if
// not nil, sees every record before it is produced (to count what a
// workload will filter, say). It returns when every record is
// acknowledged.
func Produce(ctx context.Context, cl *kgo.Client, s Spec, observe func(*kgo.Record)) (Stats, error) {
	if err := s.Validate(); err != nil {
		return Stats{}, err
	}
	s = s.withDefaults()
	g := NewGen(s)
	p := NewProducer(cl, s.Rate, !s.NoHeader)
	start := time.Now()
	p.Pace()
	var deadline time.Time
	if s.Duration > 0 {
		deadline = start.Add(s.Duration)
	}
	for i := int64(0); s.Count == 0 || i < s.Count; i++ {
		if !deadline.IsZero() && i%64 == 0 && time.Now().After(deadline) {
			break
		}
		r := g.Next()
		if observe != nil {
			observe(r)
		}
		if err := p.Send(ctx, r); err != nil {
			return p.stats(start), err
		}
	}
	err := p.Flush(ctx)
	return p.stats(start), err
}

// CreateTopic creates topic with partitions (compacted if compact); an
// existing topic is left alone.
func CreateTopic(ctx context.Context, adm *kadm.Client, topic string, partitions int32, compact bool) error {
	var configs map[string]*string
	if compact {
		c := "compact"
		configs = map[string]*string{"cleanup.policy": &c}
	}
	resp, err := adm.CreateTopic(ctx, partitions, -1, configs, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("load: create topic %s: %w", topic, err)
	}
	return nil
}
