package orders

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/vmihailenco/msgpack/v5"
)

// storeValue encodes v as the runtime stores it: an 8-byte big-endian
// timestamp, then msgpack.
func storeValue(t *testing.T, ts int64, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return append(binary.BigEndian.AppendUint64(nil, uint64(ts)), b...)
}

func TestChangelogTopic(t *testing.T) {
	if got := ChangelogTopic(AppID, NamePortfolio); got != "orders-portfolio-changelog" {
		t.Fatal(got)
	}
	if got := ChangelogTopic(AppID, NameLines); got != "orders-lines-changelog" {
		t.Fatal(got)
	}
}

func TestReadTable(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	_, cl := startBroker(t)
	adm := kadm.NewClient(cl)
	topic := ChangelogTopic("t", NameLines)
	if _, err := adm.CreateTopic(ctx, 3, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	rec := func(p int32, key string, v []byte) *kgo.Record {
		return &kgo.Record{Topic: topic, Partition: p, Key: []byte(key), Value: v}
	}
	line := func(order string, seq int64, status string) PricedLine {
		return PricedLine{OrderID: order, LineNo: 1, CustomerID: "C1", Status: status, Seq: seq, UnitPriceCents: 100}
	}
	rs := []*kgo.Record{
		rec(0, "O1/1", storeValue(t, 10, line("O1", 1, StatusCreated))),
		rec(1, "O2/1", storeValue(t, 11, line("O2", 2, StatusCreated))),
		rec(0, "O1/1", storeValue(t, 12, line("O1", 3, StatusConfirmed))),
		rec(2, "O3/1", storeValue(t, 13, line("O3", 4, StatusCreated))),
		rec(2, "O3/1", nil), // deleted
	}
	cl2, err := kgo.NewClient(kgo.SeedBrokers(cl.OptValue(kgo.SeedBrokers).([]string)...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	if err := cl2.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	got, err := ReadTable[PricedLine](ctx, cl, topic)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]PricedLine{"O1/1": line("O1", 3, StatusConfirmed), "O2/1": line("O2", 2, StatusCreated)}
	if d := DiffLines(want, got); len(d) > 0 {
		t.Fatal(d)
	}

	// A key in two partitions, and a value without its timestamp, are errors.
	if err := cl2.ProduceSync(ctx, rec(1, "O1/1", storeValue(t, 14, line("O1", 5, StatusShipped)))).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadTable[PricedLine](ctx, cl, topic); err == nil {
		t.Fatal("no error for a key in two partitions")
	}
	short := ChangelogTopic("t", "short")
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, short); err != nil {
		t.Fatal(err)
	}
	if err := cl2.ProduceSync(ctx, &kgo.Record{Topic: short, Key: []byte("k"), Value: []byte{1, 2}}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadTable[PricedLine](ctx, cl, short); err == nil {
		t.Fatal("no error for a value without timestamp")
	}
}
