package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
)

// Defaults for EnvOptions.
const (
	// DefaultCacheBytes is the default size of the block cache shared by all
	// DBs of an Env.
	DefaultCacheBytes = 64 << 20
	// DefaultMemTableSize is the default memtable size of each DB. A DB
	// holds up to two memtables (one being flushed), and Pebble charges
	// them to the shared cache: with N busy tasks, up to 2*N*MemTableSize
	// of CacheBytes goes to memtables and only the rest caches blocks.
	DefaultMemTableSize = 4 << 20
	// DefaultMaxOpenFiles is the default number of table files kept open
	// across all DBs of an Env.
	DefaultMaxOpenFiles = 1000
)

// wipeSuffix names the directory a DB is moved to while Wipe deletes it.
const wipeSuffix = ".wipe"

// EnvOptions configures an Env. The zero value uses the defaults.
type EnvOptions struct {
	// CacheBytes bounds the memory of every DB of the Env together: block
	// cache plus memtables, which Pebble reserves from it (default
	// DefaultCacheBytes). Size it at least a few MemTableSize per task
	// above the block cache wanted.
	CacheBytes int64
	// MemTableSize is the memtable size of each DB (default
	// DefaultMemTableSize). Apply of a WriteSet larger than about half of
	// it bypasses the memtable and forces a flush, so restore batches
	// should stay below that. See DefaultMemTableSize for how memtables
	// count against CacheBytes.
	MemTableSize uint64
	// MaxOpenFiles bounds the table files kept open across every DB of the
	// Env (default DefaultMaxOpenFiles).
	MaxOpenFiles int
	// BulkLoadBytes bounds the memory in which the DBs of the Env that are
	// in bulk load mode (see BulkLoader) buffer their writes, all of them
	// together (default DefaultBulkLoadBytes); it comes on top of
	// CacheBytes. With N DBs loading, each writes its buffer to a table
	// once it holds BulkLoadBytes/(2N) and fills a second buffer while
	// that table is written and ingested. A buffer holds at least 1 MiB,
	// so more than BulkLoadBytes/(2 MiB) DBs loading at once use more.
	// Larger buffers make fewer, larger tables, and fewer of them overlap
	// (the compaction after the load merges those that do).
	BulkLoadBytes int64
	// Logger receives Pebble's messages: informational ones at debug level,
	// errors at error level (default slog.Default()).
	Logger *slog.Logger
}

// Env holds what every Pebble DB of one application instance shares: the
// block cache and the open-file cache, so that memory and file descriptors
// are bounded per instance rather than per task, and the logger.
type Env struct {
	log           *slog.Logger
	memTableSize  uint64
	bulkLoadBytes int64
	maxOpenFiles  int

	// bulkActive counts the DBs in bulk load mode, which share
	// bulkLoadBytes.
	bulkActive atomic.Int64

	// mu makes Close wait for Opens in progress, which use the caches.
	mu        sync.RWMutex
	closed    bool
	cache     *pebble.Cache
	fileCache *pebble.FileCache
}

// NewEnv returns an Env with the given options. Close it after its DBs.
func NewEnv(opts EnvOptions) *Env {
	if opts.CacheBytes <= 0 {
		opts.CacheBytes = DefaultCacheBytes
	}
	if opts.MemTableSize == 0 {
		opts.MemTableSize = DefaultMemTableSize
	}
	if opts.MaxOpenFiles <= 0 {
		opts.MaxOpenFiles = DefaultMaxOpenFiles
	}
	if opts.BulkLoadBytes <= 0 {
		opts.BulkLoadBytes = DefaultBulkLoadBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Env{
		log:           opts.Logger,
		memTableSize:  opts.MemTableSize,
		bulkLoadBytes: opts.BulkLoadBytes,
		maxOpenFiles:  opts.MaxOpenFiles,
		cache:         pebble.NewCache(opts.CacheBytes),
		fileCache:     pebble.NewFileCache(runtime.GOMAXPROCS(0), pebble.FileCacheSize(opts.MaxOpenFiles)),
	}
}

// bulkChunkBytes is the size at which a DB in bulk load mode writes its
// buffered writes to a table: its share of bulkLoadBytes, for a buffer
// filling and one being written.
func (e *Env) bulkChunkBytes() int {
	n := max(e.bulkActive.Load(), 1)
	return int(max(e.bulkLoadBytes/(2*n), minBulkChunk))
}

// Close releases the Env's references to the shared caches. A DB still open
// keeps its own references, so the memory is freed when the last DB closes
// (and the DB can still be wiped). Open fails with ErrClosed afterwards.
func (e *Env) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	e.fileCache.Unref()
	e.cache.Unref()
	return nil
}

