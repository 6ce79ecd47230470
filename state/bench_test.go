package state

import (
	"encoding/binary"
	"path/filepath"
	"testing"
)

// BenchmarkBatchRecord is the per-record cost of a stateful operator: a
// savepoint, a read of the current aggregate and a write of the new one.
func BenchmarkBatchRecord(b *testing.B) {
	for _, k := range []struct {
		name string
		open func(b *testing.B) DB
	}{
		{"memory", func(*testing.B) DB { return NewMemory() }},
		{"pebble", func(b *testing.B) DB { return openPebble(b, testEnv(b), filepath.Join(b.TempDir(), "db")) }},
	} {
		b.Run(k.name, func(b *testing.B) {
			batch := NewBatch(k.open(b))
			key := make([]byte, 16)
			value := make([]byte, 100)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				batch.Savepoint()
				binary.BigEndian.PutUint64(key, uint64(i%10000))
				if _, _, err := batch.Get("counts", key); err != nil {
					b.Fatal(err)
				}
				batch.Put("counts", key, value)
				i++
				// Commit like the runtime does, so the batch stays bounded.
				if i%10000 == 0 {
					if err := batch.Commit(nil, false); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkBatchPutGet isolates the batch overlay: every Get hits it.
func BenchmarkBatchPutGet(b *testing.B) {
	batch := NewBatch(NewMemory())
	key := make([]byte, 16)
	value := make([]byte, 100)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		batch.Savepoint()
		binary.BigEndian.PutUint64(key, uint64(i%1000))
		batch.Put("counts", key, value)
		if _, ok, _ := batch.Get("counts", key); !ok {
			b.Fatal("missing")
		}
		i++
	}
}

// BenchmarkPebbleApply1000 is the restore path: unsynced applies of
// 1000-record write sets.
func BenchmarkPebbleApply1000(b *testing.B) {
	db := openPebble(b, testEnv(b), filepath.Join(b.TempDir(), "db"))
	var w WriteSet
	keys := make([]byte, 1000*16)
	value := make([]byte, 100)
	cp := &Checkpoint{Changelogs: map[string]ChangelogPosition{"counts": {}}}
	b.ReportAllocs()
	b.SetBytes(1000 * (16 + 100))
	n := uint64(0)
	for b.Loop() {
		w.Reset()
		for j := range 1000 {
			k := keys[j*16 : j*16+16]
			binary.BigEndian.PutUint64(k, n)
			n++
			w.Put("counts", k, value)
		}
		cp.Changelogs["counts"] = ChangelogPosition{Offset: int64(n)}
		if err := db.Apply(&w, cp, false); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPebbleGet(b *testing.B) {
	db := openPebble(b, testEnv(b), filepath.Join(b.TempDir(), "db"))
	var w WriteSet
	const n = 10000
	for i := range n {
		w.Put("counts", binary.BigEndian.AppendUint64(nil, uint64(i)), make([]byte, 100))
	}
	if err := db.Apply(&w, nil, false); err != nil {
		b.Fatal(err)
	}
	key := make([]byte, 8)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		binary.BigEndian.PutUint64(key, uint64(i%n))
		if _, ok, err := db.Get("counts", key); !ok || err != nil {
			b.Fatal(ok, err)
		}
		i++
	}
}
