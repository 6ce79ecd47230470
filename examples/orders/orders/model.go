package orders

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
)

// ModelStats describes what the model saw.
type ModelStats struct {
	// Events is the number of order-line events read.
	Events int
	// Joined is the number of events that passed the join.
	Joined int
	// Dropped is the number of events the join drops: their product is
	// unknown or deleted as of the event's timestamp.
	Dropped int
	// Lines is the number of lines with at least one joined event.
	Lines int
	// ProductRecords is the number of products records read (tombstones
	// included); Products the number of products that exist at the end.
	ProductRecords, Products int
}

// Model returns the portfolio table the topology must end with for the
// inputs; see [Evaluate].
func Model(in Inputs) map[string]Portfolio {
	m, _ := Evaluate(in)
	return m
}

// productVersion is one version of a product: nil product = deleted.
type productVersion struct {
	ts int64
	p  *Product
}

// Evaluate computes the expected portfolio per customer as ORDERS.md "What
// must hold" states it (see the package documentation for the precise
// reading of last_event_time), together with statistics.
//
// The events of a line are taken in (partition, offset) order, which is the
// order the topology processes them in. Product versions are looked up by
// the record key of the products topic and the record timestamps of both
// topics; versions with equal timestamps apply in offset order.
func Evaluate(in Inputs) (map[string]Portfolio, ModelStats) {
	out, _, st := evaluate(in)
	return out, st
}

// EvaluateLines computes the lines table the topology must end with for
// the inputs, keyed by "order_id/line_no" ([PricedLine.LineKey]): for
// every line with at least one event that passes the join, the joined
// event with the highest seq, priced with the product version current at
// its timestamp — the same reading of ORDERS.md as [Evaluate], whose
// portfolio follows from these lines.
//
// Unlike the portfolio, the lines table is exact under at-least-once after
// crashes too: the reduce keeps the highest seq, so replayed input never
// changes it.
func EvaluateLines(in Inputs) map[string]PricedLine {
	_, lines, _ := evaluate(in)
	return lines
}

// evaluate computes the portfolio, the lines table and the statistics.
func evaluate(in Inputs) (map[string]Portfolio, map[string]PricedLine, ModelStats) {
	st := ModelStats{Events: len(in.Lines), ProductRecords: len(in.Products)}

	versions := make(map[string][]productVersion)
	for _, r := range in.Products { // (partition, offset) order
		versions[r.Key] = append(versions[r.Key], productVersion{r.Timestamp, r.Product})
	}
	for _, vs := range versions {
		// Stable: offset order among equal timestamps.
		slices.SortStableFunc(vs, func(a, b productVersion) int { return cmp.Compare(a.ts, b.ts) })
		if vs[len(vs)-1].p != nil {
			st.Products++
		}
	}
	lookup := func(id string, ts int64) *Product {
		vs := versions[id]
		i := sort.Search(len(vs), func(i int) bool { return vs[i].ts > ts })
		if i == 0 {
			return nil // unknown as of ts
		}
		return vs[i-1].p // nil if deleted
	}

	out := make(map[string]Portfolio)
	lines := make(map[string]PricedLine) // latest state per line
	for _, r := range in.Lines {
		e := r.Event
		p := lookup(e.ProductID, r.Timestamp)
		if p == nil {
			st.Dropped++
			continue
		}
		st.Joined++
		k := e.LineKey()
		cur, ok := lines[k]
		if ok && e.Seq <= cur.Seq {
			// The reduce keeps the stored line: this event's event_time
			// never reaches the aggregate.
			continue
		}
		lines[k] = Price(e, *p)
		pf := out[e.CustomerID]
		pf.CustomerID = e.CustomerID
		pf.LastEventTime = max(pf.LastEventTime, e.EventTime)
		out[e.CustomerID] = pf
	}
	st.Lines = len(lines)

	for _, l := range lines {
		pf := out[l.CustomerID]
		switch l.Status {
		case StatusCreated:
			pf.OpenLines++
		case StatusConfirmed:
			pf.OpenLines++
			pf.ConfirmedLines++
		case StatusShipped:
			pf.ShippedLines++
		case StatusCancelled:
			pf.CancelledLines++
		}
		if l.Status == StatusCreated || l.Status == StatusConfirmed {
			pf.OpenValueCents += l.Quantity * l.UnitPriceCents
		}
		out[l.CustomerID] = pf
	}
	return out, lines, st
}

// Diff lists the differences between two portfolio tables, one line per
// customer, sorted by customer id; empty when they are equal.
func Diff(want, got map[string]Portfolio) []string { return diffTables(want, got) }

// DiffLines lists the differences between two lines tables, one line per
// line key, sorted by key; empty when they are equal.
func DiffLines(want, got map[string]PricedLine) []string { return diffTables(want, got) }

// diffTables lists the keys whose values differ, are missing from got or
// are unexpected in it, sorted by key; nil when the tables are equal.
func diffTables[V comparable](want, got map[string]V) []string {
	keys := make([]string, 0, len(want)+len(got))
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out []string
	for _, k := range keys {
		w, wok := want[k]
		g, gok := got[k]
		switch {
		case !gok:
			out = append(out, fmt.Sprintf("%s: missing, want %+v", k, w))
		case !wok:
			out = append(out, fmt.Sprintf("%s: unexpected %+v", k, g))
		case w != g:
			out = append(out, fmt.Sprintf("%s: got %+v, want %+v", k, g, w))
		}
	}
	return out
}
