package state

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func testEnv(tb testing.TB) *Env {
	tb.Helper()
	env := NewEnv(EnvOptions{CacheBytes: 32 << 20, Logger: slog.New(slog.DiscardHandler)})
	tb.Cleanup(func() { env.Close() })
	return env
}

func openPebble(tb testing.TB, env *Env, dir string) DB {
	tb.Helper()
	db, err := env.Open(dir)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// dbKinds are the implementations every DB test runs against.
var dbKinds = []struct {
	name string
	open func(t *testing.T) DB
}{
	{"pebble", func(t *testing.T) DB { return openPebble(t, testEnv(t), filepath.Join(t.TempDir(), "db")) }},
	{"memory", func(t *testing.T) DB { db := NewMemory(); t.Cleanup(func() { db.Close() }); return db }},
}

func forEachDB(t *testing.T, fn func(t *testing.T, db DB)) {
	for _, k := range dbKinds {
		t.Run(k.name, func(t *testing.T) { fn(t, k.open(t)) })
	}
}

func apply(t testing.TB, db DB, cp *Checkpoint, ms ...Mutation) {
	t.Helper()
	var w WriteSet
	for _, m := range ms {
		if m.Deleted {
			w.Delete(m.Store, m.Key)
		} else {
			w.Put(m.Store, m.Key, m.Value)
		}
	}
	if err := db.Apply(&w, cp, false); err != nil {
		t.Fatal(err)
	}
}

func put(store, key, value string) Mutation {
	return Mutation{Store: store, Key: []byte(key), Value: []byte(value)}
}

func del(store, key string) Mutation {
	return Mutation{Store: store, Key: []byte(key), Deleted: true}
}

type kv struct{ k, v string }

func scan(t testing.TB, r interface {
	NewIter(string, []byte, []byte) (Iterator, error)
}, store string, lower, upper []byte) []kv {
	t.Helper()
	it, err := r.NewIter(store, lower, upper)
	if err != nil {
		t.Fatal(err)
	}
	var got []kv
	for it.Next() {
		got = append(got, kv{string(it.Key()), string(it.Value())})
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return got
}

func mustGet(t testing.TB, r interface {
	Get(string, []byte) ([]byte, bool, error)
}, store, key string) (string, bool) {
	t.Helper()
	v, ok, err := r.Get(store, []byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return string(v), ok
}

func TestGetPutDelete(t *testing.T) {
	type want struct {
		key, value string
		ok         bool
	}
	tests := []struct {
		name string
		ops  []Mutation
		want []want
	}{
		{"absent", nil, []want{{"k", "", false}}},
		{"put", []Mutation{put("s", "k", "v")}, []want{{"k", "v", true}}},
		{"overwrite", []Mutation{put("s", "k", "v1"), put("s", "k", "v2")}, []want{{"k", "v2", true}}},
		{"delete", []Mutation{put("s", "k", "v"), del("s", "k")}, []want{{"k", "", false}}},
		{"delete absent", []Mutation{del("s", "k")}, []want{{"k", "", false}}},
		{"put after delete", []Mutation{put("s", "k", "v"), del("s", "k"), put("s", "k", "w")}, []want{{"k", "w", true}}},
		{"empty value is present", []Mutation{{Store: "s", Key: []byte("k")}}, []want{{"k", "", true}}},
		{"empty key", []Mutation{put("s", "", "v")}, []want{{"", "v", true}, {"\x00", "", false}}},
		{"binary keys", []Mutation{put("s", "\x00\xff", "a"), put("s", "\xff", "b")}, []want{{"\x00\xff", "a", true}, {"\xff", "b", true}, {"\x00", "", false}}},
	}
	forEachDB(t, func(t *testing.T, db DB) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if err := db.Wipe(); err != nil {
					t.Fatal(err)
				}
				// Separate applies check that state carries over; one apply
				// checks that order within a WriteSet is kept.
				for _, m := range tt.ops {
					apply(t, db, nil, m)
				}
				check := func() {
					t.Helper()
					for _, w := range tt.want {
						v, ok := mustGet(t, db, "s", w.key)
						if v != w.value || ok != w.ok {
							t.Errorf("Get(%q) = %q, %v; want %q, %v", w.key, v, ok, w.value, w.ok)
						}
					}
				}
				check()
				if err := db.Wipe(); err != nil {
					t.Fatal(err)
				}
				apply(t, db, nil, tt.ops...)
				check()
			})
		}
	})
}

