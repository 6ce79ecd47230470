package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func TestBatchReadYourWrites(t *testing.T) {
	forEachDB(t, func(t *testing.T, db DB) {
		apply(t, db, nil, put("s", "db", "old"), put("s", "gone", "x"))
		b := NewBatch(db)
		b.Put("s", []byte("new"), []byte("n"))
		b.Put("s", []byte("db"), []byte("updated"))
		b.Delete("s", []byte("gone"))
		b.Put("s", []byte("empty"), nil)

		tests := []struct {
			key, value string
			ok         bool
		}{
			{"new", "n", true},
			{"db", "updated", true},
			{"gone", "", false},
			{"empty", "", true},
			{"absent", "", false},
		}
		for _, tt := range tests {
			if v, ok := mustGet(t, b, "s", tt.key); v != tt.value || ok != tt.ok {
				t.Errorf("batch Get(%q) = %q, %v; want %q, %v", tt.key, v, ok, tt.value, tt.ok)
			}
		}
		// Nothing reached the DB yet.
		if v, _ := mustGet(t, db, "s", "db"); v != "old" {
			t.Errorf("DB saw an uncommitted write: %q", v)
		}
		if err := b.Commit(nil, true); err != nil {
			t.Fatal(err)
		}
		if b.Len() != 0 || b.Bytes() != 0 {
			t.Errorf("after Commit: Len %d, Bytes %d", b.Len(), b.Bytes())
		}
		for _, tt := range tests {
			if v, ok := mustGet(t, db, "s", tt.key); v != tt.value || ok != tt.ok {
				t.Errorf("DB Get(%q) = %q, %v; want %q, %v", tt.key, v, ok, tt.value, tt.ok)
			}
		}
	})
}

func TestBatchCopiesInputs(t *testing.T) {
	b := NewBatch(NewMemory())
	k, v := []byte("key"), []byte("value")
	b.Put("s", k, v)
	k[0], v[0] = 'X', 'X'
	if got, ok := mustGet(t, b, "s", "key"); !ok || got != "value" {
		t.Fatalf("Get = %q, %v", got, ok)
	}
}

func TestBatchSavepointRollback(t *testing.T) {
	type step struct {
		op         string // put, del, save, rollback, commit
		key, value string
	}
	type want struct {
		key, value string
		ok         bool
	}
	tests := []struct {
		name    string
		steps   []step
		want    []want
		wantLen int
	}{
		{
			name: "put then delete then rollback restores original",
			steps: []step{
				{op: "put", key: "k", value: "orig"}, {op: "save"},
				{op: "put", key: "k", value: "v2"}, {op: "del", key: "k"}, {op: "rollback"},
			},
			want:    []want{{"k", "orig", true}},
			wantLen: 1,
		},
		{
			name:    "rollback of a new key removes it",
			steps:   []step{{op: "save"}, {op: "put", key: "new", value: "v"}, {op: "rollback"}},
			want:    []want{{"new", "", false}, {"db", "committed", true}},
			wantLen: 0,
		},
		{
			name:    "rollback of a new key over a DB key uncovers the DB value",
			steps:   []step{{op: "save"}, {op: "del", key: "db"}, {op: "rollback"}},
			want:    []want{{"db", "committed", true}},
			wantLen: 0,
		},
		{
			name: "rollback keeps earlier records",
			steps: []step{
				{op: "save"}, {op: "put", key: "a", value: "1"},
				{op: "save"}, {op: "put", key: "b", value: "2"}, {op: "put", key: "a", value: "changed"}, {op: "rollback"},
			},
			want:    []want{{"a", "1", true}, {"b", "", false}},
			wantLen: 1,
		},
		{
			name: "rollback after commit is a no-op",
			steps: []step{
				{op: "save"}, {op: "put", key: "a", value: "1"}, {op: "commit"}, {op: "rollback"},
			},
			want:    []want{{"a", "1", true}},
			wantLen: 0,
		},
		{
			name: "rollback after commit undoes only later writes",
			steps: []step{
				{op: "save"}, {op: "put", key: "a", value: "1"}, {op: "commit"},
				{op: "put", key: "a", value: "2"}, {op: "put", key: "b", value: "2"}, {op: "rollback"},
			},
			want:    []want{{"a", "1", true}, {"b", "", false}},
			wantLen: 0,
		},
		{
			name: "second rollback returns to the same savepoint",
			steps: []step{
				{op: "put", key: "a", value: "1"}, {op: "save"},
				{op: "put", key: "a", value: "2"}, {op: "rollback"},
				{op: "put", key: "a", value: "3"}, {op: "put", key: "c", value: "3"}, {op: "rollback"},
			},
			want:    []want{{"a", "1", true}, {"c", "", false}},
			wantLen: 1,
		},
		{
			name: "many writes to one key in one record",
			steps: []step{
				{op: "put", key: "a", value: "1"}, {op: "save"},
				{op: "put", key: "a", value: "2"}, {op: "del", key: "a"}, {op: "put", key: "a", value: "4"}, {op: "rollback"},
			},
			want:    []want{{"a", "1", true}},
			wantLen: 1,
		},
		{
			name: "savepoint without writes",
			steps: []step{
				{op: "put", key: "a", value: "1"}, {op: "save"}, {op: "rollback"}, {op: "rollback"},
			},
			want:    []want{{"a", "1", true}},
			wantLen: 1,
		},
	}
	forEachDB(t, func(t *testing.T, db DB) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if err := db.Wipe(); err != nil {
					t.Fatal(err)
				}
				apply(t, db, nil, put("s", "db", "committed"))
				b := NewBatch(db)
				bytesAt := map[int]int{}
				for i, s := range tt.steps {
					switch s.op {
					case "put":
						b.Put("s", []byte(s.key), []byte(s.value))
					case "del":
						b.Delete("s", []byte(s.key))
					case "save":
						b.Savepoint()
						bytesAt[i] = b.Bytes()
					case "rollback":
						b.Rollback()
					case "commit":
						if err := b.Commit(nil, false); err != nil {
							t.Fatal(err)
						}
					}
				}
				for _, w := range tt.want {
					if v, ok := mustGet(t, b, "s", w.key); v != w.value || ok != w.ok {
						t.Errorf("Get(%q) = %q, %v; want %q, %v", w.key, v, ok, w.value, w.ok)
					}
				}
				if b.Len() != tt.wantLen {
					t.Errorf("Len = %d, want %d", b.Len(), tt.wantLen)
				}
			})
		}
	})
}

