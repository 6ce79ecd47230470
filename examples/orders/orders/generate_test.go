package orders

import (
	"slices"
	"strings"
	"testing"
)

func collect(t *testing.T, o Options) []Item {
	t.Helper()
	items, err := Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	var out []Item
	for it := range items {
		if it.Product != nil {
			p := *it.Product
			it.Product = &p
		}
		out = append(out, it)
	}
	return out
}

func small(seed uint64) Options {
	return Options{Products: 50, Lines: 2000, Customers: 100, Skew: 1.2, Seed: seed, PriceChanges: 3, Deletes: 1, InFlight: 200, Start: 1_700_000_000_000}
}

func sameItems(a, b []Item) bool {
	return slices.EqualFunc(a, b, func(x, y Item) bool {
		if (x.Product == nil) != (y.Product == nil) || (x.Product != nil && *x.Product != *y.Product) {
			return false
		}
		x.Product, y.Product = nil, nil
		return x == y
	})
}

func TestGenerateDeterministic(t *testing.T) {
	a, b := collect(t, small(7)), collect(t, small(7))
	if !sameItems(a, b) {
		t.Fatal("same seed, different loads")
	}
	if c := collect(t, small(8)); sameItems(a, c) {
		t.Fatal("different seeds, same load")
	}
}

// TestGenerateDefaultLoad checks the default load of ORDERS.md: 2,000
// products first, then exactly 140,000 events of 56,000 lines with the
// stated path shares, each line in order with strictly increasing seq.
func TestGenerateDefaultLoad(t *testing.T) {
	o := DefaultOptions(1)
	o.Start = 1_700_000_000_000
	items := collect(t, o)
	if got := o.Events(); got != DefaultEvents {
		t.Fatalf("Events() = %d", got)
	}
	if len(items) != DefaultProducts+DefaultEvents {
		t.Fatalf("%d records, want %d", len(items), DefaultProducts+DefaultEvents)
	}
	for i, it := range items[:DefaultProducts] {
		if it.Topic != TopicProducts || it.Product == nil || it.Key != it.Product.ProductID || it.Product.UnitPriceCents <= 0 {
			t.Fatalf("record %d is not a product: %+v", i, it)
		}
	}

	type line struct {
		statuses []string
		last     LineEvent
	}
	lines := map[string]*line{}
	seqs := map[int64]bool{}
	perCustomer := map[string]int{}
	length := map[string]int{}
	for _, it := range items[DefaultProducts:] {
		length[it.Line.LineKey()]++
	}
	inFlight, maxInFlight := 0, 0
	for _, it := range items[DefaultProducts:] {
		if it.Topic != TopicOrderLines {
			t.Fatalf("product record among the events: %+v", it)
		}
		e := it.Line
		if it.Key != e.OrderID || it.Timestamp != e.EventTime {
			t.Fatalf("key/timestamp do not match the event: %+v", it)
		}
		if seqs[e.Seq] {
			t.Fatalf("seq %d twice", e.Seq)
		}
		seqs[e.Seq] = true
		l := lines[e.LineKey()]
		if l == nil {
			l = &line{}
			lines[e.LineKey()] = l
			perCustomer[e.CustomerID]++
			inFlight++
		} else {
			if e.Seq <= l.last.Seq || e.EventTime <= l.last.EventTime {
				t.Fatalf("line %s: seq/time not increasing: %+v after %+v", e.LineKey(), e, l.last)
			}
			if e.CustomerID != l.last.CustomerID || e.ProductID != l.last.ProductID || e.Quantity != l.last.Quantity {
				t.Fatalf("line %s changed customer, product or quantity", e.LineKey())
			}
		}
		l.statuses = append(l.statuses, e.Status)
		l.last = e
		if len(l.statuses) == length[e.LineKey()] {
			inFlight--
		}
		maxInFlight = max(maxInFlight, inFlight)
	}
	if len(lines) != DefaultLines {
		t.Fatalf("%d lines, want %d", len(lines), DefaultLines)
	}
	shares := map[string]int{}
	for k, l := range lines {
		ok := false
		for _, p := range paths {
			if slices.Equal(l.statuses, p.statuses) {
				ok = true
			}
		}
		if !ok {
			t.Fatalf("line %s took path %v", k, l.statuses)
		}
		shares[joinStatuses(l.statuses)]++
	}
	for _, p := range paths {
		if got, want := shares[joinStatuses(p.statuses)], DefaultLines*p.pct/100; got != want {
			t.Errorf("path %v: %d lines, want %d", p.statuses, got, want)
		}
	}
	if len(perCustomer) > DefaultCustomers {
		t.Errorf("%d customers", len(perCustomer))
	}
	// Zipf: the largest account has far more than the uniform share (11).
	top := 0
	for _, n := range perCustomer {
		top = max(top, n)
	}
	if top < 1000 {
		t.Errorf("largest customer has %d lines: no skew", top)
	}
	// Lines interleave: many are in progress at once.
	if maxInFlight < 500 {
		t.Errorf("at most %d lines in flight", maxInFlight)
	}
}

