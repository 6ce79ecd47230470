package state

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// bulkEnv returns an Env whose bulk loads write 1 MiB chunks (the least),
// so that a few megabytes of writes make many tables.
func bulkEnv(t *testing.T) *Env {
	t.Helper()
	env := NewEnv(EnvOptions{CacheBytes: 32 << 20, BulkLoadBytes: 2 << 20, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { env.Close() })
	return env
}

// model is what a DB should hold: store → key → value.
type model map[string]map[string]string

func (m model) apply(ms []Mutation) {
	for _, mu := range ms {
		if m[mu.Store] == nil {
			m[mu.Store] = make(map[string]string)
		}
		if mu.Deleted {
			delete(m[mu.Store], string(mu.Key))
		} else {
			m[mu.Store][string(mu.Key)] = string(mu.Value)
		}
	}
}

func (m model) clone() model {
	c := make(model, len(m))
	for s, kvs := range m {
		c[s] = maps.Clone(kvs)
	}
	return c
}

var bulkStores = []string{"a", "bb", "c"}

// checkModel compares every store of db with m, and its checkpoint with
// offset.
func checkModel(t *testing.T, db DB, m model, offset int64) {
	t.Helper()
	for _, s := range bulkStores {
		var want []kv
		for _, k := range slices.Sorted(maps.Keys(m[s])) {
			want = append(want, kv{k, m[s][k]})
		}
		got := scan(t, db, s, nil, nil)
		if !slices.Equal(got, want) {
			t.Fatalf("store %q holds %d keys, want %d (first difference at %d)", s, len(got), len(want), firstDiff(got, want))
		}
	}
	// Point reads go another way than iterators.
	for _, s := range bulkStores {
		for k, v := range m[s] {
			if got, ok := mustGet(t, db, s, k); !ok || got != v {
				t.Fatalf("Get(%q, %q) = %q, %v; want %q", s, k, got, ok, v)
			}
			break
		}
	}
	cp, ok, err := db.Checkpoint()
	if err != nil || !ok || cp.Changelogs["a"].Offset != offset {
		t.Fatalf("checkpoint %+v, %v, %v; want offset %d", cp, ok, err, offset)
	}
}

func firstDiff(a, b []kv) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// bulkWriter applies random writes (puts, overwrites, deletes, empty
// values) over a small key space, each Apply with a checkpoint counting
// the Applies.
type bulkWriter struct {
	t       *testing.T
	rng     *rand.Rand
	m       model
	applies int64
}

func newBulkWriter(t *testing.T, seed uint64) *bulkWriter {
	return &bulkWriter{t: t, rng: rand.New(rand.NewPCG(seed, 1)), m: model{}}
}

func (w *bulkWriter) cp() *Checkpoint {
	return &Checkpoint{Changelogs: map[string]ChangelogPosition{"a": {Offset: w.applies}}}
}

// applyOne applies one random WriteSet of up to max writes.
func (w *bulkWriter) applyOne(db DB, max int) {
	w.t.Helper()
	n := 1 + w.rng.IntN(max)
	ms := make([]Mutation, 0, n)
	for range n {
		store := bulkStores[w.rng.IntN(len(bulkStores))]
		key := fmt.Sprintf("k%05d", w.rng.IntN(3000))
		switch r := w.rng.IntN(10); {
		case r < 3:
			ms = append(ms, del(store, key))
		case r == 3:
			ms = append(ms, Mutation{Store: store, Key: []byte(key), Value: []byte{}})
		default:
			ms = append(ms, put(store, key, fmt.Sprintf("v%d-%0*d", w.applies, w.rng.IntN(300), 0)))
		}
	}
	w.applies++
	apply(w.t, db, w.cp(), ms...)
	w.m.apply(ms)
}

// TestBulkLoadMatchesModel loads random writes in bulk load mode across
// many tables, into an empty DB and then into a DB with data, and checks
// that reads during the load, after EndBulkLoad, and after Close in either
// mode see exactly what was applied, with its checkpoint.
func TestBulkLoadMatchesModel(t *testing.T) {
	env := bulkEnv(t)
	dir := filepath.Join(t.TempDir(), "task")
	db := openPebble(t, env, dir)
	bl := db.(BulkLoader)
	if err := bl.BeginBulkLoad(); err != nil {
		t.Fatal(err)
	}
	w := newBulkWriter(t, 1)
	for i := range 200 { // ~6 MiB: several chunks
		w.applyOne(db, 300)
		if i%70 == 69 {
			// Reads in bulk load mode see every write applied.
			checkModel(t, db, w.m, w.applies)
		}
	}
	if err := bl.EndBulkLoad(); err != nil {
		t.Fatal(err)
	}
	checkModel(t, db, w.m, w.applies)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openPebble(t, env, dir)
	checkModel(t, db, w.m, w.applies)

	// A load into a DB with data keeps its deletes from the first chunk on.
	bl = db.(BulkLoader)
	if err := bl.BeginBulkLoad(); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		w.applyOne(db, 300)
	}
	// Close in bulk load mode keeps every applied write.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openPebble(t, env, dir)
	checkModel(t, db, w.m, w.applies)
	// Normal writes go on as usual.
	w.applyOne(db, 10)
	checkModel(t, db, w.m, w.applies)
}

