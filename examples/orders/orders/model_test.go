package orders

import (
	"math/rand/v2"
	"testing"
)

// in builds model inputs by hand: products and events in processing order
// (one partition). An event's record timestamp is its event_time.
type in struct {
	Inputs
	off int64
}

func (b *in) product(id string, ts, price int64) *in {
	b.off++
	b.Products = append(b.Products, ProductRecord{Key: id, Product: &Product{ProductID: id, Family: "car", UnitPriceCents: price}, Timestamp: ts, Offset: b.off})
	return b
}

func (b *in) delete(id string, ts int64) *in {
	b.off++
	b.Products = append(b.Products, ProductRecord{Key: id, Timestamp: ts, Offset: b.off})
	return b
}

func (b *in) event(order string, line int32, cust, prod string, qty int64, status string, seq, ts int64) *in {
	b.off++
	e := LineEvent{OrderID: order, LineNo: line, CustomerID: cust, ProductID: prod, Quantity: qty, Status: status, Seq: seq, EventTime: ts}
	b.Lines = append(b.Lines, LineRecord{Key: order, Event: e, Timestamp: ts, Offset: b.off})
	return b
}

func check(t *testing.T, b *in, want map[string]Portfolio, dropped int) {
	t.Helper()
	got, st := Evaluate(b.Inputs)
	for _, d := range Diff(want, got) {
		t.Error(d)
	}
	if st.Dropped != dropped {
		t.Errorf("dropped %d, want %d", st.Dropped, dropped)
	}
	// The topology's own functions, applied in processing order, agree.
	for _, d := range Diff(want, simulate(b.Inputs)) {
		t.Error("simulated topology:", d)
	}
}

func TestModelUnknownProduct(t *testing.T) {
	b := (&in{}).product("P1", 0, 100).
		event("O1", 1, "C1", "P9", 2, StatusCreated, 1, 10). // unknown product
		event("O1", 2, "C1", "P1", 3, StatusCreated, 2, 11).
		event("O2", 1, "C2", "P2", 1, StatusCreated, 3, 12) // unknown: C2 never appears
	check(t, b, map[string]Portfolio{
		"C1": {CustomerID: "C1", OpenLines: 1, OpenValueCents: 300, LastEventTime: 11},
	}, 2)
}

func TestModelProductNotYetKnown(t *testing.T) {
	// The product exists, but only from a time after the event.
	b := (&in{}).product("P1", 50, 100).
		event("O1", 1, "C1", "P1", 1, StatusCreated, 1, 10).
		event("O1", 1, "C1", "P1", 1, StatusConfirmed, 2, 60)
	check(t, b, map[string]Portfolio{
		"C1": {CustomerID: "C1", OpenLines: 1, ConfirmedLines: 1, OpenValueCents: 100, LastEventTime: 60},
	}, 1)
}

func TestModelDeletedProduct(t *testing.T) {
	b := (&in{}).product("P1", 0, 100).product("P2", 0, 7).
		event("O1", 1, "C1", "P1", 2, StatusCreated, 1, 10).
		delete("P1", 20).
		event("O1", 1, "C1", "P1", 2, StatusConfirmed, 2, 30). // dropped: line stays created
		event("O2", 1, "C1", "P1", 1, StatusCreated, 3, 31).   // dropped: line never exists
		event("O3", 1, "C1", "P2", 1, StatusCreated, 4, 32)
	check(t, b, map[string]Portfolio{
		"C1": {CustomerID: "C1", OpenLines: 2, OpenValueCents: 200 + 7, LastEventTime: 32},
	}, 2)
}

func TestModelDeletedAndRecreated(t *testing.T) {
	b := (&in{}).product("P1", 0, 100).delete("P1", 5).product("P1", 8, 300).
		event("O1", 1, "C1", "P1", 1, StatusCreated, 1, 6). // deleted then
		event("O1", 2, "C1", "P1", 1, StatusCreated, 2, 8)  // back at 300 (timestamp not after)
	check(t, b, map[string]Portfolio{
		"C1": {CustomerID: "C1", OpenLines: 1, OpenValueCents: 300, LastEventTime: 8},
	}, 1)
}

func TestModelPriceChangeBetweenEvents(t *testing.T) {
	b := (&in{}).product("P1", 0, 100).
		event("O1", 1, "C1", "P1", 3, StatusCreated, 1, 10).
		event("O2", 1, "C1", "P1", 1, StatusCreated, 2, 11).
		product("P1", 15, 200).
		event("O1", 1, "C1", "P1", 3, StatusConfirmed, 3, 20) // repriced with 200
	check(t, b, map[string]Portfolio{
		"C1": {CustomerID: "C1", OpenLines: 2, ConfirmedLines: 1, OpenValueCents: 3*200 + 100, LastEventTime: 20},
	}, 0)
}

