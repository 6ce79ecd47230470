package load

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/examples/orders/orders"
)

// ProduceOrders writes the order load o (products, then order-line events;
// see orders.Generate) through cl, like orders.Produce, with the
// creation-time header on every record: the catalogue and every product
// change are flushed before the records after them, and with o.Rate the
// records after the catalogue are paced. cl must partition keys with
// murmur2 (orders.ProducerOpts; kgo's default does). events, if not nil,
// is called with the number of order-line events produced so far every
// 1,000 events and at the end.
func ProduceOrders(ctx context.Context, cl *kgo.Client, o orders.Options, events func(n int)) (Stats, error) {
	o = o.Resolve(time.Now())
	items, err := orders.Generate(o)
	if err != nil {
		return Stats{}, err
	}
	p := NewProducer(cl, o.Rate, true)
	start := time.Now()
	catalogue := true
	n := 0
	for it := range items {
		if catalogue && !it.Change && it.Topic == orders.TopicOrderLines {
			catalogue = false
			if err := p.Flush(ctx); err != nil {
				return p.stats(start), err
			}
			p.Pace()
		}
		r, err := it.Record()
		if err != nil {
			return p.stats(start), err
		}
		// The record keeps the generator's timestamp (event time).
		if err := p.Send(ctx, r); err != nil {
			return p.stats(start), err
		}
		if it.Change {
			if err := p.Flush(ctx); err != nil {
				return p.stats(start), err
			}
		}
		if it.Topic == orders.TopicOrderLines {
			n++
			if events != nil && n%1000 == 0 {
				events(n)
			}
		}
	}
	err = p.Flush(ctx)
	if events != nil {
		events(n)
	}
	return p.stats(start), err
}
