package orders

import (
	"cmp"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/choreo-go/choreo/runtime"
	"github.com/choreo-go/choreo/runtime/choreotest"
)

// The topology tested in-process with the test driver: the same tasks and
// operators as on a cluster, no broker, deterministic.

type driverRig struct {
	d        *choreotest.Driver
	pf       runtime.Table[string, Portfolio]
	products *choreotest.InputTopic[string, Product]
	lines    *choreotest.InputTopic[string, LineEvent]
	out      *choreotest.OutputTopic[string, Portfolio]
}

func newDriverRig(t *testing.T, partitions int32) *driverRig {
	t.Helper()
	b := runtime.NewBuilder()
	pf := Topology(b)
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	d, err := choreotest.New(topo, runtime.Config{ApplicationID: AppID},
		choreotest.WithPartitions(TopicProducts, partitions),
		choreotest.WithPartitions(TopicOrderLines, partitions),
		choreotest.WithPartitions(TopicPortfolio, partitions))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return &driverRig{
		d:        d,
		pf:       pf,
		products: choreotest.Input(d, TopicProducts, runtime.String(), runtime.Msgpack[Product]()),
		lines:    choreotest.Input(d, TopicOrderLines, runtime.String(), runtime.Msgpack[LineEvent]()),
		out:      choreotest.Output(d, TopicPortfolio, runtime.String(), runtime.Msgpack[Portfolio]()),
	}
}