// TestBulkLoadOverwritesAndDeletes checks the last-write-wins rules inside
// a chunk and across chunks: a delete in a later chunk hides the key of an
// earlier one, a put after a delete brings it back, and a delete of a key
// never written is harmless.
func TestBulkLoadOverwritesAndDeletes(t *testing.T) {
	env := bulkEnv(t)
	db := openPebble(t, env, filepath.Join(t.TempDir(), "task"))
	if err := db.(BulkLoader).BeginBulkLoad(); err != nil {
		t.Fatal(err)
	}
	cp := &Checkpoint{Changelogs: map[string]ChangelogPosition{"a": {Offset: 1}}}
	apply(t, db, cp,
		put("a", "same", "1"), put("a", "same", "2"), // overwritten in the chunk
		put("a", "gone", "x"), del("a", "gone"), // deleted in the chunk
		del("a", "never"),                       // deleted, never written
		del("a", "back"), put("a", "back", "b"), // put after a delete
		put("a", "later", "x"), put("a", "revive", "r"),
	)
	if err := db.Sync(); err != nil { // the first chunk is ingested
		t.Fatal(err)
	}
	cp.Changelogs["a"] = ChangelogPosition{Offset: 2}
	apply(t, db, cp,
		del("a", "later"),                               // deletes a key of the first chunk
		del("a", "revive"), put("a", "revive", "again"), // and puts it back
		put("a", "same", "3"),
		del("a", "never2"),
	)
	want := []kv{{"back", "b"}, {"revive", "again"}, {"same", "3"}}
	if got := scan(t, db, "a", nil, nil); !slices.Equal(got, want) {
		t.Fatalf("in bulk load mode: %v, want %v", got, want)
	}
	if err := db.(BulkLoader).EndBulkLoad(); err != nil {
		t.Fatal(err)
	}
	if got := scan(t, db, "a", nil, nil); !slices.Equal(got, want) {
		t.Fatalf("after the load: %v, want %v", got, want)
	}
	if got, _, _ := db.Checkpoint(); got.Changelogs["a"].Offset != 2 {
		t.Fatalf("checkpoint %+v", got)
	}
}

// TestBulkLoadCrash copies the files of a DB in the middle of a load, as a
// crash would leave them, and checks that the copy holds a prefix of the
// Applies with the checkpoint of the last one: the chunks ingested so far,
// without the writes still buffered. Tables a crash left before their
// ingestion are deleted by Open.
func TestBulkLoadCrash(t *testing.T) {
	env := bulkEnv(t)
	base := t.TempDir()
	dir := filepath.Join(base, "task")
	db := openPebble(t, env, dir)
	pdb := db.(*pebbleDB)
	if err := pdb.BeginBulkLoad(); err != nil {
		t.Fatal(err)
	}
	w := newBulkWriter(t, 2)
	var sealed model
	var sealedAt int64
	crashes := 0
	for i := 0; crashes < 3 && i < 1000; i++ {
		w.applyOne(db, 300)
		if pdb.bl.cur.empty() {
			// This Apply sealed the chunk: it is durable once built.
			sealed, sealedAt = w.m.clone(), w.applies
			continue
		}
		if sealed == nil || i%37 != 0 {
			continue
		}
		// Some writes are buffered past the last sealed chunk. Let its
		// build end, then take the files as they are.
		pdb.wmu.Lock()
		err := pdb.bl.wait()
		crashDir := filepath.Join(base, fmt.Sprintf("crash%d", crashes))
		if err == nil {
			err = copyFiles(dir, crashDir)
		}
		pdb.wmu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		leftover := filepath.Join(crashDir, bulkFilePrefix+"000999.sst")
		if err := os.WriteFile(leftover, []byte("partial table"), 0o600); err != nil {
			t.Fatal(err)
		}
		crashed := openPebble(t, env, crashDir)
		if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("leftover table of a crashed load: %v", err)
		}
		checkModel(t, crashed, sealed, sealedAt)
		if err := crashed.Close(); err != nil {
			t.Fatal(err)
		}
		crashes++
	}
	if crashes < 3 {
		t.Fatalf("only %d crash points", crashes)
	}
	if err := pdb.EndBulkLoad(); err != nil {
		t.Fatal(err)
	}
	checkModel(t, db, w.m, w.applies)
}