// Open opens the DB in dir, creating it (and dir, owner-only) if needed.
// A dir is used by one DB at a time; Pebble's lock file enforces it.
func (e *Env) Open(dir string) (DB, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return nil, ErrClosed
	}
	// Wipe derives a sibling path from dir, which a trailing slash would
	// turn into a child.
	dir = filepath.Clean(dir)
	// A crash during Wipe leaves the old data next to the fresh DB.
	if err := os.RemoveAll(dir + wipeSuffix); err != nil {
		return nil, fmt.Errorf("state: removing leftover of wipe: %w", err)
	}
	// A crash during a bulk load leaves the tables it did not ingest.
	if err := removeBulkFiles(dir); err != nil {
		return nil, fmt.Errorf("state: removing leftover of bulk load: %w", err)
	}
	log := e.log.With("dir", dir)
	d := &pebbleDB{env: e, dir: dir, log: log}
	if err := d.open(false); err != nil {
		return nil, err
	}
	// The DB's own references keep the caches valid for the reopen in Wipe
	// even after Env.Close.
	e.cache.Ref()
	e.fileCache.Ref()
	return d, nil
}

func (e *Env) release() {
	e.fileCache.Unref()
	e.cache.Unref()
}

// openPebble opens the Pebble DB in dir, in bulk load mode if bulk. It
// returns the options it was opened with, defaults filled in.
func (e *Env) openPebble(dir string, log *slog.Logger, bulk bool) (*pebble.DB, *pebble.Options, error) {
	// Pebble creates its files 0666 minus umask; the 0700 directory is what
	// keeps other users out of the state.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("state: %w", err)
	}
	opts := &pebble.Options{
		Cache:        e.cache,
		FileCache:    e.fileCache,
		MemTableSize: e.memTableSize,
		MaxOpenFiles: e.maxOpenFiles,
		Logger:       pebbleLogger{log.With("component", "pebble")},
		// A state dir is private to choreo, so there is no older reader to
		// stay compatible with; newer formats read and compact faster.
		FormatMajorVersion: pebble.FormatNewest,
	}
	// Aggregations and joins look up many keys that do not exist yet (a new
	// group, a table row not seen so far); filters answer those without
	// reading data blocks. Later levels inherit the policy (Pebble's Get
	// skips the filters of the last level, whose data blocks it reads
	// anyway).
	opts.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	if bulk {
		// A load ingests tables (see bulk.go); those of a load whose
		// keys arrive in no order overlap each other and stack up
		// level by level, then in L0. Compacting them while the load
		// runs would rewrite the same data again and again, so the
		// compaction runs once, after EndBulkLoad reopens the DB.
		opts.DisableAutomaticCompactions = true
		// Without compactions L0 only grows; the default limit would
		// stop writes for good.
		opts.L0StopWritesThreshold = math.MaxInt32
		opts.L0CompactionThreshold = math.MaxInt32
	}
	// The bulk load writes tables with the options Pebble uses.
	opts.EnsureDefaults()
	db, err := pebble.Open(dir, opts)
	if err != nil {
		if pebble.IsCorruptionError(err) {
			return nil, nil, fmt.Errorf("%w: opening %s: %w", ErrCorrupt, dir, err)
		}
		return nil, nil, fmt.Errorf("state: opening %s: %w", dir, err)
	}
	return db, opts, nil
}

// pebbleLogger routes Pebble's logging to slog, which would otherwise go to
// the standard library logger and stderr.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) { p.logf(slog.LevelDebug, format, args) }

