package orders

import (
	"errors"
	"fmt"
	"iter"
	"math"
	"math/rand/v2"
	"time"
)

// Options describes a load. The same Options (Seed and Start included)
// always yield the same records.
type Options struct {
	// Products is the size of the catalogue produced before any line.
	Products int
	// Lines is the number of order lines.
	Lines int
	// Customers is the number of customers the orders are spread over.
	Customers int
	// Skew is the Zipf exponent s (> 1) of the customer distribution: a
	// few very large accounts. 0 spreads orders uniformly.
	Skew float64
	// Seed seeds the PCG generator.
	Seed uint64
	// Rate paces Produce in records per second after the catalogue; 0
	// produces as fast as possible. It does not change the records.
	Rate float64
	// MaxEvents stops the load after this many order-line events (lines
	// still in flight stay where they are); 0 = every event of every line.
	MaxEvents int
	// PriceChanges is the number of product price changes produced
	// mid-stream, spread evenly over the load.
	PriceChanges int
	// Deletes is the number of products deleted by a tombstone mid-stream,
	// spread evenly over the load together with the price changes (the
	// deletions come first). Lines
	// started after a deletion may still order the product: their events
	// are dropped by the join.
	Deletes int
	// InFlight is the number of lines in progress at a time (default 1000):
	// the events of different lines interleave, each line's stay in order.
	InFlight int
	// Start is the timestamp (ms since epoch) of the catalogue; the record
	// after it is stamped Start+StepMs, the next Start+2·StepMs, and so on.
	// 0 lets Produce choose (see [Options.Resolve]); Generate then starts
	// at the epoch.
	Start int64
	// IDBase is added to every order number and seq, so a load produced
	// after IDBase events of an earlier one (with the same or another seed)
	// adds new orders instead of replaying the old ones.
	IDBase int
	// StepMs is the event-time distance between consecutive records after
	// the catalogue (default 25 ms: about the 39 events/s of the peak hour;
	// see Resolve for paced loads).
	StepMs int64
}

// Default load (ORDERS.md): 2,000 products, then 56,000 lines from 5,000
// Zipf-skewed customers: 140,000 order-line events.
const (
	DefaultProducts  = 2000
	DefaultLines     = 56000
	DefaultCustomers = 5000
	DefaultSkew      = 1.1
	DefaultEvents    = 140000
	// PeakRate is the event rate of the peak hour (140,000 events/hour).
	PeakRate = 39.0
)

// DefaultOptions is the default load with the given seed.
func DefaultOptions(seed uint64) Options {
	return Options{
		Products:  DefaultProducts,
		Lines:     DefaultLines,
		Customers: DefaultCustomers,
		Skew:      DefaultSkew,
		Seed:      seed,
	}
}

// LinesFor returns the number of lines whose events (2.5 per line on
// average with the path mix) make up at least events events.
func LinesFor(events int) int { return (2*events + 4) / 5 }

// paths are the five ways a line can go, with their share in percent.
var paths = []struct {
	pct      int
	statuses []string
}{
	{50, []string{StatusCreated, StatusConfirmed, StatusShipped}},
	{20, []string{StatusCreated, StatusConfirmed}},
	{10, []string{StatusCreated}},
	{10, []string{StatusCreated, StatusCancelled}},
	{10, []string{StatusCreated, StatusConfirmed, StatusCancelled}},
}

// pathCounts returns how many lines take each path: exactly the stated
// shares, the rounding remainder going to the first paths.
func pathCounts(lines int) []int {
	counts := make([]int, len(paths))
	sum := 0
	for i, p := range paths {
		counts[i] = lines * p.pct / 100
		sum += counts[i]
	}
	for i := 0; sum < lines; i++ {
		counts[i%len(counts)]++
		sum++
	}
	return counts
}

// Events is the number of order-line events of the load.
func (o Options) Events() int {
	n := 0
	for i, c := range pathCounts(o.Lines) {
		n += c * len(paths[i].statuses)
	}
	if o.MaxEvents > 0 && o.MaxEvents < n {
		n = o.MaxEvents
	}
	return n
}

