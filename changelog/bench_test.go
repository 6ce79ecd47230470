package changelog

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/state"
)

// BenchmarkRestore restores 1M records of about 100 bytes into an empty DB
// (Pebble, and in memory to see the restore loop without Pebble's flushes and
// compactions) and reports records/s.
func BenchmarkRestore(b *testing.B) {
	const n = 1_000_000
	e := newEnv(b)
	topic := TopicName("bench", "s")
	e.createTopic(topic, 1, nil)
	value := make([]byte, 84)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	recs := make([]*kgo.Record, 0, 10_000)
	for i := range n {
		recs = append(recs, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "key-%010d", i), Value: value})
		if len(recs) == cap(recs) {
			e.produceRecs(e.prod, recs)
			recs = recs[:0]
		}
	}

	env := state.NewEnv(state.EnvOptions{Logger: slog.New(slog.DiscardHandler)})
	defer env.Close()
	r := NewRestorer(e.restoreClient(true), e.adm, RestorerOptions{})
	runRestorer(b, r)
	sc := StoreChangelog{Store: "s", Topic: topic, Partition: 0}
	dir := b.TempDir()

	for _, kind := range []string{"pebble", "memory"} {
		b.Run(kind, func(b *testing.B) {
			var total int64
			var elapsed time.Duration
			i := 0
			for b.Loop() {
				db := state.NewMemory()
				if kind == "pebble" {
					var err error
					if db, err = env.Open(filepath.Join(dir, fmt.Sprint(i))); err != nil {
						b.Fatal(err)
					}
				}
				start := time.Now()
				res := restore(b, r, "t", db, sc)
				elapsed += time.Since(start)
				total += res.Total
				if res.Total != n {
					b.Fatalf("restored %d records, want %d", res.Total, n)
				}
				if err := db.Close(); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(total)/elapsed.Seconds(), "records/s")
		})
	}
}