func (p pebbleLogger) Errorf(format string, args ...any) { p.logf(slog.LevelError, format, args) }

// Fatalf panics because Pebble relies on it not returning; os.Exit in a
// library would skip every deferred cleanup of the application.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg)
	panic("pebble: " + msg)
}

func (p pebbleLogger) logf(level slog.Level, format string, args []any) {
	ctx := context.Background()
	if p.l.Enabled(ctx, level) {
		p.l.Log(ctx, level, fmt.Sprintf(format, args...))
	}
}

// pebbleDB is a DB in one Pebble instance. Every store is a key prefix in
// it, so one Pebble batch commits all stores and the checkpoint together.
type pebbleDB struct {
	env *Env
	dir string
	log *slog.Logger

	// wmu serializes writers, which share wb and bl. The DB contract
	// allows only one writer, but a misuse should not corrupt a batch.
	wmu sync.Mutex
	wb  *pebble.Batch

	// mu is read-locked by every operation on db and write-locked by Close,
	// Wipe and the bulk load switches, which replace or close it under
	// concurrent readers.
	mu     sync.RWMutex
	db     *pebble.DB
	closed bool
	// bl is the bulk load state, non-nil while db is in bulk load mode.
	// It is replaced under both locks and used under wmu; bulk mirrors
	// bl != nil for readers, which hold neither lock when they check it.
	bl   *bulkLoad
	bulk atomic.Bool

	// iters are the open iterators, closed by Close and Wipe since Pebble
	// cannot close with iterators open. Guarded by itersMu, because
	// iterators come and go under a read lock of mu.
	itersMu sync.Mutex
	iters   map[*pebbleIter]struct{}
}

func (d *pebbleDB) Get(store string, key []byte) ([]byte, bool, error) {
	if err := checkStore(store); err != nil {
		return nil, false, err
	}
	if err := d.settleBulk(); err != nil {
		return nil, false, err
	}
	bp := getKeyBuf()
	k := appendKey(*bp, store, key)
	value, ok, err := d.get(k)
	putKeyBuf(bp, k)
	return value, ok, err
}

func (d *pebbleDB) get(k []byte) ([]byte, bool, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return nil, false, ErrClosed
	}
	v, closer, err := d.db.Get(k)
	if err != nil {
		if errors.Is(err, pebble.ErrNotFound) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("state: get: %w", err)
	}
	// v is only valid until closer is closed; the caller owns the copy.
	out := append(make([]byte, 0, len(v)), v...)
	return out, true, closer.Close()
}

func (d *pebbleDB) NewIter(store string, lower, upper []byte) (Iterator, error) {
	if err := checkStore(store); err != nil {
		return nil, err
	}
	if err := d.settleBulk(); err != nil {
		return nil, err
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return nil, ErrClosed
	}
	if emptyRange(lower, upper) {
		return emptyIter{}, nil
	}
	// Pebble copies the bounds, so a pooled buffer is enough.
	bp := getKeyBuf()
	buf, lo, hi := appendBounds(*bp, store, lower, upper)
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	putKeyBuf(bp, buf)
	if err != nil {
		return nil, fmt.Errorf("state: new iterator: %w", err)
	}
	pi := &pebbleIter{db: d, it: it, strip: 1 + len(store)}
	d.itersMu.Lock()
	if d.iters == nil {
		d.iters = make(map[*pebbleIter]struct{})
	}
	d.iters[pi] = struct{}{}
	d.itersMu.Unlock()
	return pi, nil
}

// lockWriter takes the writer lock and mu, exclusively when the Pebble DB
// is to be replaced or closed, and returns their release; ErrClosed (with
// nothing held) once the DB is closed.
func (d *pebbleDB) lockWriter(exclusive bool) (unlock func(), err error) {
	d.wmu.Lock()
	if exclusive {
		d.mu.Lock()
		unlock = func() { d.mu.Unlock(); d.wmu.Unlock() }
	} else {
		d.mu.RLock()
		unlock = func() { d.mu.RUnlock(); d.wmu.Unlock() }
	}
	if d.closed {
		unlock()
		return nil, ErrClosed
	}
	return unlock, nil
}