func TestGetReturnsCopy(t *testing.T) {
	forEachDB(t, func(t *testing.T, db DB) {
		val := []byte("value")
		apply(t, db, nil, Mutation{Store: "s", Key: []byte("k"), Value: val})
		val[0] = 'X' // the WriteSet retained it; the DB must have copied
		v, _, err := db.Get("s", []byte("k"))
		if err != nil {
			t.Fatal(err)
		}
		if string(v) != "value" {
			t.Fatalf("Get = %q after the caller changed its slice", v)
		}
		v[0] = 'Y'
		if v, _ := mustGet(t, db, "s", "k"); v != "value" {
			t.Fatalf("Get = %q after changing a returned slice", v)
		}
	})
}

func TestIterBounds(t *testing.T) {
	keys := []string{"", "\x00", "a", "aa", "ab", "b", "b\x00", "c", "\xff", "\xff\xff"}
	tests := []struct {
		lower, upper []byte
		want         []string
	}{
		{nil, nil, keys},
		{[]byte("a"), nil, keys[2:]},
		{nil, []byte("b"), keys[:5]},
		{[]byte("a"), []byte("b"), []string{"a", "aa", "ab"}},
		// A prefix scan: [p, p+1).
		{[]byte("a"), []byte("b"), []string{"a", "aa", "ab"}},
		{[]byte("aa"), []byte("ab"), []string{"aa"}},
		{[]byte("b"), []byte("b\x00"), []string{"b"}},
		{[]byte("ab"), []byte("ab"), nil},
		{[]byte("c"), []byte("a"), nil},
		{[]byte("\xff"), nil, []string{"\xff", "\xff\xff"}},
		{[]byte(""), []byte("\x00"), []string{""}},
		{[]byte("zz"), nil, []string{"\xff", "\xff\xff"}},
		{[]byte("\xff\xff\x00"), nil, nil},
	}
	forEachDB(t, func(t *testing.T, db DB) {
		var ms []Mutation
		for _, k := range keys {
			ms = append(ms, put("s", k, "v"+k))
			// Neighbours that must never show up.
			ms = append(ms, put("r", k, "x"), put("t", k, "x"), put("ss", k, "x"))
		}
		apply(t, db, nil, ms...)
		for _, tt := range tests {
			got := scan(t, db, "s", tt.lower, tt.upper)
			var want []kv
			for _, k := range tt.want {
				want = append(want, kv{k, "v" + k})
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("[%q, %q): got %q, want %q", tt.lower, tt.upper, got, want)
			}
		}
	})
}

func TestStoreIsolation(t *testing.T) {
	long := strings.Repeat("x", 255)
	ff := strings.Repeat("\xff", 255)
	stores := []string{"a", "ab", "b", "\x00", "\x01a", long, long[:254], ff, ff[:254]}
	forEachDB(t, func(t *testing.T, db DB) {
		var ms []Mutation
		for _, s := range stores {
			// Keys that spell other stores' prefixes too.
			for _, k := range []string{"", "k", "b", "\x02ab", "\xff\xff"} {
				ms = append(ms, put(s, k, s+"/"+k))
			}
		}
		apply(t, db, &Checkpoint{Inputs: map[string]int64{"in/0": 1}}, ms...)
		for _, s := range stores {
			got := scan(t, db, s, nil, nil)
			want := []kv{{"", s + "/"}, {"\x02ab", s + "/\x02ab"}, {"b", s + "/b"}, {"k", s + "/k"}, {"\xff\xff", s + "/\xff\xff"}}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("store %q: got %q, want %q", s, got, want)
			}
			if v, ok := mustGet(t, db, s, "k"); !ok || v != s+"/k" {
				t.Errorf("store %q: Get = %q, %v", s, v, ok)
			}
		}
		apply(t, db, nil, del("a", "k"))
		if _, ok := mustGet(t, db, "ab", "k"); !ok {
			t.Error("delete in store a removed the key of store ab")
		}
	})
}

