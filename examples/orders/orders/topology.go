package orders

import "github.com/choreo-go/choreo/runtime"

// Topology adds the order-portfolio topology of ORDERS.md to b and returns
// the portfolio table (store [NamePortfolio]):
//
//	order-lines ─ selectKey(product_id) ─ repartition lines-by-product ─┐
//	products (table, store products) ───────────────────────────────────┴─ join price (inner)
//	  ─ groupBy(order_id/line_no) ─ repartition lines-by-line ─ reduce lines (highest seq)
//	  ─ groupBy(customer_id) ─ repartition lines-by-customer ─ aggregate portfolio (adder, subtractor)
//	  ─ toStream ─ order-portfolio
//
// Every stateful operator and repartition topic is named explicitly, so
// the internal topics keep their names across topology edits.
func Topology(b *runtime.Builder) runtime.Table[string, Portfolio] {
	return TopologyPriced(b, Price)
}

// TopologyPriced is Topology with another pricing function in the join: a
// variant of the topology, for comparing two versions on the same
// recording (examples/replay).
func TopologyPriced(b *runtime.Builder, price func(LineEvent, Product) PricedLine) runtime.Table[string, Portfolio] {
	products := runtime.TableOf(b, TopicProducts, runtime.String(), runtime.Msgpack[Product](),
		runtime.Named(NameProducts))
	lines := runtime.StreamOf(b, TopicOrderLines, runtime.String(), runtime.Msgpack[LineEvent](),
		runtime.Named("order-lines-source"))

	// 1. Key by product and meet the products table (the repartition topic
	// takes the products topic's partition count).
	byProduct := runtime.SelectKey(lines, func(_ string, e LineEvent) string { return e.ProductID },
		runtime.Named("key-by-product")).
		Repartition(runtime.Named(NameLinesByProduct))
	priced := runtime.Join(byProduct, products, func(_ string, e LineEvent, p Product) PricedLine { return price(e, p) },
		runtime.Named(NamePrice), runtime.WithValueSerde(runtime.Msgpack[PricedLine]()))

	// 2. The lines table: the latest state of every line.
	byLine := runtime.GroupBy(priced, func(_ string, l PricedLine) string { return l.LineKey() },
		runtime.Named(NameLinesByLine))
	linesTable := runtime.Reduce(byLine, LatestLine, runtime.Named(NameLines))

	// 3. The portfolio: lines grouped by customer, aggregated with an adder
	// and a subtractor so a line that changes moves its counts exactly.
	byCustomer := runtime.GroupTable(linesTable, func(_ string, l PricedLine) (string, PricedLine) { return l.CustomerID, l },
		runtime.Named(NameLinesByCustomer))
	portfolio := runtime.AggregateTable(byCustomer, func() Portfolio { return Portfolio{} }, AddLine, SubLine,
		runtime.Named(NamePortfolio), runtime.WithValueSerde(runtime.Msgpack[Portfolio]()))

	// 4. Every change of the portfolio goes out.
	portfolio.ToStream(runtime.Named("portfolio-changes")).To(TopicPortfolio, runtime.Named("portfolio-sink"))
	return portfolio
}