func (d *pebbleDB) Apply(w *WriteSet, cp *Checkpoint, sync bool) error {
	var cpData []byte
	if cp != nil {
		var err error
		if cpData, err = json.Marshal(cp); err != nil {
			return fmt.Errorf("state: encoding checkpoint: %w", err)
		}
	}
	unlock, err := d.lockWriter(false)
	if err != nil {
		return err
	}
	defer unlock()
	if d.bl != nil {
		return d.applyBulk(w, cpData, sync)
	}
	b := d.wb
	defer b.Reset()
	if w != nil {
		for i := range w.Mutations {
			m := &w.Mutations[i]
			if err := checkStore(m.Store); err != nil {
				return err
			}
			// Deferred ops let the prefixed key be built in place in the
			// batch instead of in a scratch buffer that is then copied.
			n := 1 + len(m.Store) + len(m.Key)
			var op *pebble.DeferredBatchOp
			if m.Deleted {
				op = b.DeleteDeferred(n)
			} else {
				op = b.SetDeferred(n, len(m.Value))
				copy(op.Value, m.Value)
			}
			putKey(op.Key, m.Store, m.Key)
			if err := op.Finish(); err != nil {
				return fmt.Errorf("state: apply: %w", err)
			}
		}
	}
	if cp != nil {
		if err := b.Set(checkpointKey, cpData, nil); err != nil {
			return fmt.Errorf("state: apply: %w", err)
		}
	}
	if b.Empty() {
		return nil
	}
	opts := pebble.NoSync
	if sync {
		opts = pebble.Sync
	}
	if err := d.db.Apply(b, opts); err != nil {
		return fmt.Errorf("state: apply: %w", err)
	}
	return nil
}

// applyBulk is Apply in bulk load mode. Both locks are held.
func (d *pebbleDB) applyBulk(w *WriteSet, cp []byte, sync bool) error {
	if w != nil {
		// Checked first: a failed Apply writes nothing.
		for i := range w.Mutations {
			if err := checkStore(w.Mutations[i].Store); err != nil {
				return err
			}
		}
	}
	if (w == nil || w.Len() == 0) && cp == nil {
		return nil
	}
	return d.bl.apply(d.db, w, cp, sync)
}

// settleBulk makes the writes a DB in bulk load mode buffers visible to
// reads, by ingesting them.
func (d *pebbleDB) settleBulk() error {
	if !d.bulk.Load() {
		return nil
	}
	unlock, err := d.lockWriter(false)
	if err != nil {
		return err
	}
	defer unlock()
	if d.bl == nil {
		return nil
	}
	return d.bl.flush(d.db)
}

func (d *pebbleDB) Checkpoint() (Checkpoint, bool, error) {
	if err := d.settleBulk(); err != nil {
		return Checkpoint{}, false, err
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return Checkpoint{}, false, ErrClosed
	}
	v, closer, err := d.db.Get(checkpointKey)
	if err != nil {
		if errors.Is(err, pebble.ErrNotFound) {
			return Checkpoint{}, false, nil
		}
		return Checkpoint{}, false, fmt.Errorf("state: reading checkpoint: %w", err)
	}
	defer closer.Close()
	var cp Checkpoint
	if err := json.Unmarshal(v, &cp); err != nil {
		return Checkpoint{}, false, fmt.Errorf("%w: checkpoint: %w", ErrCorrupt, err)
	}
	return cp, true, nil
}

func (d *pebbleDB) Sync() error {
	unlock, err := d.lockWriter(false)
	if err != nil {
		return err
	}
	defer unlock()
	if d.bl != nil {
		// Ingested tables are durable.
		return d.bl.flush(d.db)
	}
	// An empty synced write is how Pebble fsyncs the WAL up to every prior
	// unsynced write, without flushing memtables.
	if err := d.db.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("state: sync: %w", err)
	}
	return nil
}

