package state

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage"
	"github.com/cockroachdb/pebble/v2/sstable"
)

// Bulk load mode of a Pebble DB (see BulkLoader and the package
// documentation): Apply appends the writes to an in-memory chunk; a full
// chunk is sorted, written as an sstable and ingested into the DB by a
// goroutine of its own while the next chunk fills. Nothing goes through the
// memtable, so a load neither inserts into a skiplist nor flushes it, and
// chunks of keys that arrive in order (a table loaded key by key) land side
// by side in the last level, where no compaction ever rewrites them.
//
// Each ingestion is atomic and holds whole Applies only, with the
// checkpoint of the last one (in a second, one-key sstable of the same
// ingestion), so the DB never holds a write without the checkpoint applied
// with it, nor a checkpoint without the writes before it.

const (
	// DefaultBulkLoadBytes is the default of EnvOptions.BulkLoadBytes.
	DefaultBulkLoadBytes = 64 << 20
	// minBulkChunk is the smallest chunk a DB seals, however many DBs load
	// at once: smaller ones would make many small tables.
	minBulkChunk = 1 << 20
	// maxBulkChunk keeps the offsets of a chunk within 32 bits.
	maxBulkChunk = math.MaxUint32
	// bulkFilePrefix names the sstables a load writes in the DB's
	// directory before ingesting them. Pebble ignores files whose names it
	// does not know, and Open deletes those a crash left behind.
	bulkFilePrefix = "choreo-bulk-"
	// bulkEntSize is the memory of a bulkEnt, counted against the budget.
	bulkEntSize = 24
)

// bulkEnt is one buffered write. Its physical key (store prefix and key)
// starts at off in the chunk's data, followed by the value.
type bulkEnt struct {
	// pfx is the first 8 bytes of the key (after the store prefix),
	// big-endian and zero-padded: most comparisons end with it.
	pfx   uint64
	off   uint32
	klen  uint32 // physical key length
	vlen  int32  // -1 for a delete
	store uint32 // index in the chunk's prefixes
}

// bulkChunk holds the writes of whole Applies, in the order applied.
type bulkChunk struct {
	data     []byte
	ents     []bulkEnt
	prefixes [][]byte // store prefixes (length byte and name) by index
	storeIdx map[string]uint32
	lastName string
	lastIdx  uint32
	cp       []byte // checkpoint of the last Apply that had one; nil: none
}

func (c *bulkChunk) size() int { return len(c.data) + len(c.ents)*bulkEntSize }

func (c *bulkChunk) empty() bool { return len(c.ents) == 0 && c.cp == nil }

func (c *bulkChunk) reset() {
	c.data = c.data[:0]
	c.ents = c.ents[:0]
	c.prefixes = c.prefixes[:0]
	clear(c.storeIdx)
	c.lastName, c.lastIdx = "", 0
	c.cp = nil
}

// storeIndex returns the index of store's prefix, adding it if new.
func (c *bulkChunk) storeIndex(store string) uint32 {
	if store == c.lastName && len(c.prefixes) > 0 {
		return c.lastIdx
	}
	idx, ok := c.storeIdx[store]
	if !ok {
		if c.storeIdx == nil {
			c.storeIdx = make(map[string]uint32)
		}
		idx = uint32(len(c.prefixes))
		c.prefixes = append(c.prefixes, appendKey(nil, store, nil))
		c.storeIdx[store] = idx
	}
	c.lastName, c.lastIdx = store, idx
	return idx
}

// add appends the mutations of w, which were checked, and cp.
func (c *bulkChunk) add(w *WriteSet, cp []byte) {
	if w != nil {
		for i := range w.Mutations {
			m := &w.Mutations[i]
			off := len(c.data)
			c.data = appendKey(c.data, m.Store, m.Key)
			e := bulkEnt{
				pfx:   keyPrefix(m.Key),
				off:   uint32(off),
				klen:  uint32(len(c.data) - off),
				vlen:  -1,
				store: c.storeIndex(m.Store),
			}
			if !m.Deleted {
				e.vlen = int32(len(m.Value))
				c.data = append(c.data, m.Value...)
			}
			c.ents = append(c.ents, e)
		}
	}
	if cp != nil {
		c.cp = cp
	}
}

func keyPrefix(k []byte) uint64 {
	var b [8]byte
	copy(b[:], k)
	return binary.BigEndian.Uint64(b[:])
}

func (c *bulkChunk) key(e *bulkEnt) []byte { return c.data[e.off : e.off+e.klen] }

func (c *bulkChunk) value(e *bulkEnt) []byte {
	start := e.off + e.klen
	return c.data[start : start+uint32(e.vlen)]
}