func TestBatchBytesRollback(t *testing.T) {
	b := NewBatch(NewMemory())
	b.Put("s", []byte("a"), []byte("1"))
	b.Savepoint()
	before := b.Bytes()
	b.Put("s", []byte("a"), []byte("a much longer value"))
	b.Put("s", []byte("b"), []byte("2"))
	if b.Bytes() <= before {
		t.Fatalf("Bytes did not grow: %d <= %d", b.Bytes(), before)
	}
	b.Rollback()
	if b.Bytes() != before {
		t.Fatalf("Bytes after Rollback = %d, want %d", b.Bytes(), before)
	}
}

// TestBatchBytesTracksMemory: Bytes is what callers bound to bound their
// memory, so it must follow the heap the pending writes really hold, for
// many small keys (bookkeeping dominates) and for rewritten values (the
// arena keeps every copy until the commit).
func TestBatchBytesTracksMemory(t *testing.T) {
	const n = 50_000
	b := NewBatch(NewMemory())
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	key, value := make([]byte, 10), make([]byte, 8)
	for i := range n {
		binary.BigEndian.PutUint64(key[2:], uint64(i))
		b.Put("counts", key, value)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := float64(after.HeapAlloc) - float64(before.HeapAlloc)
	if r := float64(b.Bytes()) / heap; r < 0.7 || r > 1.4 {
		t.Errorf("Bytes = %d for %d keys, the heap grew by %.0f: ratio %.2f, want within [0.7, 1.4]", b.Bytes(), n, heap, r)
	}
	runtime.KeepAlive(b)

	size := b.Bytes()
	b.Put("counts", key, make([]byte, 1000))
	b.Put("counts", key, make([]byte, 1000))
	if got := b.Bytes() - size; got < 2000 {
		t.Errorf("two 1000-byte rewrites of a key added %d to Bytes, want at least 2000 (both copies are held)", got)
	}
}

func TestBatchForEach(t *testing.T) {
	b := NewBatch(NewMemory())
	b.Put("s", []byte("z"), []byte("1"))
	b.Put("t", []byte("a"), []byte("2"))
	b.Put("s", []byte("a"), []byte("3"))
	b.Put("s", []byte("z"), []byte("4")) // dedup: keeps first position, latest value
	b.Delete("t", []byte("a"))
	b.Delete("s", []byte("gone"))
	b.Put("u", []byte("k"), nil)

	var got []string
	err := b.ForEach(func(m Mutation) error {
		got = append(got, fmt.Sprintf("%s/%s=%q,%v", m.Store, m.Key, m.Value, m.Deleted))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`s/z="4",false`, `t/a="",true`, `s/a="3",false`, `s/gone="",true`, `u/k="",false`}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ForEach:\n got %q\nwant %q", got, want)
	}
	if b.Len() != 5 {
		t.Errorf("Len = %d, want 5", b.Len())
	}

	stop := errors.New("stop")
	n := 0
	if err := b.ForEach(func(Mutation) error { n++; return stop }); err != stop || n != 1 {
		t.Errorf("ForEach did not stop at the first error: %v after %d", err, n)
	}
}

// failDB fails Apply while fail is set.
type failDB struct {
	DB
	fail bool
}

var errApply = errors.New("apply failed")

func (f *failDB) Apply(w *WriteSet, cp *Checkpoint, sync bool) error {
	if f.fail {
		return errApply
	}
	return f.DB.Apply(w, cp, sync)
}

func TestBatchCommitErrorKeepsWrites(t *testing.T) {
	db := &failDB{DB: NewMemory(), fail: true}
	b := NewBatch(db)
	b.Put("s", []byte("a"), []byte("1"))
	b.Savepoint()
	b.Delete("s", []byte("b"))
	n, size := b.Len(), b.Bytes()
	cp := &Checkpoint{Inputs: map[string]int64{"in": 5}}
	if err := b.Commit(cp, true); !errors.Is(err, errApply) {
		t.Fatalf("Commit: %v", err)
	}
	if b.Len() != n || b.Bytes() != size {
		t.Fatalf("after failed Commit: Len %d Bytes %d, want %d %d", b.Len(), b.Bytes(), n, size)
	}
	if v, ok := mustGet(t, b, "s", "a"); !ok || v != "1" {
		t.Fatalf("Get after failed Commit = %q, %v", v, ok)
	}
	// The savepoint survives too.
	b.Rollback()
	if b.Len() != 1 {
		t.Fatalf("Rollback after failed Commit: Len %d, want 1", b.Len())
	}
	db.fail = false
	if err := b.Commit(cp, true); err != nil {
		t.Fatal(err)
	}
	if v, ok := mustGet(t, db, "s", "a"); !ok || v != "1" {
		t.Fatalf("DB Get after retried Commit = %q, %v", v, ok)
	}
	if got, _, _ := db.Checkpoint(); got.Inputs["in"] != 5 {
		t.Fatalf("checkpoint after retried Commit: %+v", got)
	}
}

func TestBatchDiscard(t *testing.T) {
	db := NewMemory()
	apply(t, db, nil, put("s", "a", "db"))
	b := NewBatch(db)
	b.Put("s", []byte("a"), []byte("batch"))
	b.Put("s", []byte("b"), []byte("batch"))
	b.Discard()
	if b.Len() != 0 || b.Bytes() != 0 {
		t.Fatalf("after Discard: Len %d Bytes %d", b.Len(), b.Bytes())
	}
	if got := scan(t, b, "s", nil, nil); !reflect.DeepEqual(got, []kv{{"a", "db"}}) {
		t.Fatalf("after Discard: %q", got)
	}
	b.Rollback() // nothing to undo
	if b.Len() != 0 {
		t.Fatalf("Rollback after Discard: Len %d", b.Len())
	}
}

func TestBatchInvalidStoreName(t *testing.T) {
	b := NewBatch(NewMemory())
	for _, name := range []string{"", strings.Repeat("x", 256)} {
		if _, _, err := b.Get(name, []byte("k")); !errors.Is(err, ErrInvalidStoreName) {
			t.Errorf("Get: %v", err)
		}
		if _, err := b.NewIter(name, nil, nil); !errors.Is(err, ErrInvalidStoreName) {
			t.Errorf("NewIter: %v", err)
		}
		for op, fn := range map[string]func(){
			"Put":    func() { b.Put(name, []byte("k"), nil) },
			"Delete": func() { b.Delete(name, []byte("k")) },
		} {
			func() {
				defer func() {
					err, _ := recover().(error)
					if !errors.Is(err, ErrInvalidStoreName) {
						t.Errorf("%s: panic %v, want ErrInvalidStoreName", op, err)
					}
				}()
				fn()
			}()
		}
	}
	if b.Len() != 0 {
		t.Errorf("invalid writes were recorded: Len %d", b.Len())
	}
}

func TestBatchIterSnapshot(t *testing.T) {
	db := NewMemory()
	apply(t, db, nil, put("s", "a", "db"), put("s", "c", "db"))
	b := NewBatch(db)
	b.Put("s", []byte("b"), []byte("batch"))
	it, err := b.NewIter("s", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	b.Put("s", []byte("b"), []byte("later"))
	b.Put("s", []byte("bb"), []byte("later"))
	b.Delete("s", []byte("c"))
	var got []kv
	for it.Next() {
		got = append(got, kv{string(it.Key()), string(it.Value())})
	}
	if want := []kv{{"a", "db"}, {"b", "batch"}, {"c", "db"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// TestBatchMergedIterRandom checks the merged view of batch and DB against
// a model under random writes, savepoints, rollbacks and commits.
func TestBatchMergedIterRandom(t *testing.T) {
	forEachDB(t, func(t *testing.T, db DB) {
		rng := rand.New(rand.NewPCG(1, 2))
		stores := []string{"s", "t", "ss"}
		key := func() []byte {
			// A small alphabet makes collisions, prefixes and bounds hit.
			k := make([]byte, rng.IntN(4))
			for i := range k {
				k[i] = "ab\x00\xff"[rng.IntN(4)]
			}
			return k
		}
		type model map[string]map[string]string // store -> key -> value
		clone := func(m model) model {
			c := model{}
			for s, kv := range m {
				c[s] = map[string]string{}
				for k, v := range kv {
					c[s][k] = v
				}
			}
			return c
		}
		view := model{} // what the batch shows
		saved := clone(view)
		committed := clone(view)
		b := NewBatch(db)

		for step := range 4000 {
			s := stores[rng.IntN(len(stores))]
			switch r := rng.IntN(100); {
			case r < 45:
				k, v := key(), fmt.Sprint(step)
				b.Put(s, k, []byte(v))
				if view[s] == nil {
					view[s] = map[string]string{}
				}
				view[s][string(k)] = v
			case r < 70:
				k := key()
				b.Delete(s, k)
				delete(view[s], string(k))
			case r < 78:
				b.Savepoint()
				saved = clone(view)
			case r < 84:
				b.Rollback()
				view = clone(saved)
			case r < 88:
				if err := b.Commit(nil, false); err != nil {
					t.Fatal(err)
				}
				committed, saved = clone(view), clone(view)
			default:
				lower, upper := key(), key()
				if rng.IntN(4) == 0 {
					lower = nil
				}
				if rng.IntN(4) == 0 {
					upper = nil
				}
				var want []kv
				for k, v := range view[s] {
					if k >= string(lower) && (upper == nil || k < string(upper)) {
						want = append(want, kv{k, v})
					}
				}
				slices.SortFunc(want, func(x, y kv) int { return strings.Compare(x.k, y.k) })
				got := scan(t, b, s, lower, upper)
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("step %d: %s [%q, %q):\n got %q\nwant %q", step, s, lower, upper, got, want)
				}
				k := key()
				v, ok := mustGet(t, b, s, string(k))
				if wv, wok := view[s][string(k)]; v != wv || ok != wok {
					t.Fatalf("step %d: Get(%s, %q) = %q, %v; want %q, %v", step, s, k, v, ok, wv, wok)
				}
			}
		}
		// The DB holds exactly what was committed.
		for _, s := range stores {
			var want []kv
			for k, v := range committed[s] {
				want = append(want, kv{k, v})
			}
			slices.SortFunc(want, func(x, y kv) int { return strings.Compare(x.k, y.k) })
			if got := scan(t, db, s, nil, nil); !reflect.DeepEqual(got, want) {
				t.Fatalf("DB store %s:\n got %q\nwant %q", s, got, want)
			}
		}
	})
}

func TestBatchIterError(t *testing.T) {
	db := NewMemory()
	apply(t, db, nil, put("s", "a", "1"), put("s", "c", "3"))
	b := NewBatch(db)
	b.Put("s", []byte("b"), []byte("2"))
	it, err := b.NewIter("s", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !it.Next() || string(it.Key()) != "a" {
		t.Fatalf("first key %q", it.Key())
	}
	db.Close()
	for it.Next() {
	}
	if !errors.Is(it.Err(), ErrClosed) {
		t.Fatalf("Err = %v, want ErrClosed", it.Err())
	}
	it.Close()
}
