package orders

import "strconv"

// Topic names of the scenario (ORDERS.md).
const (
	// TopicProducts is the compacted products table, keyed by product id.
	TopicProducts = "products"
	// TopicOrderLines is the stream of order-line events, keyed by order id.
	TopicOrderLines = "order-lines"
	// TopicPortfolio is the output: one record per portfolio change, keyed
	// by customer id.
	TopicPortfolio = "order-portfolio"
)

// AppID is the application id the example runs under (consumer group and
// prefix of the internal topics).
const AppID = "orders"

// Operator and store names of the topology. They are stable: the
// repartition and changelog topics are named after them.
const (
	// NameLinesByProduct is the repartition topic that keys lines by product
	// id in front of the join.
	NameLinesByProduct = "lines-by-product"
	// NamePrice is the stream–table join with products.
	NamePrice = "price"
	// NameLinesByLine is the repartition topic that keys priced lines by
	// order_id/line_no.
	NameLinesByLine = "lines-by-line"
	// NameLines is the lines table (store): the latest state of each line.
	NameLines = "lines"
	// NameLinesByCustomer is the repartition topic of the table group-by.
	NameLinesByCustomer = "lines-by-customer"
	// NamePortfolio is the portfolio table (store), queryable.
	NamePortfolio = "portfolio"
	// NameProducts is the products table (store).
	NameProducts = "products"
)

// Line statuses (the status field of a [LineEvent]).
const (
	// StatusCreated is the first event of every line.
	StatusCreated = "created"
	// StatusConfirmed follows created.
	StatusConfirmed = "confirmed"
	// StatusShipped follows confirmed; the line is done.
	StatusShipped = "shipped"
	// StatusCancelled follows created or confirmed; the line is done.
	StatusCancelled = "cancelled"
)

// Families are the product families.
var Families = []string{"car", "truck", "bike", "agri"}

// Product is a value of the products topic. A nil value (tombstone)
// deletes the product.
type Product struct {
	ProductID      string `msgpack:"product_id"`
	Family         string `msgpack:"family"`
	UnitPriceCents int64  `msgpack:"unit_price_cents"`
}

// LineEvent is a value of the order-lines topic.
type LineEvent struct {
	OrderID    string `msgpack:"order_id"`
	LineNo     int32  `msgpack:"line_no"`
	CustomerID string `msgpack:"customer_id"`
	ProductID  string `msgpack:"product_id"`
	Quantity   int64  `msgpack:"quantity"`
	Status     string `msgpack:"status"`
	Seq        int64  `msgpack:"seq"`
	EventTime  int64  `msgpack:"event_time"`
}

// LineKey is the key of the line the event belongs to: "order_id/line_no".
func (e LineEvent) LineKey() string {
	return e.OrderID + "/" + strconv.FormatInt(int64(e.LineNo), 10)
}

// PricedLine is a line event joined with its product: the value of the
// lines-by-line repartition topic and of the lines table. It is internal to
// the app; its format is not part of the contract.
type PricedLine struct {
	OrderID        string `msgpack:"order_id"`
	LineNo         int32  `msgpack:"line_no"`
	CustomerID     string `msgpack:"customer_id"`
	ProductID      string `msgpack:"product_id"`
	Quantity       int64  `msgpack:"quantity"`
	Status         string `msgpack:"status"`
	Seq            int64  `msgpack:"seq"`
	EventTime      int64  `msgpack:"event_time"`
	Family         string `msgpack:"family"`
	UnitPriceCents int64  `msgpack:"unit_price_cents"`
}

// Price joins an event with the product version it is priced with.
func Price(e LineEvent, p Product) PricedLine {
	return PricedLine{
		OrderID:        e.OrderID,
		LineNo:         e.LineNo,
		CustomerID:     e.CustomerID,
		ProductID:      e.ProductID,
		Quantity:       e.Quantity,
		Status:         e.Status,
		Seq:            e.Seq,
		EventTime:      e.EventTime,
		Family:         p.Family,
		UnitPriceCents: p.UnitPriceCents,
	}
}

// LineKey is the key of the line: "order_id/line_no".
func (l PricedLine) LineKey() string {
	return l.OrderID + "/" + strconv.FormatInt(int64(l.LineNo), 10)
}

// Open reports whether the line is open (created or confirmed).
func (l PricedLine) Open() bool { return isOpen(l.Status) }

// Value is quantity × unit price in cents.
func (l PricedLine) Value() int64 { return l.Quantity * l.UnitPriceCents }

func isOpen(status string) bool { return status == StatusCreated || status == StatusConfirmed }

// Portfolio is a value of the order-portfolio topic and of the portfolio
// table: the current order portfolio of one customer.
// Its JSON form (the example's GET /portfolio/{customer}) uses the same
// field names as the msgpack one.
type Portfolio struct {
	CustomerID     string `msgpack:"customer_id" json:"customer_id"`
	OpenLines      int64  `msgpack:"open_lines" json:"open_lines"`
	ConfirmedLines int64  `msgpack:"confirmed_lines" json:"confirmed_lines"`
	ShippedLines   int64  `msgpack:"shipped_lines" json:"shipped_lines"`
	CancelledLines int64  `msgpack:"cancelled_lines" json:"cancelled_lines"`
	OpenValueCents int64  `msgpack:"open_value_cents" json:"open_value_cents"`
	LastEventTime  int64  `msgpack:"last_event_time" json:"last_event_time"`
}

// Lines is the number of lines counted in the portfolio (open, shipped or
// cancelled; confirmed lines are open lines too).
func (p Portfolio) Lines() int64 { return p.OpenLines + p.ShippedLines + p.CancelledLines }

// LatestLine is the reducer of the lines table: of two states of a line it
// keeps the one with the higher seq, and the stored one on a tie, so a
// replayed older (or duplicate) event never wins.
func LatestLine(agg, v PricedLine) PricedLine {
	if v.Seq > agg.Seq {
		return v
	}
	return agg
}

// AddLine is the adder of the portfolio aggregate: it counts line l into
// customer's portfolio. last_event_time only ever grows.
func AddLine(customer string, l PricedLine, agg Portfolio) Portfolio {
	agg.CustomerID = customer
	agg.apply(l, 1)
	agg.LastEventTime = max(agg.LastEventTime, l.EventTime)
	return agg
}

// SubLine is the subtractor of the portfolio aggregate: it removes the old
// state of line l from the portfolio. last_event_time is left alone (it
// never decreases).
func SubLine(customer string, l PricedLine, agg Portfolio) Portfolio {
	agg.CustomerID = customer
	agg.apply(l, -1)
	return agg
}

func (p *Portfolio) apply(l PricedLine, sign int64) {
	switch l.Status {
	case StatusCreated:
		p.OpenLines += sign
	case StatusConfirmed:
		p.OpenLines += sign
		p.ConfirmedLines += sign
	case StatusShipped:
		p.ShippedLines += sign
	case StatusCancelled:
		p.CancelledLines += sign
	}
	if isOpen(l.Status) {
		p.OpenValueCents += sign * l.Value()
	}
}