// sort orders the writes by key and, for one key, in the order applied.
func (c *bulkChunk) sort() {
	slices.SortFunc(c.ents, func(a, b bulkEnt) int {
		if a.store != b.store {
			// Store prefixes are prefix-free: the first byte where two
			// of them differ orders every key under them.
			return bytes.Compare(c.prefixes[a.store], c.prefixes[b.store])
		}
		if a.pfx != b.pfx {
			return cmp.Compare(a.pfx, b.pfx)
		}
		if r := bytes.Compare(c.key(&a), c.key(&b)); r != 0 {
			return r
		}
		return cmp.Compare(a.off, b.off)
	})
}

// bulkBuild is a chunk being written and ingested.
type bulkBuild struct {
	chunk *bulkChunk
	done  chan struct{}
	err   error // set before done is closed
}

// bulkLoad is the bulk load state of a pebbleDB. It is used under the DB's
// write lock (wmu); the build goroutine only touches its bulkBuild.
type bulkLoad struct {
	env  *Env
	dir  string
	wopt sstable.WriterOptions
	// fresh is true while nothing of the DB's data predates the current
	// chunk: a delete whose key the chunk does not write is then dropped.
	fresh    bool
	cur      *bulkChunk
	spare    *bulkChunk
	inflight *bulkBuild
	// err is the first failed build: the DB holds what was ingested before
	// it, and nothing more may be (later chunks would hold writes without
	// the ones of the lost chunk).
	err   error
	files int // names the next sstable
	// buffered is the memory of the chunks, for ApproximateSize and the
	// Env's account.
	buffered atomic.Int64
}

// newBulkLoad prepares a load into db, opened with opts (after
// EnsureDefaults).
func newBulkLoad(env *Env, dir string, db *pebble.DB, opts *pebble.Options) (*bulkLoad, error) {
	// The tables are written for the last level, where a load of keys in
	// order lands, with its compression and filter. But the writer must
	// not assume that nothing lies below: a table of a later chunk lands
	// above the earlier ones, and its deletes must shadow them.
	wopt := opts.MakeWriterOptions(len(opts.Levels)-1, db.TableFormat())
	wopt.WritingToLowestLevel = false
	// Store keys start with a length byte of at least 1: anything at or
	// above 0x01 is data, below it the checkpoint.
	has, err := hasKey(db, []byte{1})
	if err != nil {
		return nil, fmt.Errorf("state: bulk load: %w", err)
	}
	return &bulkLoad{env: env, dir: dir, wopt: wopt, fresh: !has, cur: &bulkChunk{}}, nil
}

// restart starts the load over on a DB found empty by Wipe. Nothing may be
// buffered or building.
func (b *bulkLoad) restart() {
	b.fresh = true
	b.err = nil
}

// apply buffers w and cp (encoded) and hands the chunk to a build when it
// is full. sync waits until they are ingested.
func (b *bulkLoad) apply(db *pebble.DB, w *WriteSet, cp []byte, sync bool) error {
	if b.err != nil {
		return b.err
	}
	var n int
	if w != nil {
		n = w.Bytes() + w.Len()*(bulkEntSize+1+maxStoreName)
	}
	if n > maxBulkChunk {
		return fmt.Errorf("state: bulk load: a write of %d bytes is too large", w.Bytes())
	}
	if b.cur.size()+n > maxBulkChunk {
		if err := b.seal(db); err != nil {
			return err
		}
	}
	if cap(b.cur.data) == 0 {
		// Growing a buffer of megabytes by appending copies it again
		// and again; it is reused for the chunks that follow. The
		// entries get their share for writes of 100 bytes.
		size := b.env.bulkChunkBytes()
		b.cur.data = make([]byte, 0, size)
		b.cur.ents = make([]bulkEnt, 0, size/(100+bulkEntSize))
	}
	before := b.cur.size()
	b.cur.add(w, cp)
	b.account(b.cur.size() - before)
	if sync {
		return b.flush(db)
	}
	if b.cur.size() >= b.env.bulkChunkBytes() {
		return b.seal(db)
	}
	return nil
}

// seal starts the build of the current chunk, after the previous build
// ended (so that at most two chunks, one filling and one building, exist).
func (b *bulkLoad) seal(db *pebble.DB) error {
	if err := b.wait(); err != nil {
		return err
	}
	if b.cur.empty() {
		return nil
	}
	c := b.cur
	if b.spare != nil {
		b.cur, b.spare = b.spare, nil
	} else {
		b.cur = &bulkChunk{}
	}
	fresh := b.fresh
	if len(c.ents) > 0 {
		b.fresh = false
	}
	paths := [2]string{b.path(), b.path()}
	wopt := b.wopt
	bb := &bulkBuild{chunk: c, done: make(chan struct{})}
	b.inflight = bb
	go func() {
		defer close(bb.done)
		bb.err = buildAndIngest(db, c, wopt, fresh, paths)
	}()
	return nil
}

func (b *bulkLoad) path() string {
	b.files++
	return filepath.Join(b.dir, fmt.Sprintf("%s%06d.sst", bulkFilePrefix, b.files))
}

