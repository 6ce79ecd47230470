package orders

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestWaitProcessed(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	b, cl := startBroker(t)
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, 2, -1, nil, "plain"); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateTopic(ctx, 2, -1, nil, "txn"); err != nil {
		t.Fatal(err)
	}
	topics := []string{"plain", "txn"}

	// Not there yet: a missing topic and a group without commits.
	short := func() error {
		c, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		defer cancel()
		return WaitProcessed(c, cl, "g", append(topics, "missing"))
	}
	if err := short(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("missing topic: %v", err)
	}
	// Empty topics need no commit.
	if err := WaitProcessed(ctx, cl, "g", topics); err != nil {
		t.Fatal(err)
	}

	// Plain records, and a committed and an aborted transaction.
	for i := range 10 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "plain", Key: []byte(OrderID(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	ends, err := adm.ListEndOffsets(ctx, "plain")
	if err != nil {
		t.Fatal(err)
	}
	end0, _ := ends.Lookup("plain", 0)
	end1, _ := ends.Lookup("plain", 1)
	if end0.Offset == 0 || end1.Offset == 0 {
		t.Fatalf("ends %d %d: want records in both partitions", end0.Offset, end1.Offset)
	}
	tx, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs()...), kgo.TransactionalID("t1"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	for _, commit := range []kgo.TransactionEndTry{kgo.TryCommit, kgo.TryAbort, kgo.TryCommit, kgo.TryAbort} {
		if err := tx.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for p := range int32(2) {
			if err := tx.ProduceSync(ctx, &kgo.Record{Topic: "txn", Partition: p, Value: []byte("x")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.EndTransaction(ctx, commit); err != nil {
			t.Fatal(err)
		}
	}
	// txn partitions now hold: data, commit marker, aborted data, abort
	// marker, data, commit marker, aborted data, abort marker (0..7).

	commit := func(topic string, p int32, at int64) {
		t.Helper()
		os := kadm.Offsets{}
		os.AddOffset(topic, p, at, -1)
		if err := adm.CommitAllOffsets(ctx, "g", os); err != nil {
			t.Fatal(err)
		}
	}
	commit("plain", 0, end0.Offset)
	commit("plain", 1, end1.Offset-1) // one record behind
	commit("txn", 0, 5)               // after the last data record: only markers and aborted data left
	commit("txn", 1, 4)               // before the last committed data record
	if err := short(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("lag left, but: %v", err)
	}
	commit("plain", 1, end1.Offset)
	if err := short(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("data left in txn/1, but: %v", err)
	}
	commit("txn", 1, 5)
	start := time.Now()
	if err := WaitProcessed(ctx, cl, "g", topics); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < waitSettle {
		t.Fatal("returned before the offsets were stable")
	}
}