func TestInvalidStoreName(t *testing.T) {
	for _, name := range []string{"", strings.Repeat("x", 256)} {
		forEachDB(t, func(t *testing.T, db DB) {
			if _, _, err := db.Get(name, []byte("k")); !errors.Is(err, ErrInvalidStoreName) {
				t.Errorf("Get: %v", err)
			}
			if _, err := db.NewIter(name, nil, nil); !errors.Is(err, ErrInvalidStoreName) {
				t.Errorf("NewIter: %v", err)
			}
			var w WriteSet
			w.Put("ok", []byte("k"), []byte("v"))
			w.Put(name, []byte("k"), []byte("v"))
			if err := db.Apply(&w, &Checkpoint{}, false); !errors.Is(err, ErrInvalidStoreName) {
				t.Errorf("Apply: %v", err)
			}
			// Nothing of a failed Apply may land.
			if _, ok := mustGet(t, db, "ok", "k"); ok {
				t.Error("Apply partly applied")
			}
			if _, ok, _ := db.Checkpoint(); ok {
				t.Error("Apply stored the checkpoint")
			}
		})
	}
}

func TestCheckpoint(t *testing.T) {
	forEachDB(t, func(t *testing.T, db DB) {
		if _, ok, err := db.Checkpoint(); ok || err != nil {
			t.Fatalf("fresh DB: ok=%v err=%v", ok, err)
		}
		cp := Checkpoint{
			Changelogs: map[string]ChangelogPosition{"s": {Offset: 42, TopicID: [16]byte{1, 2, 3}}},
			Inputs:     map[string]int64{"orders/3": 7},
			Written:    time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC),
		}
		apply(t, db, &cp, put("s", "k", "v"))
		got, ok, err := db.Checkpoint()
		if err != nil || !ok || !reflect.DeepEqual(got, cp) {
			t.Fatalf("Checkpoint = %+v, %v, %v; want %+v", got, ok, err, cp)
		}
		// nil keeps the stored checkpoint.
		apply(t, db, nil, put("s", "k2", "v"))
		if got, ok, _ := db.Checkpoint(); !ok || !reflect.DeepEqual(got, cp) {
			t.Fatalf("Apply(nil) changed the checkpoint to %+v", got)
		}
		// The checkpoint is not a key of any store.
		for _, s := range []string{"s", "\x00", "checkpoint", "\x00checkpoint"} {
			for _, p := range scan(t, db, s, nil, nil) {
				if strings.Contains(p.v, "offset") {
					t.Fatalf("store %q shows the checkpoint", s)
				}
			}
		}
		cp2 := Checkpoint{Inputs: map[string]int64{"orders/3": 9}}
		if err := db.Apply(nil, &cp2, true); err != nil {
			t.Fatal(err)
		}
		if got, _, _ := db.Checkpoint(); !reflect.DeepEqual(got, cp2) {
			t.Fatalf("Checkpoint = %+v, want %+v", got, cp2)
		}
	})
}

// TestCheckpointAtomic checks that readers never see the data of an Apply
// without its checkpoint or the other way round.
func TestCheckpointAtomic(t *testing.T) {
	forEachDB(t, func(t *testing.T, db DB) {
		const n = 200
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; i <= n; i++ {
				cp := Checkpoint{Inputs: map[string]int64{"in": int64(i)}}
				v := fmt.Append(nil, i)
				var w WriteSet
				w.Put("a", []byte("k"), v)
				w.Put("b", []byte("k"), v)
				if err := db.Apply(&w, &cp, false); err != nil {
					t.Error(err)
					return
				}
			}
		}()
		for done := false; !done; {
			// Read data before the checkpoint: the checkpoint can only have
			// moved ahead since, never be behind the data.
			a, _ := mustGet(t, db, "a", "k")
			b, _ := mustGet(t, db, "b", "k")
			cp, _, err := db.Checkpoint()
			if err != nil {
				t.Fatal(err)
			}
			var ai, bi int
			fmt.Sscan(a, &ai)
			fmt.Sscan(b, &bi)
			if bi < ai || cp.Inputs["in"] < int64(bi) {
				t.Fatalf("a=%d b=%d checkpoint=%d", ai, bi, cp.Inputs["in"])
			}
			done = cp.Inputs["in"] == n
		}
		wg.Wait()
	})
}