// wait waits for the build in flight and returns the load's error.
func (b *bulkLoad) wait() error {
	if bb := b.inflight; bb != nil {
		<-bb.done
		b.inflight = nil
		b.account(-bb.chunk.size())
		bb.chunk.reset()
		b.spare = bb.chunk
		if bb.err != nil && b.err == nil {
			b.err = fmt.Errorf("state: bulk load: %w", bb.err)
		}
	}
	return b.err
}

// flush ingests every buffered write.
func (b *bulkLoad) flush(db *pebble.DB) error {
	if err := b.seal(db); err != nil {
		return err
	}
	return b.wait()
}

// discard drops the buffered writes (the DB is wiped or closed without
// keeping them) and waits for the build in flight.
func (b *bulkLoad) discard() {
	b.account(-b.cur.size())
	b.cur.reset()
	_ = b.wait()
}

func (b *bulkLoad) account(n int) {
	b.buffered.Add(int64(n))
}

// release frees the chunks once the load ended.
func (b *bulkLoad) release() {
	b.cur, b.spare = nil, nil
}

// buildAndIngest writes c, sorted, and its checkpoint to two sstables and
// ingests them into db in one atomic step.
func buildAndIngest(db *pebble.DB, c *bulkChunk, wopt sstable.WriterOptions, fresh bool, paths [2]string) (err error) {
	var ingest []string
	defer func() {
		if err != nil {
			for _, p := range paths {
				if rerr := os.Remove(p); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
					err = errors.Join(err, rerr)
				}
			}
		}
	}()
	if len(c.ents) > 0 {
		c.sort()
		wrote, err := writeTable(paths[0], wopt, func(w *sstable.Writer) (bool, error) {
			return c.writeTo(w, fresh)
		})
		if err != nil {
			return err
		}
		if wrote {
			ingest = append(ingest, paths[0])
		}
	}
	if c.cp != nil {
		// The checkpoint key sorts before every store key, so this
		// table and the data table do not overlap, as one ingestion
		// requires. Kept apart, data tables of keys that arrive in
		// order do not overlap each other either.
		if _, err := writeTable(paths[1], wopt, func(w *sstable.Writer) (bool, error) {
			return true, w.Set(checkpointKey, c.cp)
		}); err != nil {
			return err
		}
		ingest = append(ingest, paths[1])
	}
	if len(ingest) == 0 {
		return nil
	}
	// Pebble links the files into the DB and removes these names.
	return db.Ingest(context.Background(), ingest)
}

// writeTo writes the last write of every key of the sorted chunk. A delete
// is dropped when fresh (no earlier data can hold its key). It reports
// whether it wrote anything.
func (c *bulkChunk) writeTo(w *sstable.Writer, fresh bool) (bool, error) {
	wrote := false
	ents := c.ents
	for i := 0; i < len(ents); i++ {
		e := &ents[i]
		// The last write of a key is the last of its run.
		if i+1 < len(ents) && ents[i+1].store == e.store && ents[i+1].pfx == e.pfx &&
			bytes.Equal(c.key(&ents[i+1]), c.key(e)) {
			continue
		}
		var err error
		switch {
		case e.vlen >= 0:
			err = w.Set(c.key(e), c.value(e))
		case fresh:
			continue
		default:
			err = w.Delete(c.key(e))
		}
		if err != nil {
			return wrote, err
		}
		wrote = true
	}
	return wrote, nil
}

// writeTable writes an sstable to path with fill, which reports whether it
// added anything; an empty table is removed.
func writeTable(path string, wopt sstable.WriterOptions, fill func(*sstable.Writer) (bool, error)) (bool, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return false, err
	}
	// Closing the writer syncs and closes the file, as ingestion requires.
	w := sstable.NewWriter(&tableFile{f: f, bw: bufio.NewWriterSize(f, tableBufSize)}, wopt)
	wrote, err := fill(w)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err == nil && !wrote {
		err = os.Remove(path)
	}
	return wrote, err
}

// tableBufSize is the write buffer of a table file. The writer hands over
// every block (4 KiB by default) on its own; Pebble's file writable buffers
// no more than that, one system call per block.
const tableBufSize = 256 << 10

// tableFile is the objstorage.Writable of a table file.
type tableFile struct {
	f  *os.File
	bw *bufio.Writer
}

func (t *tableFile) Write(p []byte) error {
	_, err := t.bw.Write(p)
	return err
}

// Finish flushes, syncs and closes the file.
func (t *tableFile) Finish() error {
	err := t.bw.Flush()
	if err == nil {
		err = t.f.Sync()
	}
	return errors.Join(err, t.f.Close())
}

func (t *tableFile) Abort() { t.f.Close() }

var _ objstorage.Writable = (*tableFile)(nil)

// removeBulkFiles deletes the sstables a load left in dir when it crashed
// before ingesting them.
func removeBulkFiles(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), bulkFilePrefix) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}