// Wipe moves the directory aside, opens a fresh DB and then deletes the old
// files. Compared to deleting the keyspace in place, the disk space comes
// back at once (a full restore usually follows, which would otherwise
// double the usage until compactions catch up) and a crash midway leaves
// either the old or the new DB, never a mix. A DB that holds no key is
// left as it is. Open iterators are ended either way. A DB in bulk load
// mode stays in it, its buffered writes dropped.
func (d *pebbleDB) Wipe() error {
	unlock, err := d.lockWriter(true)
	if err != nil {
		return err
	}
	defer unlock()
	bulk := d.bl != nil
	if bulk {
		d.bl.discard()
	}
	has, err := hasKey(d.db, nil)
	if err != nil {
		return fmt.Errorf("state: wipe: %w", err)
	}
	if !has {
		// Nothing to delete, as on the first start of a task: a new
		// Pebble DB would only cost the creation of its files.
		if bulk {
			d.bl.restart()
		}
		if err := d.closeIters(); err != nil {
			return fmt.Errorf("state: wipe: %w", err)
		}
		return nil
	}
	if err := d.closePebble(); err != nil {
		d.fail()
		return err
	}
	trash := d.dir + wipeSuffix
	werr := os.RemoveAll(trash)
	if werr == nil {
		werr = os.Rename(d.dir, trash)
	}
	// After a failed rename this reopens the old data, so the DB stays
	// usable and the caller learns that it was not wiped.
	if err := d.open(bulk); err != nil {
		d.fail()
		return errors.Join(werr, err)
	}
	if werr != nil {
		return fmt.Errorf("state: wipe: %w", werr)
	}
	if err := os.RemoveAll(trash); err != nil {
		// The new DB is fine and Open retries the removal.
		d.log.Warn("state: removing wiped files", "err", err)
	}
	return nil
}

// open opens the Pebble DB of d.dir, in bulk load mode if bulk, with a
// fresh bulk load state. mu must be write-locked and db closed.
func (d *pebbleDB) open(bulk bool) error {
	db, opts, err := d.env.openPebble(d.dir, d.log, bulk)
	if err != nil {
		return err
	}
	var bl *bulkLoad
	if bulk {
		if bl, err = newBulkLoad(d.env, d.dir, db, opts); err != nil {
			return errors.Join(err, db.Close())
		}
	}
	d.db, d.wb = db, db.NewBatch()
	d.setBulkLoad(bl)
	return nil
}

// setBulkLoad replaces the bulk load state, keeping the Env's count of
// loading DBs.
func (d *pebbleDB) setBulkLoad(bl *bulkLoad) {
	switch {
	case d.bl == nil && bl != nil:
		d.env.bulkActive.Add(1)
	case d.bl != nil && bl == nil:
		d.env.bulkActive.Add(-1)
	}
	if d.bl != nil {
		d.bl.release()
	}
	d.bl = bl
	d.bulk.Store(bl != nil)
}

// fail marks d closed after its Pebble DB could not be reopened.
func (d *pebbleDB) fail() {
	d.closed = true
	d.setBulkLoad(nil)
	d.env.release()
}

func (d *pebbleDB) ApproximateSize() int64 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return 0
	}
	size := int64(d.db.Metrics().DiskSpaceUsage())
	if d.bl != nil {
		size += d.bl.buffered.Load()
	}
	return size
}

func (d *pebbleDB) Close() error {
	unlock, err := d.lockWriter(true)
	if err != nil {
		return err
	}
	defer unlock()
	var berr error
	if d.bl != nil {
		// Ingested, the buffered writes are durable.
		berr = d.bl.flush(d.db)
	}
	d.closed = true
	d.setBulkLoad(nil)
	err = d.closePebble()
	d.env.release()
	return errors.Join(berr, err)
}

var _ BulkLoader = (*pebbleDB)(nil)

// BeginBulkLoad implements BulkLoader.
func (d *pebbleDB) BeginBulkLoad() error { return d.setBulk(true) }

// EndBulkLoad implements BulkLoader. If a table of the load could not be
// ingested, it returns that error, and the DB, back in normal mode, holds
// the writes applied before that table's.
func (d *pebbleDB) EndBulkLoad() error { return d.setBulk(false) }