// Records is the number of records of the load: catalogue, events and
// product changes.
func (o Options) Records() int {
	if o.Events() == 0 {
		return 0
	}
	return o.Products + o.Events() + o.PriceChanges + o.Deletes
}

func (o Options) step() int64 {
	if o.StepMs <= 0 {
		return 25
	}
	return o.StepMs
}

// Resolve returns o ready for producing at now. A zero Start is chosen so
// that event time follows the wall clock: with a Rate, from now on (and a
// zero StepMs becomes 1000/Rate); a burst (Rate 0) is stamped as the span
// that just ended, so no record lies in the future (brokers may reject
// timestamps far ahead, and time retention measures from the newest
// record).
func (o Options) Resolve(now time.Time) Options {
	if o.Rate > 0 && o.StepMs <= 0 {
		o.StepMs = max(1, int64(math.Round(1000/o.Rate)))
	}
	if o.Start != 0 {
		return o
	}
	o.Start = now.UnixMilli()
	if o.Rate <= 0 {
		o.Start -= int64(o.Records()) * o.step()
	}
	return o
}

// Validate reports whether the options describe a load.
func (o Options) Validate() error {
	switch {
	case o.Lines < 0 || o.Products < 0 || o.Customers < 0 || o.MaxEvents < 0 || o.PriceChanges < 0 || o.Deletes < 0 || o.IDBase < 0:
		return errors.New("orders: negative count in options")
	case o.Lines > 0 && o.Customers == 0:
		return errors.New("orders: lines need customers")
	case o.Lines > 0 && o.Products <= o.PriceChanges+o.Deletes:
		return fmt.Errorf("orders: %d products cannot take %d price changes and %d deletes and leave one unchanged",
			o.Products, o.PriceChanges, o.Deletes)
	case o.Skew != 0 && !(o.Skew > 1):
		return fmt.Errorf("orders: skew %v: want 0 (uniform) or a Zipf exponent > 1", o.Skew)
	case o.Rate < 0:
		return errors.New("orders: negative rate")
	}
	return nil
}

// Item is one record of a load.
type Item struct {
	// Topic is TopicProducts or TopicOrderLines.
	Topic string
	// Key is the product id or the order id.
	Key string
	// Timestamp is the record timestamp (ms); for a line event it equals
	// Line.EventTime.
	Timestamp int64
	// Product is the value of a products record; nil deletes the product.
	Product *Product
	// Line is the value of an order-lines record.
	Line LineEvent
	// Change marks a product record produced mid-stream (price change or
	// deletion), after the catalogue.
	Change bool
}

// lineState is a line in progress.
type lineState struct {
	ev    LineEvent
	path  []string
	steps int
}

// Generate returns the records of the load in production order: the
// catalogue, then the order-line events of many interleaved lines with the
// product changes spread among them. Each line's events come in path order
// with strictly increasing seq (seq is unique over the load) and event time.
func Generate(o Options) (iter.Seq[Item], error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return func(yield func(Item) bool) { generate(o, yield) }, nil
}

