package main

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/examples/orders/orders"
	"github.com/choreo-go/choreo/internal/testbroker"
	"github.com/choreo-go/choreo/runtime"
)

// TestEndToEnd runs the scenario on an embedded broker: 40,000 lines
// (100,000 events) with product price changes and a product deleted
// mid-stream, produced while the app runs; the app is stopped once
// mid-way and started again on the same state; at the end the
// order-portfolio topic must equal the model computed from the input
// topics.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 280*time.Second)
	if d, ok := t.Deadline(); ok {
		ctx, cancel = context.WithDeadline(context.Background(), d.Add(-10*time.Second))
	}
	defer cancel()

	br, err := testbroker.Start(testbroker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	cl, err := kgo.NewClient(append(orders.ProducerOpts(), kgo.SeedBrokers(br.Addrs()...))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if err := orders.CreateTopics(ctx, adm, 6); err != nil {
		t.Fatal(err)
	}

	gen := orders.DefaultOptions(7)
	gen.Lines = 40000
	gen.PriceChanges, gen.Deletes = 5, 1
	if gen.Events() < 100000 {
		t.Fatalf("load has %d events", gen.Events())
	}

	stateDir := t.TempDir()
	start := func() (*runtime.App, chan error) {
		b := runtime.NewBuilder()
		orders.Topology(b)
		app, err := runtime.New(b, runtime.Config{
			Brokers:        br.Addrs(),
			ApplicationID:  orders.AppID,
			StateDir:       stateDir,
			CommitInterval: 200 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- app.Run(ctx) }()
		return app, done
	}
	stop := func(app *runtime.App, done chan error) {
		t.Helper()
		app.Close()
		if err := <-done; err != nil {
			t.Fatal("app:", err)
		}
	}

	app, done := start()
	produced := make(chan error, 1)
	go func() { produced <- orders.Produce(ctx, cl, gen, nil) }()

	// Stop the app once a good part of the output is out, and start it
	// again on the same state directory.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for restarted := false; !restarted; {
		select {
		case err := <-done:
			t.Fatal("app stopped:", err)
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-tick.C:
			ends, err := adm.ListEndOffsets(ctx, orders.TopicPortfolio)
			if err != nil {
				continue
			}
			var out int64
			ends.Each(func(o kadm.ListedOffset) { out += o.Offset })
			if out >= 20000 {
				stop(app, done)
				app, done = start()
				restarted = true
			}
		}
	}
	if err := <-produced; err != nil {
		t.Fatal("produce:", err)
	}
	if err := orders.WaitProcessed(ctx, cl, orders.AppID, orders.SourceTopics(orders.AppID)); err != nil {
		t.Fatal(err)
	}
	stop(app, done)

	in, err := orders.ReadInputs(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	want, st := orders.Evaluate(in)
	if st.Events != gen.Events() || st.Dropped == 0 || in.Undecodable != 0 {
		t.Fatalf("inputs: %+v, %d undecodable", st, in.Undecodable)
	}
	got, err := orders.ReadPortfolioTopic(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if diff := orders.Diff(want, got); len(diff) > 0 {
		t.Fatalf("order-portfolio differs from the model for %d of %d customers:\n%v", len(diff), len(want), diff[:min(10, len(diff))])
	}
	t.Logf("%d events, %d dropped by the join, %d lines, %d customers: portfolio equals the model", st.Events, st.Dropped, st.Lines, len(want))
}
