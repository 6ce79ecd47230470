package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/examples/orders/orders"
	"github.com/choreo-go/choreo/internal/testbroker"
	"github.com/choreo-go/choreo/runtime/replay"
)

func TestGenerateAndDiffVersions(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "orders.jsonl")
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"generate", "-o", path, "-events", "3000", "-partitions", "3"}, &out, &errOut); code != 0 {
		t.Fatalf("generate: exit %d: %s", code, errOut.String())
	}

	out.Reset()
	if code := run(ctx, []string{"diff", "-in", path, "-a", "orders", "-b", "orders"}, &out, &errOut); code != 0 {
		t.Fatalf("same version: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "no difference") {
		t.Errorf("same version:\n%s", out.String())
	}

	out.Reset()
	code := run(ctx, []string{"diff", "-in", path, "-a", "orders", "-b", "orders-truck-discount", "-limit", "0"}, &out, &errOut)
	if code != 1 {
		t.Fatalf("changed version: exit %d, want 1\n%s%s", code, out.String(), errOut.String())
	}
	report := out.String()
	// The discount changes the open value of customers with open truck
	// lines: their portfolio updates and stored portfolios, and the lines
	// store's truck prices. The counts of lines do not change.
	for _, want := range []string{"output order-portfolio key", "store portfolio key", "store lines key", `"family":"truck"`, "open_value_cents"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%.3000s", want, report)
		}
	}
	if strings.Contains(report, `"family":"car"`) {
		t.Errorf("a car line differs, only trucks were changed:\n%.3000s", report)
	}

	if code := run(ctx, []string{"diff", "-in", path, "-b", "nope"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "unknown version") {
		t.Errorf("unknown version: exit %d, %s", code, errOut.String())
	}
}

func TestRecordFromCluster(t *testing.T) {
	br, err := testbroker.Start(testbroker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(br.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for _, topic := range []string{orders.TopicProducts, orders.TopicOrderLines} {
		if _, err := adm.CreateTopic(ctx, 2, 1, nil, topic); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		r := &kgo.Record{Topic: orders.TopicOrderLines, Key: []byte{byte('a' + i)}, Value: []byte{0x80}}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "rec.jsonl")
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"record", "-brokers", strings.Join(br.Addrs(), ","), "-o", path}, &out, &errOut); code != 0 {
		t.Fatalf("record: exit %d: %s", code, errOut.String())
	}
	rec, err := replay.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Records) != 5 || rec.Partitions[orders.TopicProducts] != 2 || !strings.Contains(out.String(), "recorded 5 records") {
		t.Errorf("recording of %d records, partitions %v; output %q", len(rec.Records), rec.Partitions, out.String())
	}
}
