// Package changelog manages the changelog topics of state stores and restores
// stores from them.
//
// # Topics
//
// Every logged store has a changelog topic named TopicName(app, store), that
// is "<app>-<store>-changelog", with as many partitions as the sub-topology
// that owns the store has tasks: the store of task (sub-topology, p) is logged
// to partition p. A changelog record's key is the store key's bytes and its
// value the store value's bytes; a record with a null value (a tombstone)
// deletes the key, while an empty non-null value is an ordinary value.
// Changelogs are compacted (cleanup.policy=compact), so the topic keeps the
// latest value of every key and, for delete.retention.ms after compaction
// reached them, its tombstones.
//
// EnsureTopics creates missing topics (compacted when TopicSpec.Compacted)
// and checks the partition count of existing ones: a mismatch is an error
// wrapping ErrPartitionMismatch, which the application treats as a startup
// error. DescribeTopics and TopicIDs report what the runtime needs to know of
// existing topics (IDs, partition counts, cleanup.policy, max.message.bytes,
// delete.retention.ms). All of them read metadata past kadm's cache, so a
// topic created, deleted or recreated a moment ago is seen as it is now.
// Broker errors are wrapped with %w: errors.Is works with kerr errors.
//
// # Checkpoints
//
// A task's stores live in one state.DB, which stores a state.Checkpoint
// atomically with the data. For each store, Checkpoint.Changelogs[store]
// holds the next changelog offset to restore from and the topic ID of the
// changelog that offset refers to: the store holds exactly the effect of the
// changelog partition's records below that offset. Checkpoint.Written is when
// the checkpoint was written. The runtime writes a checkpoint with every
// commit (offsets just past the changelog records the commit produced,
// Written = now); the Restorer writes them while it restores.
//
// On restore a checkpoint is distrusted, and the whole DB is wiped and every
// store of the task restored from the log start, when for any of its stores:
//
//   - the DB has no checkpoint at all (nothing is known of its contents);
//   - the checkpoint offset is below the partition's log start offset:
//     records between the two were deleted (DeleteRecords, retention) and
//     cannot be replayed;
//   - the offset is above the end offset: the log lost records the store
//     reflects (unclean leader election, or a topic replaced by another);
//   - the topic ID differs: the changelog was deleted and recreated, so its
//     offsets mean something else;
//   - records remain to replay and the checkpoint is older than the topic's
//     delete.retention.ms (or has no date): a tombstone written after the
//     checkpoint may have been compacted away, and replaying the rest would
//     resurrect the deleted key. A checkpoint at the end offset is trusted
//     whatever its age, since nothing after it can have been missed;
//   - the checkpoint has no position for the store but the store has data.
//     (A store without a position and without data, e.g. one added to the
//     topology, is simply restored from the log start.)
//
// Wiping is per DB, because a DB commits all its stores together: one
// untrusted store makes every store of the task restore from the start.
// A wiped DB that implements state.BulkLoader (Pebble does) and has at least
// RestorerOptions.BulkLoadRecords records to replay is filled in bulk load
// mode, in which a Pebble DB sorts the restored writes in memory and ingests
// them as sstables, and defers compactions until the restore ends (see the
// state package); the mode ends when the task completes, is suspended or
// fails.
//
// A partition whose store reached its end is paused in the client, and only
// removed from it once no partition is left to restore (or before it is
// added again): removing a partition restarts the client's fetch session,
// which would drop and fetch again what it buffered for the others.
//
// The age rule relies on Kafka's guarantee that a reader starting at time S
// sees every tombstone that deletes a record it read, as long as it reads the
// tombstone before S + delete.retention.ms. The Restorer therefore dates its
// intermediate checkpoints with the start of the current chain of reads (the
// previous checkpoint's date when it resumed from one, the restore's start
// when it replays from the log start), and the final checkpoint, whose
// offsets are the end offsets, with the moment those end offsets were listed.
//
// # Restore
//
// A Restorer restores the stores of any number of tasks with one group-less
// kgo client (read-committed; see NewRestorer) and a kadm client. Run is its
// loop, on one goroutine; Add and Remove may be called from anywhere. For a
// task added with Add it:
//
//  1. lists, in the background and retrying retriable errors with backoff,
//     the topic IDs, leaders and delete.retention.ms of the task's
//     changelogs, their log start offsets and their end offsets: the last
//     stable offsets, the end a read-committed consumer reads to;
//  2. reads the DB's checkpoint and decides where each store starts: from
//     its checkpoint offset, or from the log start after a wipe (above);
//  3. consumes each changelog partition from its start to its end offset,
//     applying records to the DB in large batches (RestorerOptions.BatchRecords
//     records, BatchBytes bytes) without syncing, each batch with a checkpoint
//     of the positions it reaches, so that progress survives a rebalance;
//     a store whose checkpoint is at the end offset replays nothing;
//  4. when every store reached its end, writes the final checkpoint, syncs
//     the DB once and calls Request.Done. A DB in bulk load mode leaves it
//     instead (which makes its writes durable) on a goroutine of its own, so
//     that the records of the other tasks keep flowing meanwhile;
//     OnRestoreEnd and Done follow once it returned.
//
// Only committed records are replayed: the client skips aborted records and
// transaction markers. It does not say how far it got past them, so a
// partition whose last records before the end offset are markers or aborted
// records would otherwise never be seen to finish. With
// kgo.KeepControlRecords the markers are delivered (and ignored), which ends
// the usual transactional log at once; in every other case a partition that
// delivers nothing for RestorerOptions.TailProbeAfter is probed: one
// read-committed fetch sent straight to the partition leader tells whether
// any committed record remains before the end offset. A partition whose
// deliveries pause longer (a busy broker or machine) is probed only after
// twice its longest pause so far, and after a probe that finds records the
// next one waits twice as long, until records arrive.
//
// The end offset is fixed when the task is added. Under exactly-once the
// runtime adds a task once the group's committed offsets are stable (KIP-447),
// so no transaction of a previous owner of the task is still open and the
// last stable offset is the true end.
//
// Remove stops a task (a revocation): the records consumed so far are applied
// with their checkpoint, the DB is synced, Done gets an error wrapping
// ErrSuspended, and the returned channel closes once the Restorer no longer
// touches the DB, at the latest after the poll in progress. A later Add
// resumes from the checkpoint. When Run's context ends, every task still
// restoring is suspended the same way. A task whose stores all reached their
// end, and whose DB is leaving bulk load mode, is not suspended: Remove and
// the end of Run wait for it, and Done reports its outcome.
//
// If the changelog changes under a running restore, the task starts over from
// the log start with a wiped DB: when the log start offset passes the restore
// position after records were applied (after three such restarts it skips
// ahead instead, so that a log start that keeps moving, as with retention on a
// compact,delete changelog, cannot restart it forever), or when the topic is
// deleted or recreated (the Restorer then makes the client forget the topic,
// which is how kgo resumes consuming a recreated topic). Retriable fetch errors are retried
// by the client; other errors, and every DB error (e.g. state.ErrCorrupt), end
// the task with Result.Err.
//
// Progress is observable through a Listener (like Kafka Streams'
// StateRestoreListener): per store, OnRestoreStart with the start and end
// offsets, OnBatchRestored after each batch (end offset - batch end offset
// - 1 is an upper bound of the records remaining, for a "restore remaining"
// metric), then OnRestoreEnd or OnRestoreSuspended.
//
// kfake note: the embedded test broker moves a partition's log start offset
// when it compacts, which Kafka does not do. A checkpoint below a log start
// moved that way is distrusted like any other, so with kfake a warm restart
// after heavy compaction may restore fully (the compacted log is small).
package changelog