func TestModelPriceVersionByTimestamp(t *testing.T) {
	// Versions are chosen by timestamp, not by position in the topic.
	b := &in{}
	b.product("P1", 0, 100).product("P1", 30, 300).product("P1", 20, 200)
	b.event("O1", 1, "C1", "P1", 1, StatusCreated, 1, 25)
	check(t, b, map[string]Portfolio{
		"C1": {CustomerID: "C1", OpenLines: 1, OpenValueCents: 200, LastEventTime: 25},
	}, 0)
}

func TestModelShippedAndCancelled(t *testing.T) {
	b := (&in{}).product("P1", 0, 10).
		event("O1", 1, "C1", "P1", 1, StatusCreated, 1, 1).
		event("O1", 2, "C1", "P1", 2, StatusCreated, 2, 2).
		event("O1", 3, "C1", "P1", 4, StatusCreated, 3, 3).
		event("O1", 1, "C1", "P1", 1, StatusConfirmed, 4, 4).
		event("O1", 2, "C1", "P1", 2, StatusConfirmed, 5, 5).
		event("O1", 1, "C1", "P1", 1, StatusShipped, 6, 6).   // confirmed → shipped
		event("O1", 2, "C1", "P1", 2, StatusCancelled, 7, 7). // confirmed → cancelled
		event("O1", 3, "C1", "P1", 4, StatusCancelled, 8, 8)  // created → cancelled
	check(t, b, map[string]Portfolio{
		"C1": {CustomerID: "C1", ShippedLines: 1, CancelledLines: 2, LastEventTime: 8},
	}, 0)
}

func TestModelHighestSeqWins(t *testing.T) {
	b := (&in{}).product("P1", 0, 10).
		event("O1", 1, "C1", "P1", 1, StatusCreated, 1, 100).
		event("O1", 1, "C1", "P1", 1, StatusConfirmed, 5, 200).
		event("O1", 1, "C1", "P1", 1, StatusCreated, 1, 100). // replay of the first event
		event("O1", 1, "C1", "P1", 1, StatusCreated, 3, 900)  // an older event arriving late
	// The late event does not win, and its event_time never reaches the
	// aggregate (the reduce keeps the stored line).
	check(t, b, map[string]Portfolio{
		"C1": {CustomerID: "C1", OpenLines: 1, ConfirmedLines: 1, OpenValueCents: 10, LastEventTime: 200},
	}, 0)
}

func TestModelLastEventTimeNeverDecreases(t *testing.T) {
	b := (&in{}).product("P1", 0, 10).
		event("O1", 1, "C1", "P1", 1, StatusCreated, 1, 500).
		event("O1", 2, "C1", "P1", 1, StatusCreated, 2, 100).   // earlier event time, later line
		event("O1", 1, "C1", "P1", 1, StatusConfirmed, 3, 300). // superseded, later seq, earlier time
		event("O1", 1, "C1", "P1", 1, StatusShipped, 4, 400)
	check(t, b, map[string]Portfolio{
		"C1": {CustomerID: "C1", OpenLines: 1, ShippedLines: 1, OpenValueCents: 10, LastEventTime: 500},
	}, 0)
}

func TestModelSupersededEventsCount(t *testing.T) {
	// A superseded event's event_time counts: it reached the aggregate
	// before the later event replaced it.
	b := (&in{}).product("P1", 0, 10).
		event("O1", 1, "C1", "P1", 1, StatusCreated, 1, 900).
		event("O1", 1, "C1", "P1", 1, StatusConfirmed, 2, 100)
	check(t, b, map[string]Portfolio{
		"C1": {CustomerID: "C1", OpenLines: 1, ConfirmedLines: 1, OpenValueCents: 10, LastEventTime: 900},
	}, 0)
}

// simulate runs the topology's operator functions (LatestLine, AddLine,
// SubLine) record by record in processing order, with the join looking the
// product up as of the event's timestamp (which is what it sees when
// products change before the events that use them are produced).
func simulate(in Inputs) map[string]Portfolio {
	out, _ := simulateAll(in)
	return out
}

