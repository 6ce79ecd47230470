// Package state holds the local state of stream tasks: byte-level key-value
// stores, the batch that buffers a task's writes between commits, and the
// checkpoint that says how far the state reflects its changelogs and inputs.
// It knows nothing of Kafka.
//
// # One DB per task
//
// Each task owns one DB. Its stores are not separate databases but key
// prefixes in that DB: a key is stored as the store name's length (one
// byte), the name, then the key. The length byte makes the encoding
// prefix-free, so store "a" never sees the keys of store "ab", and a
// store's key range has exact bounds. Because every store of a task lives
// in one DB, one Apply writes all of them at once.
//
// # The checkpoint lives inside the DB
//
// The Checkpoint (changelog offsets per store, input offsets) is stored
// under a reserved key outside every store's range and written in the same
// atomic write as the data it describes. A crash therefore never leaves a
// checkpoint that claims more or less than the data holds: on restart the
// task replays the changelog from exactly where its state stops, and a
// separate checkpoint file that could disagree with the data cannot exist.
//
// # Batch
//
// A Batch buffers a task's writes between commits. Reads through it see
// its own writes first (read-your-writes), iterators merge its writes over
// the DB, and deletes hide DB keys. Savepoint, called at the start of each
// input record, and Rollback let a record that fails undo its own writes
// without losing those of earlier records, so a failed record leaves no
// partial state behind. Commit hands every pending write and the new
// checkpoint to DB.Apply in one call; the batch keeps its writes as the
// Mutations of a WriteSet, so they are copied only into the DB. Bytes
// estimates the memory the pending writes hold (keys, values and
// bookkeeping), which is what a caller bounds to bound its memory.
//
// # Implementations
//
// An Env opens Pebble DBs (one directory per task) that share one cache
// and one open-file cache, so the memory and file descriptors of an
// application instance are bounded by the Env's options rather than growing
// with its number of tasks. Pebble charges each DB's memtables to the
// shared cache, so EnvOptions.CacheBytes bounds both; the more tasks, the
// less of it is left for caching blocks. NewMemory returns an in-memory DB with the same semantics,
// for tests and for state that is cheap to rebuild.
//
// # Bulk load
//
// A Pebble DB also implements BulkLoader, for a restore that fills it from
// scratch. In bulk load mode nothing goes through the memtable: Apply
// copies the writes into an in-memory chunk, and a full chunk is sorted
// by key (for a key, the last write wins; a delete is dropped while no
// data predates the chunk, and kept as a tombstone otherwise), written as
// an sstable with the DB's own table format and options, and ingested.
// The sort, the writing and the ingestion run on a goroutine of their own
// while the next chunk fills. The checkpoint of a chunk's last Apply is
// written to a second, one-key sstable ingested with the data in the same
// atomic Ingest, so a crash leaves the writes of a prefix of the Applies
// with the checkpoint of the last of them; writes still buffered are
// lost, as their checkpoint is. Reads, Sync, Close and EndBulkLoad ingest
// what is buffered first.
//
// The chunks of every DB of an Env in bulk load mode share
// EnvOptions.BulkLoadBytes: with N DBs loading, each seals its chunk at
// BulkLoadBytes/(2N), since it fills one while the previous one is
// written. Chunks of keys that arrive in order (a table loaded key by
// key) do not overlap and land side by side in the last level; those of
// keys in no order stack up level by level and then in L0. Compactions
// are off during the load and merge them once, in the background, after
// EndBulkLoad.
//
// A table that cannot be written or ingested ends the load: the DB keeps
// what was ingested before, every later Apply (and read) fails with the
// error, and EndBulkLoad reports it after switching back to normal mode.
//
// Wipe of a DB that holds no key at all (the first start of a task) keeps
// its Pebble instance instead of creating a new one.
//
// A DB has one writer (the task) and any number of concurrent readers
// (interactive queries). Iterators read a snapshot taken at their
// creation.
package state