func copyFiles(src, dst string) error {
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		if err := copyFile(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	return errors.Join(err, out.Close())
}

// TestBulkLoadIngestFailure makes the writing of a table fail: the load
// stops with the error, nothing after the lost chunk is applied, and
// EndBulkLoad reports it and leaves a usable DB holding the writes before
// the lost chunk, with their checkpoint.
func TestBulkLoadIngestFailure(t *testing.T) {
	env := bulkEnv(t)
	dir := filepath.Join(t.TempDir(), "task")
	db := openPebble(t, env, dir)
	pdb := db.(*pebbleDB)
	if err := pdb.BeginBulkLoad(); err != nil {
		t.Fatal(err)
	}
	w := newBulkWriter(t, 3)
	w.applyOne(db, 100)
	if err := db.Sync(); err != nil {
		t.Fatal(err)
	}
	before, beforeAt := w.m.clone(), w.applies
	// The next table's name is taken by a directory that cannot be
	// removed.
	next := filepath.Join(dir, fmt.Sprintf("%s%06d.sst", bulkFilePrefix, pdb.bl.files+1))
	if err := os.Mkdir(next, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(next, "f"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	w.applyOne(db, 100)
	if err := db.Sync(); err == nil {
		t.Fatal("Sync succeeded though the table could not be written")
	}
	var ws WriteSet
	ws.Put("a", []byte("k"), []byte("v"))
	if err := db.Apply(&ws, nil, false); err == nil {
		t.Fatal("Apply after a lost chunk succeeded")
	}
	if _, _, err := db.Get("a", []byte("k")); err == nil {
		t.Fatal("Get in a failed load succeeded")
	}
	if err := pdb.EndBulkLoad(); err == nil {
		t.Fatal("EndBulkLoad did not report the lost chunk")
	}
	checkModel(t, db, before, beforeAt)
	w.m = before
	w.applyOne(db, 10)
	checkModel(t, db, w.m, w.applies)
}

// TestBulkLoadWipe wipes a DB in bulk load mode after tables were ingested
// and loads it again: the mode stays, and deletes of the new load cannot
// bring back anything of the old one.
func TestBulkLoadWipe(t *testing.T) {
	env := bulkEnv(t)
	db := openPebble(t, env, filepath.Join(t.TempDir(), "task"))
	bl := db.(BulkLoader)
	if err := bl.BeginBulkLoad(); err != nil {
		t.Fatal(err)
	}
	w := newBulkWriter(t, 4)
	for range 50 {
		w.applyOne(db, 300)
	}
	wipeEndsIter(t, db)
	if _, ok, _ := db.Checkpoint(); ok {
		t.Fatal("Wipe kept the checkpoint")
	}
	w.m = model{}
	for range 50 {
		w.applyOne(db, 300)
	}
	if err := bl.EndBulkLoad(); err != nil {
		t.Fatal(err)
	}
	checkModel(t, db, w.m, w.applies)
}

// TestWipeEmpty wipes a DB that holds nothing, which keeps its Pebble
// instance but still ends its iterators.
func TestWipeEmpty(t *testing.T) {
	db := openPebble(t, testEnv(t), filepath.Join(t.TempDir(), "task"))
	wipeEndsIter(t, db)
	apply(t, db, nil, put("a", "k", "v"))
	if v, ok := mustGet(t, db, "a", "k"); !ok || v != "v" {
		t.Fatalf("after Wipe: %q, %v", v, ok)
	}
}

// TestBulkLoadShare checks that the DBs loading at once share
// BulkLoadBytes.
func TestBulkLoadShare(t *testing.T) {
	env := NewEnv(EnvOptions{BulkLoadBytes: 64 << 20, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { env.Close() })
	base := t.TempDir()
	var dbs []DB
	for i := range 4 {
		db := openPebble(t, env, filepath.Join(base, fmt.Sprint(i)))
		if err := db.(BulkLoader).BeginBulkLoad(); err != nil {
			t.Fatal(err)
		}
		dbs = append(dbs, db)
	}
	if got, want := env.bulkChunkBytes(), 8<<20; got != want {
		t.Fatalf("chunk of 4 loading DBs: %d, want %d", got, want)
	}
	if err := dbs[0].(BulkLoader).EndBulkLoad(); err != nil {
		t.Fatal(err)
	}
	if err := dbs[1].Close(); err != nil {
		t.Fatal(err)
	}
	if err := dbs[2].Wipe(); err != nil { // stays in bulk load mode
		t.Fatal(err)
	}
	if got, want := env.bulkChunkBytes(), 16<<20; got != want {
		t.Fatalf("chunk of 2 loading DBs: %d, want %d", got, want)
	}
	for _, db := range dbs[2:] {
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if n := env.bulkActive.Load(); n != 0 {
		t.Fatalf("%d DBs loading after all closed", n)
	}
}