// simulateAll is simulate that also returns the lines table.
func simulateAll(in Inputs) (map[string]Portfolio, map[string]PricedLine) {
	type version struct {
		ts int64
		p  *Product
	}
	products := map[string][]version{}
	for _, r := range in.Products {
		products[r.Key] = append(products[r.Key], version{r.Timestamp, r.Product})
	}
	lookup := func(id string, ts int64) *Product {
		var best *version
		for i, v := range products[id] {
			if v.ts <= ts && (best == nil || v.ts >= best.ts) {
				best = &products[id][i]
			}
		}
		if best == nil {
			return nil
		}
		return best.p
	}
	lines := map[string]PricedLine{}
	out := map[string]Portfolio{}
	for _, r := range in.Lines {
		p := lookup(r.Event.ProductID, r.Timestamp)
		if p == nil {
			continue // inner join
		}
		v := Price(r.Event, *p)
		k := v.LineKey()
		old, has := lines[k]
		nv := v
		if has {
			nv = LatestLine(old, v)
		}
		lines[k] = nv
		if has {
			if old.CustomerID == nv.CustomerID {
				out[nv.CustomerID] = AddLine(nv.CustomerID, nv, SubLine(old.CustomerID, old, out[old.CustomerID]))
				continue
			}
			out[old.CustomerID] = SubLine(old.CustomerID, old, out[old.CustomerID])
		}
		out[nv.CustomerID] = AddLine(nv.CustomerID, nv, out[nv.CustomerID])
	}
	return out, lines
}

// TestModelMatchesSimulation compares the model with the simulated
// topology on generated loads with product changes, replayed and
// late events, and events for unknown products.
func TestModelMatchesSimulation(t *testing.T) {
	for seed := range uint64(5) {
		o := small(seed)
		o.Lines = 3000
		o.PriceChanges, o.Deletes = 5, 2
		var b in
		items, err := Generate(o)
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(seed, 1))
		var events []LineEvent
		for it := range items {
			if it.Topic == TopicProducts {
				b.off++
				b.Products = append(b.Products, ProductRecord{Key: it.Key, Product: it.Product, Timestamp: it.Timestamp, Offset: b.off})
				continue
			}
			e := it.Line
			if r.IntN(50) == 0 {
				e.ProductID = "P-unknown"
			}
			b.event(e.OrderID, e.LineNo, e.CustomerID, e.ProductID, e.Quantity, e.Status, e.Seq, e.EventTime)
			events = append(events, e)
			if r.IntN(20) == 0 { // replay an earlier event, as is or late with a new time
				old := events[r.IntN(len(events))]
				if r.IntN(2) == 0 {
					old.EventTime = e.EventTime
				}
				b.event(old.OrderID, old.LineNo, old.CustomerID, old.ProductID, old.Quantity, old.Status, old.Seq, old.EventTime)
			}
		}
		got, st := Evaluate(b.Inputs)
		if st.Dropped == 0 || st.Joined == 0 {
			t.Fatalf("seed %d: no drops or no joins: %+v", seed, st)
		}
		simPortfolio, simLines := simulateAll(b.Inputs)
		if d := Diff(simPortfolio, got); len(d) > 0 {
			t.Fatalf("seed %d: model and simulated topology differ (%d):\n%v", seed, len(d), d[:min(5, len(d))])
		}
		lines := EvaluateLines(b.Inputs)
		if len(lines) != st.Lines {
			t.Fatalf("seed %d: %d lines, stats say %d", seed, len(lines), st.Lines)
		}
		if d := DiffLines(simLines, lines); len(d) > 0 {
			t.Fatalf("seed %d: lines table of the model and the simulated topology differ (%d):\n%v", seed, len(d), d[:min(5, len(d))])
		}
	}
}

func TestDiff(t *testing.T) {
	a := map[string]Portfolio{"C1": {CustomerID: "C1", OpenLines: 1}, "C2": {CustomerID: "C2"}}
	b := map[string]Portfolio{"C1": {CustomerID: "C1", OpenLines: 2}, "C3": {CustomerID: "C3"}}
	d := Diff(a, b)
	if len(d) != 3 || Diff(a, a) != nil {
		t.Fatalf("%q", d)
	}
	la := map[string]PricedLine{"O1/1": {OrderID: "O1", LineNo: 1, Seq: 2}}
	lb := map[string]PricedLine{"O1/1": {OrderID: "O1", LineNo: 1, Seq: 1}}
	if d := DiffLines(la, lb); len(d) != 1 || DiffLines(la, la) != nil {
		t.Fatalf("%q", d)
	}
}

func TestEvaluateLines(t *testing.T) {
	b := (&in{}).product("P1", 0, 100).product("P1", 20, 150).
		event("O1", 1, "C1", "P1", 2, StatusCreated, 1, 10).
		event("O1", 1, "C1", "P1", 2, StatusConfirmed, 2, 21). // repriced at 150
		event("O1", 1, "C1", "P1", 2, StatusCreated, 1, 22).   // replayed: lower seq loses
		event("O1", 2, "C1", "P9", 1, StatusCreated, 3, 23)    // unknown product: no line
	got := EvaluateLines(b.Inputs)
	want := map[string]PricedLine{"O1/1": {OrderID: "O1", LineNo: 1, CustomerID: "C1", ProductID: "P1", Quantity: 2,
		Status: StatusConfirmed, Seq: 2, EventTime: 21, Family: "car", UnitPriceCents: 150}}
	for _, d := range DiffLines(want, got) {
		t.Error(d)
	}
}