// setBulk reopens db in or out of bulk load mode. Pebble reads these options
// only when it opens a DB.
func (d *pebbleDB) setBulk(on bool) error {
	unlock, err := d.lockWriter(true)
	if err != nil {
		return err
	}
	defer unlock()
	if (d.bl != nil) == on {
		return nil
	}
	var berr error
	if d.bl != nil {
		berr = d.bl.flush(d.db)
	}
	if err := d.closePebble(); err != nil {
		d.fail()
		return errors.Join(berr, err)
	}
	if err := d.open(on); err != nil {
		d.fail()
		return errors.Join(berr, err)
	}
	return berr
}

// closePebble ends every iterator and closes db. mu must be write-locked,
// and the bulk load's writes ingested or discarded.
func (d *pebbleDB) closePebble() error {
	errs := []error{d.closeIters(), d.wb.Close(), d.db.Close()}
	d.db, d.wb = nil, nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("state: close: %w", err)
	}
	return nil
}

// closeIters ends every open iterator. mu must be write-locked.
func (d *pebbleDB) closeIters() error {
	var errs []error
	d.itersMu.Lock()
	for it := range d.iters {
		errs = append(errs, it.it.Close())
		it.it = nil
	}
	clear(d.iters)
	d.itersMu.Unlock()
	return errors.Join(errs...)
}

// hasKey reports whether db holds a key at or above lower (nil: any key).
func hasKey(db *pebble.DB, lower []byte) (bool, error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lower})
	if err != nil {
		return false, err
	}
	has := it.First()
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return false, err
	}
	return has, nil
}

// pebbleIter strips the store prefix from a Pebble iterator. Each step
// read-locks the DB so that a concurrent Close or Wipe, which closes the
// Pebble iterator, cannot run in the middle of it.
type pebbleIter struct {
	db    *pebbleDB
	it    *pebble.Iterator // nil once closed, by Close or by the DB
	strip int
	// started is false until the first Next, which positions at the start.
	started bool
	done    bool
	buf     []byte // holds key then value
	key     []byte
	value   []byte
	err     error
}

func (i *pebbleIter) Next() bool {
	i.key, i.value = nil, nil
	if i.done || i.err != nil {
		return false
	}
	i.db.mu.RLock()
	defer i.db.mu.RUnlock()
	if i.it == nil {
		i.err = errIterInvalid
		return false
	}
	var ok bool
	if !i.started {
		i.started = true
		ok = i.it.First()
	} else {
		ok = i.it.Next()
	}
	if !ok {
		i.err = i.it.Error()
		return false
	}
	v, err := i.it.ValueAndErr()
	if err != nil {
		i.err = err
		return false
	}
	// Copies, because a Close or Wipe on another goroutine may close the
	// Pebble iterator, whose buffers Pebble then recycles, while the caller
	// still reads Key and Value.
	i.buf = append(i.buf[:0], i.it.Key()[i.strip:]...)
	i.buf = append(i.buf, v...)
	k := len(i.buf) - len(v)
	i.key, i.value = i.buf[:k:k], i.buf[k:]
	return true
}

func (i *pebbleIter) Key() []byte   { return i.key }
func (i *pebbleIter) Value() []byte { return i.value }
func (i *pebbleIter) Err() error    { return i.err }

func (i *pebbleIter) Close() error {
	if i.done {
		return nil
	}
	i.done = true
	i.key, i.value = nil, nil
	i.db.mu.RLock()
	defer i.db.mu.RUnlock()
	if i.it == nil {
		return nil
	}
	err := i.it.Close()
	i.it = nil
	i.db.itersMu.Lock()
	delete(i.db.iters, i)
	i.db.itersMu.Unlock()
	return err
}

// emptyIter is returned for an empty range.
type emptyIter struct{}

func (emptyIter) Next() bool    { return false }
func (emptyIter) Key() []byte   { return nil }
func (emptyIter) Value() []byte { return nil }
func (emptyIter) Err() error    { return nil }
func (emptyIter) Close() error  { return nil }