func generate(o Options, yield func(Item) bool) {
	total := o.Events()
	if total == 0 {
		return
	}
	r := rand.New(rand.NewPCG(o.Seed, 0x6f726465722d6c6e))
	step := o.step()
	inFlight := o.InFlight
	if inFlight <= 0 {
		inFlight = 1000
	}

	// The catalogue.
	products := make([]Product, o.Products)
	for i := range products {
		fam := Families[r.IntN(len(Families))]
		products[i] = Product{ProductID: ProductID(i), Family: fam, UnitPriceCents: price(r, fam)}
		if !yield(Item{Topic: TopicProducts, Key: products[i].ProductID, Timestamp: o.Start, Product: &products[i]}) {
			return
		}
	}

	// Products changed mid-stream are kept out of every line until their
	// change: no event that must see the old version can be in flight when
	// the join sees the new one.
	nChanges := o.PriceChanges + o.Deletes
	perm := r.Perm(o.Products)
	reserved := perm[:nChanges]
	avail := append([]int(nil), perm[nChanges:]...)
	changeAt := make([]int, nChanges)
	for c := range changeAt {
		changeAt[c] = (c + 1) * total / (nChanges + 1)
	}

	counts := pathCounts(o.Lines)
	linePaths := make([]uint8, 0, o.Lines)
	for i, c := range counts {
		for range c {
			linePaths = append(linePaths, uint8(i))
		}
	}
	r.Shuffle(len(linePaths), func(i, j int) { linePaths[i], linePaths[j] = linePaths[j], linePaths[i] })

	custPerm := r.Perm(o.Customers)
	var zipf *rand.Zipf
	if o.Skew > 0 {
		zipf = rand.NewZipf(r, o.Skew, 1, uint64(o.Customers-1))
	}
	customer := func() string {
		var rank int
		if zipf != nil {
			rank = int(zipf.Uint64())
		} else {
			rank = r.IntN(o.Customers)
		}
		return CustomerID(custPerm[rank])
	}

	var (
		j         int64 // records after the catalogue
		emitted   int   // line events
		nextChg   int
		nextLine  int
		orderNo   = o.IDBase
		orderCust string
		orderLeft int
		lineNo    int32
		active    = make([]*lineState, 0, inFlight)
	)
	for emitted < total {
		for nextChg < nChanges && emitted >= changeAt[nextChg] {
			p := &products[reserved[nextChg]]
			it := Item{Topic: TopicProducts, Key: p.ProductID, Change: true}
			if nextChg >= o.Deletes { // deletions first: more lines see them
				changed := *p
				changed.UnitPriceCents = changed.UnitPriceCents * int64(85+r.IntN(36)) / 100
				it.Product = &changed
			}
			avail = append(avail, reserved[nextChg])
			nextChg++
			j++
			it.Timestamp = o.Start + j*step
			if !yield(it) {
				return
			}
		}

		var idx int
		if nextLine < o.Lines && (len(active) == 0 || (len(active) < inFlight && r.IntN(4) != 0)) {
			if orderLeft == 0 {
				orderNo++
				orderCust = customer()
				orderLeft = 1 + r.IntN(5)
				lineNo = 0
			}
			orderLeft--
			lineNo++
			active = append(active, &lineState{
				ev: LineEvent{
					OrderID:    OrderID(orderNo),
					LineNo:     lineNo,
					CustomerID: orderCust,
					ProductID:  products[avail[r.IntN(len(avail))]].ProductID,
					Quantity:   1 + int64(r.IntN(10)),
				},
				path: paths[linePaths[nextLine]].statuses,
			})
			nextLine++
			idx = len(active) - 1
		} else {
			idx = r.IntN(len(active))
		}
		ls := active[idx]

		j++
		emitted++
		ev := ls.ev
		ev.Status = ls.path[ls.steps]
		ev.Seq = int64(o.IDBase + emitted)
		ev.EventTime = o.Start + j*step
		ls.steps++
		if ls.steps == len(ls.path) {
			active[idx] = active[len(active)-1]
			active = active[:len(active)-1]
		}
		if !yield(Item{Topic: TopicOrderLines, Key: ev.OrderID, Timestamp: ev.EventTime, Line: ev}) {
			return
		}
	}
}

// price draws a unit price in cents for a product of the family.
func price(r *rand.Rand, family string) int64 {
	lo, hi := int64(1_500_000), int64(6_000_000) // car
	switch family {
	case "truck":
		lo, hi = 6_000_000, 25_000_000
	case "bike":
		lo, hi = 300_000, 3_000_000
	case "agri":
		lo, hi = 4_000_000, 40_000_000
	}
	return lo + r.Int64N(hi-lo)
}

// ProductID formats the id of the i-th product (0-based): P000001, ...
func ProductID(i int) string { return fmt.Sprintf("P%06d", i+1) }

// CustomerID formats the id of the i-th customer (0-based): C0001, ...
func CustomerID(i int) string { return fmt.Sprintf("C%04d", i+1) }

// OrderID formats the id of order n (1-based): O00000001, ...
func OrderID(n int) string { return fmt.Sprintf("O%08d", n) }