func TestPebbleReopen(t *testing.T) {
	env := testEnv(t)
	dir := filepath.Join(t.TempDir(), "task")
	db, err := env.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	cp := Checkpoint{Changelogs: map[string]ChangelogPosition{"s": {Offset: 10}}}
	apply(t, db, nil, put("s", "a", "1"), put("t", "a", "2"))
	if err := db.Apply(&WriteSet{Mutations: []Mutation{put("s", "b", "3")}}, &cp, true); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("dir mode %v, want 0700", perm)
	}

	db = openPebble(t, env, dir)
	if got, ok, err := db.Checkpoint(); err != nil || !ok || !reflect.DeepEqual(got, cp) {
		t.Fatalf("Checkpoint after reopen = %+v, %v, %v", got, ok, err)
	}
	if got, want := scan(t, db, "s", nil, nil), []kv{{"a", "1"}, {"b", "3"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("store s after reopen: %q, want %q", got, want)
	}
	if db.ApproximateSize() <= 0 {
		t.Error("ApproximateSize of a non-empty DB is 0")
	}
}

func TestPebbleCorruptCheckpoint(t *testing.T) {
	db := openPebble(t, testEnv(t), t.TempDir())
	p := db.(*pebbleDB)
	if err := p.db.Set(checkpointKey, []byte("{not json"), nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.Checkpoint(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Checkpoint: %v, want ErrCorrupt", err)
	}
}

func TestWipe(t *testing.T) {
	forEachDB(t, func(t *testing.T, db DB) {
		apply(t, db, &Checkpoint{Inputs: map[string]int64{"x": 1}}, put("a", "k", "v"), put("b", "k", "v"))
		wipeEndsIter(t, db)
		if _, ok, err := db.Checkpoint(); ok || err != nil {
			t.Errorf("checkpoint after Wipe: ok=%v err=%v", ok, err)
		}
		for _, s := range []string{"a", "b"} {
			if got := scan(t, db, s, nil, nil); len(got) != 0 {
				t.Errorf("store %s after Wipe: %q", s, got)
			}
		}
		// Still usable.
		apply(t, db, &Checkpoint{}, put("a", "k2", "v2"))
		if v, ok := mustGet(t, db, "a", "k2"); !ok || v != "v2" {
			t.Errorf("Get after Wipe = %q, %v", v, ok)
		}
		if _, ok, _ := db.Checkpoint(); !ok {
			t.Error("no checkpoint after Wipe and Apply")
		}
	})
}

func TestPebbleWipeLeavesNoFiles(t *testing.T) {
	env := testEnv(t)
	dir := filepath.Join(t.TempDir(), "task")
	db := openPebble(t, env, dir)
	apply(t, db, nil, put("a", "k", "v"))
	if err := db.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := db.Wipe(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir + wipeSuffix); !os.IsNotExist(err) {
		t.Errorf("old files left behind: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// A crash during Wipe leaves the moved-aside directory; Open removes it.
	if err := os.MkdirAll(dir+wipeSuffix, 0o700); err != nil {
		t.Fatal(err)
	}
	db = openPebble(t, env, dir)
	if _, err := os.Stat(dir + wipeSuffix); !os.IsNotExist(err) {
		t.Errorf("Open left the wipe leftover: %v", err)
	}
	if _, ok := mustGet(t, db, "a", "k"); ok {
		t.Error("wiped key came back")
	}
}

func TestClosed(t *testing.T) {
	forEachDB(t, func(t *testing.T, db DB) {
		apply(t, db, nil, put("s", "k", "v"))
		it, err := db.NewIter("s", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if it.Next() || !errors.Is(it.Err(), ErrClosed) {
			t.Errorf("iterator after Close: %v", it.Err())
		}
		if err := it.Close(); err != nil {
			t.Errorf("closing an iterator of a closed DB: %v", err)
		}
		checks := map[string]error{
			"Close": db.Close(),
			"Sync":  db.Sync(),
			"Wipe":  db.Wipe(),
			"Apply": db.Apply(&WriteSet{}, nil, false),
		}
		_, _, checks["Get"] = db.Get("s", []byte("k"))
		_, checks["NewIter"] = db.NewIter("s", nil, nil)
		_, _, checks["Checkpoint"] = db.Checkpoint()
		for op, err := range checks {
			if !errors.Is(err, ErrClosed) {
				t.Errorf("%s after Close: %v", op, err)
			}
		}
		if n := db.ApproximateSize(); n != 0 {
			t.Errorf("ApproximateSize after Close = %d", n)
		}
	})
}

func TestEnvClosed(t *testing.T) {
	env := NewEnv(EnvOptions{Logger: slog.New(slog.DiscardHandler)})
	db, err := env.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Close(); err != nil {
		t.Fatal(err)
	}
	// A DB outlives the Env's references to the shared caches, even
	// through the reopen of a Wipe.
	apply(t, db, nil, put("s", "k", "v"))
	if v, _ := mustGet(t, db, "s", "k"); v != "v" {
		t.Fatalf("Get = %q", v)
	}
	if err := db.Wipe(); err != nil {
		t.Fatal(err)
	}
	apply(t, db, nil, put("s", "k", "w"))
	if v, _ := mustGet(t, db, "s", "k"); v != "w" {
		t.Fatalf("Get after Wipe = %q", v)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Open(t.TempDir()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Open after Close: %v", err)
	}
	if err := env.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestEnvSharesCache(t *testing.T) {
	env := testEnv(t)
	var dbs []DB
	for i := range 4 {
		db := openPebble(t, env, filepath.Join(t.TempDir(), fmt.Sprint(i)))
		apply(t, db, nil, put("s", "k", fmt.Sprint(i)))
		dbs = append(dbs, db)
	}
	for i, db := range dbs {
		if v, _ := mustGet(t, db, "s", "k"); v != fmt.Sprint(i) {
			t.Errorf("db %d: Get = %q", i, v)
		}
		if p := db.(*pebbleDB); p.db.Metrics().BlockCache.Size > 32<<20 {
			t.Errorf("db %d: block cache larger than the Env's", i)
		}
	}
}

func TestIterSnapshot(t *testing.T) {
	forEachDB(t, func(t *testing.T, db DB) {
		apply(t, db, nil, put("s", "a", "1"), put("s", "b", "2"), put("s", "c", "3"))
		it, err := db.NewIter("s", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer it.Close()
		if !it.Next() || string(it.Key()) != "a" {
			t.Fatalf("first key %q", it.Key())
		}
		apply(t, db, nil, del("s", "b"), put("s", "bb", "x"), put("s", "c", "changed"))
		var got []kv
		for it.Next() {
			got = append(got, kv{string(it.Key()), string(it.Value())})
		}
		if want := []kv{{"b", "2"}, {"c", "3"}}; !reflect.DeepEqual(got, want) {
			t.Errorf("iterator saw later writes: %q", got)
		}
		if got := scan(t, db, "s", nil, nil); !reflect.DeepEqual(got, []kv{{"a", "1"}, {"bb", "x"}, {"c", "changed"}}) {
			t.Errorf("new iterator: %q", got)
		}
	})
}

// TestConcurrentReaders runs readers against a writer, for the race
// detector and for Close under readers.
func TestConcurrentReaders(t *testing.T) {
	forEachDB(t, func(t *testing.T, db DB) {
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, _, err := db.Get("s", []byte("k0")); err != nil {
						if !errors.Is(err, ErrClosed) {
							t.Error(err)
						}
						return
					}
					it, err := db.NewIter("s", nil, nil)
					if err != nil {
						if !errors.Is(err, ErrClosed) {
							t.Error(err)
						}
						return
					}
					prev := []byte(nil)
					for it.Next() {
						if prev != nil && bytes.Compare(prev, it.Key()) >= 0 {
							t.Errorf("out of order: %q then %q", prev, it.Key())
						}
						prev = append(prev[:0], it.Key()...)
					}
					if err := it.Err(); err != nil && !errors.Is(err, ErrClosed) {
						t.Error(err)
					}
					it.Close()
					db.ApproximateSize()
				}
			}()
		}
		for i := range 300 {
			var w WriteSet
			for j := range 10 {
				w.Put("s", fmt.Appendf(nil, "k%d", (i*7+j)%50), fmt.Append(nil, i))
			}
			w.Delete("s", fmt.Appendf(nil, "k%d", i%50))
			if err := db.Apply(&w, &Checkpoint{Inputs: map[string]int64{"in": int64(i)}}, false); err != nil {
				t.Fatal(err)
			}
			if i == 150 {
				if err := db.Wipe(); err != nil {
					t.Fatal(err)
				}
			}
		}
		// Close while readers may still be running.
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		close(stop)
		wg.Wait()
	})
}

func TestPebbleLoggerFatalPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Fatalf returned")
		}
	}()
	pebbleLogger{slog.New(slog.DiscardHandler)}.Fatalf("boom %d", 1)
}

// TestPebbleBulkLoad fills a DB in bulk load mode across several memtable
// flushes and checks that reads, the checkpoint, Sync, Wipe and Close keep
// their meaning in it and after it.
func TestPebbleBulkLoad(t *testing.T) {
	env := NewEnv(EnvOptions{CacheBytes: 32 << 20, MemTableSize: 1 << 20, BulkLoadBytes: 2 << 20, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { env.Close() })
	dir := filepath.Join(t.TempDir(), "task")
	db := openPebble(t, env, dir)
	bl, ok := db.(BulkLoader)
	if !ok {
		t.Fatal("a Pebble DB does not implement BulkLoader")
	}
	apply(t, db, nil, put("s", "old", "x"))
	if err := bl.BeginBulkLoad(); err != nil {
		t.Fatal(err)
	}
	if err := bl.BeginBulkLoad(); err != nil { // a no-op
		t.Fatal(err)
	}
	if v, ok := mustGet(t, db, "s", "old"); !ok || v != "x" {
		t.Fatalf("data written before BeginBulkLoad: %q, %v", v, ok)
	}
	// Wipe keeps the mode; the load starts from an empty DB.
	if err := db.Wipe(); err != nil {
		t.Fatal(err)
	}
	if _, ok := mustGet(t, db, "s", "old"); ok {
		t.Fatal("Wipe in bulk load mode kept a key")
	}

	const n = 40_000 // ~6 MiB of writes: several bulk memtables
	load := func(db DB, from, to int) {
		var w WriteSet
		for i := from; i < to; i++ {
			w.Put("s", fmt.Appendf(nil, "k%07d", (i*7919)%n), fmt.Appendf(nil, "value-%d-%0100d", i, 0))
			if w.Len() == 1000 || i == to-1 {
				cp := Checkpoint{Changelogs: map[string]ChangelogPosition{"s": {Offset: int64(i + 1)}}}
				if err := db.Apply(&w, &cp, false); err != nil {
					t.Fatal(err)
				}
				w.Reset()
			}
		}
	}
	load(db, 0, n/2)
	check := func(db DB, upTo int) {
		t.Helper()
		for i := 0; i < upTo; i += 997 {
			want := fmt.Sprintf("value-%d-%0100d", i, 0)
			if v, ok := mustGet(t, db, "s", fmt.Sprintf("k%07d", (i*7919)%n)); !ok || v != want {
				t.Fatalf("key of record %d: %q, %v", i, v, ok)
			}
		}
		cp, ok, err := db.Checkpoint()
		if err != nil || !ok || cp.Changelogs["s"].Offset != int64(upTo) {
			t.Fatalf("checkpoint %+v, %v, %v; want offset %d", cp, ok, err, upTo)
		}
	}
	check(db, n/2)
	if err := db.Sync(); err != nil {
		t.Fatal(err)
	}
	// Close in bulk load mode keeps what was applied, though there is no WAL.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openPebble(t, env, dir)
	check(db, n/2)
	bl = db.(BulkLoader)
	if err := bl.BeginBulkLoad(); err != nil {
		t.Fatal(err)
	}
	load(db, n/2, n)
	if err := bl.EndBulkLoad(); err != nil {
		t.Fatal(err)
	}
	if err := bl.EndBulkLoad(); err != nil { // a no-op
		t.Fatal(err)
	}
	check(db, n)
	if got := len(scan(t, db, "s", nil, nil)); got != n {
		t.Fatalf("store holds %d keys, want %d", got, n)
	}
	// Back in normal mode, synced writes survive a reopen as usual.
	apply(t, db, nil, put("t", "after", "1"))
	if err := db.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openPebble(t, env, dir)
	check(db, n)
	if v, ok := mustGet(t, db, "t", "after"); !ok || v != "1" {
		t.Fatalf("write after EndBulkLoad: %q, %v", v, ok)
	}
}

// wipeEndsIter wipes db with an iterator open and checks that the wipe
// ended it.
func wipeEndsIter(t *testing.T, db DB) {
	t.Helper()
	it, err := db.NewIter("a", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Wipe(); err != nil {
		t.Fatal(err)
	}
	if it.Next() || !errors.Is(it.Err(), ErrClosed) {
		t.Errorf("iterator across Wipe: err %v", it.Err())
	}
	if err := it.Close(); err != nil {
		t.Error(err)
	}
}