func joinStatuses(s []string) string { return strings.Join(s, ">") }

func TestGenerateUniform(t *testing.T) {
	o := small(3)
	o.Skew = 0
	o.Lines = 20000
	per := map[string]int{}
	for _, it := range collect(t, o) {
		if it.Topic == TopicOrderLines && it.Line.Status == StatusCreated {
			per[it.Line.CustomerID]++
		}
	}
	top := 0
	for _, n := range per {
		top = max(top, n)
	}
	if len(per) != o.Customers || top > 2*20000/o.Customers+100 {
		t.Errorf("uniform: %d customers, largest %d lines", len(per), top)
	}
}

// TestGenerateProductChanges: changed products are not used before their
// change, and the changes come mid-stream with increasing timestamps.
func TestGenerateProductChanges(t *testing.T) {
	o := small(11)
	items := collect(t, o)
	used := map[string]bool{}
	changed := map[string]bool{}
	var changes, deletes int
	lastTS := int64(0)
	for i, it := range items {
		if i >= o.Products && it.Timestamp <= lastTS {
			t.Fatalf("record %d: timestamp %d not after %d", i, it.Timestamp, lastTS)
		}
		lastTS = it.Timestamp
		switch {
		case it.Topic == TopicProducts && it.Change:
			if used[it.Key] {
				t.Fatalf("product %s changed after lines used it", it.Key)
			}
			changed[it.Key] = true
			if it.Product == nil {
				deletes++
			} else {
				changes++
			}
		case it.Topic == TopicProducts:
			if i >= o.Products {
				t.Fatalf("catalogue record at %d", i)
			}
		default:
			used[it.Line.ProductID] = true
		}
	}
	if changes != o.PriceChanges || deletes != o.Deletes {
		t.Fatalf("%d changes, %d deletes", changes, deletes)
	}
	if len(changed) != o.PriceChanges+o.Deletes {
		t.Fatalf("changes hit %d products", len(changed))
	}
}

func TestGenerateMaxEvents(t *testing.T) {
	o := small(5)
	o.Lines = LinesFor(1001)
	o.MaxEvents = 1001
	n := 0
	for _, it := range collect(t, o) {
		if it.Topic == TopicOrderLines {
			n++
		}
	}
	if n != 1001 || o.Events() != 1001 {
		t.Fatalf("%d events (Events() %d), want 1001", n, o.Events())
	}
	if LinesFor(DefaultEvents) != DefaultLines {
		t.Fatalf("LinesFor(%d) = %d", DefaultEvents, LinesFor(DefaultEvents))
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{
		{Products: 1, Lines: 1, Customers: 1, Skew: 0.5},
		{Products: 2, Lines: 1, Customers: 1, PriceChanges: 1, Deletes: 1},
		{Products: 2, Lines: 1},
		{Products: 2, Lines: -1, Customers: 1},
	} {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
	if err := DefaultOptions(1).Validate(); err != nil {
		t.Error(err)
	}
}