// inputs rebuilds the model's view of the input topics from what was piped.
func (r *driverRig) inputs(t *testing.T) Inputs {
	t.Helper()
	sorted := func(topic string) []*kgo.Record {
		recs := slices.Clone(r.d.Records(topic))
		slices.SortFunc(recs, func(a, b *kgo.Record) int {
			return cmp.Or(cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
		})
		return recs
	}
	var in Inputs
	for _, rec := range sorted(TopicProducts) {
		pr := ProductRecord{Key: string(rec.Key), Timestamp: rec.Timestamp.UnixMilli(), Partition: rec.Partition, Offset: rec.Offset}
		if rec.Value != nil {
			pr.Product = new(Product)
			if err := msgpack.Unmarshal(rec.Value, pr.Product); err != nil {
				t.Fatal(err)
			}
		}
		in.Products = append(in.Products, pr)
	}
	for _, rec := range sorted(TopicOrderLines) {
		lr := LineRecord{Key: string(rec.Key), Timestamp: rec.Timestamp.UnixMilli(), Partition: rec.Partition, Offset: rec.Offset}
		if err := msgpack.Unmarshal(rec.Value, &lr.Event); err != nil {
			t.Fatal(err)
		}
		in.Lines = append(in.Lines, lr)
	}
	return in
}

func (r *driverRig) portfolio(t *testing.T) map[string]Portfolio {
	t.Helper()
	m, err := choreotest.Map(choreotest.Table(r.d, r.pf))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestDriverGeneratedLoadMatchesModel pipes a generated load with price
// changes and product deletions and compares both tables and the output
// topic with the model of ORDERS.md.
func TestDriverGeneratedLoadMatchesModel(t *testing.T) {
	r := newDriverRig(t, 3)
	o := Options{Products: 150, Lines: 1500, Customers: 80, Skew: 1.1, Seed: 7, PriceChanges: 40, Deletes: 6, InFlight: 50}
	items, err := Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	piped := 0
	for it := range items {
		rec, err := it.Record()
		if err != nil {
			t.Fatal(err)
		}
		rec.Partition = -1
		if err := r.d.PipeRecord(rec); err != nil {
			t.Fatalf("record %d: %v", piped, err)
		}
		piped++
	}
	if piped != o.Records() {
		t.Fatalf("piped %d records, generator promised %d", piped, o.Records())
	}
	in := r.inputs(t)
	want, st := Evaluate(in)
	if st.Dropped == 0 || st.Joined == 0 {
		t.Fatalf("load does not exercise the join: %+v", st)
	}
	if diff := Diff(want, r.portfolio(t)); len(diff) > 0 {
		t.Errorf("portfolio store differs from the model (%d customers):\n%v", len(diff), diff[:min(len(diff), 10)])
	}
	outTable, err := choreotest.ReadTable(r.out)
	if err != nil {
		t.Fatal(err)
	}
	if diff := Diff(want, outTable); len(diff) > 0 {
		t.Errorf("order-portfolio topic differs from the model:\n%v", diff[:min(len(diff), 10)])
	}
	lines, err := choreotest.Map(choreotest.TableStore(r.d, NameLines, runtime.String(), runtime.Msgpack[PricedLine]()))
	if err != nil {
		t.Fatal(err)
	}
	if diff := DiffLines(EvaluateLines(in), lines); len(diff) > 0 {
		t.Errorf("lines store differs from the model:\n%v", diff[:min(len(diff), 10)])
	}
	// Every output record is keyed by its customer and sits in that key's
	// partition.
	for _, rec := range r.d.Records(TopicPortfolio) {
		if want := PartitionFor(string(rec.Key), 3); rec.Partition != want {
			t.Fatalf("portfolio of %s in partition %d, want %d", rec.Key, rec.Partition, want)
		}
	}
	t.Logf("%d records piped: %d events joined, %d dropped, %d lines, %d customers, %d portfolio updates",
		piped, st.Joined, st.Dropped, st.Lines, len(want), len(r.d.Records(TopicPortfolio)))
}

// TestDriverOrderScenarios walks single lines through the life cycles of
// ORDERS.md and checks each portfolio update.
func TestDriverOrderScenarios(t *testing.T) {
	r := newDriverRig(t, 2)
	base := time.UnixMilli(1_700_000_000_000)
	at := func(s int) time.Time { return base.Add(time.Duration(s) * time.Second) }
	ms := func(s int) int64 { return at(s).UnixMilli() }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	line := func(order string, no int32, cust, prod string, qty int64, status string, seq int64, s int) {
		t.Helper()
		ev := LineEvent{OrderID: order, LineNo: no, CustomerID: cust, ProductID: prod, Quantity: qty, Status: status, Seq: seq, EventTime: ms(s)}
		must(r.lines.PipeAt(order, ev, at(s)))
	}
	next := func(what string) Portfolio {
		t.Helper()
		got, err := r.out.Read()
		if err != nil {
			t.Fatalf("%s: no portfolio update: %v", what, err)
		}
		if !r.out.Empty() {
			t.Fatalf("%s: %d more updates than one", what, r.out.Len())
		}
		return got.Value
	}

	must(r.products.PipeAt("P1", Product{ProductID: "P1", Family: "car", UnitPriceCents: 1000}, at(0)))
	must(r.products.PipeAt("P2", Product{ProductID: "P2", Family: "bike", UnitPriceCents: 50}, at(0)))

	line("O1", 1, "C1", "P1", 3, StatusCreated, 1, 1)
	if got, want := next("created"), (Portfolio{CustomerID: "C1", OpenLines: 1, OpenValueCents: 3000, LastEventTime: ms(1)}); got != want {
		t.Errorf("created: %+v, want %+v", got, want)
	}
	line("O1", 1, "C1", "P1", 3, StatusConfirmed, 2, 2)
	if got, want := next("confirmed"), (Portfolio{CustomerID: "C1", OpenLines: 1, ConfirmedLines: 1, OpenValueCents: 3000, LastEventTime: ms(2)}); got != want {
		t.Errorf("confirmed: %+v, want %+v", got, want)
	}
	// A price change applies to the line's later events only.
	must(r.products.PipeAt("P1", Product{ProductID: "P1", Family: "car", UnitPriceCents: 2000}, at(3)))
	if !r.out.Empty() {
		t.Fatal("a price change alone updated a portfolio")
	}
	line("O2", 1, "C1", "P2", 10, StatusCreated, 3, 4)
	if got := next("second line"); got.OpenLines != 2 || got.OpenValueCents != 3000+500 {
		t.Errorf("second line: %+v", got)
	}
	line("O1", 1, "C1", "P1", 3, StatusShipped, 4, 5)
	if got, want := next("shipped"), (Portfolio{CustomerID: "C1", OpenLines: 1, ShippedLines: 1, OpenValueCents: 500, LastEventTime: ms(5)}); got != want {
		t.Errorf("shipped: %+v, want %+v", got, want)
	}
	// A stale event (lower seq) changes nothing: the reduce keeps the
	// stored line, so an update it causes repeats the same portfolio.
	before := r.portfolio(t)["C1"]
	line("O2", 1, "C1", "P2", 99, StatusCreated, 2, 6)
	stale, err := r.out.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range stale {
		if u.Value != before {
			t.Fatalf("stale event changed the portfolio: %+v, was %+v", u.Value, before)
		}
	}
	line("O2", 1, "C1", "P2", 10, StatusCancelled, 5, 7)
	if got, want := next("cancelled"), (Portfolio{CustomerID: "C1", ShippedLines: 1, CancelledLines: 1, LastEventTime: ms(7)}); got != want {
		t.Errorf("cancelled: %+v, want %+v", got, want)
	}
	// An unknown product, and a deleted one, drop the event at the join.
	line("O3", 1, "C2", "P9", 1, StatusCreated, 6, 8)
	must(r.products.PipeTombstone("P2"))
	line("O4", 1, "C2", "P2", 1, StatusCreated, 7, 9)
	if !r.out.Empty() {
		t.Fatalf("events for unknown or deleted products reached the portfolio (%d updates)", r.out.Len())
	}
	if got := r.portfolio(t); len(got) != 1 || got["C1"].CancelledLines != 1 {
		t.Errorf("portfolio store %+v", got)
	}
	// A line moving to another customer (a correction) leaves the old
	// customer's counts through the subtractor.
	line("O5", 1, "C3", "P1", 1, StatusCreated, 8, 10)
	if got := next("C3 created"); got.OpenValueCents != 2000 {
		t.Errorf("new line priced with the new price: %+v", got)
	}
	line("O5", 1, "C4", "P1", 1, StatusConfirmed, 9, 11)
	updates, err := r.out.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, u := range updates {
		seen = append(seen, fmt.Sprintf("%s:%d", u.Key, u.Value.OpenLines))
	}
	if !slices.Equal(seen, []string{"C3:0", "C4:1"}) {
		t.Errorf("re-grouped line updates %v, want C3 emptied then C4 counted", seen)
	}
}
