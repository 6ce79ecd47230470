// Package engine runs a compiled processor graph (internal/graph) as one
// member of the application's consumer group. It knows nothing of the typed
// DSL: it instantiates nodes per task, feeds them records and commits.
//
// # Tasks and the loop
//
// A task is (sub-topology, partition). One loop goroutine polls the group
// consumer, appends fetched records to per-partition queues of their task
// and processes every task in turn. Within a task the next record is taken
// from the partition whose head has the lowest timestamp; a task whose other
// partition is empty waits for it while that partition is known to have
// unfetched records (its fetched position is below the last stable offset
// reported by the latest fetch), up to Config.MaxTaskIdle, so a stream–table
// join sees the table updates that precede a stream record.
//
// Each record runs inside a savepoint of the task's state.Batch: an error or
// a panic rolls back its store writes and drops the records it sent, then the
// error policy decides (fail the app or skip the record). Sends of a
// successful record go to the producer at once; store writes stay in the
// batch until the commit.
//
// # Commit (at-least-once)
//
// Every CommitInterval, when pending writes pass a size cap, before a
// revocation and on shutdown: produce the dirty store entries of each task to
// its changelog partitions (one record per key, the latest value) → flush the
// producer → apply each task's batch with a checkpoint holding those
// changelog offsets and the processed input offsets, in one Pebble batch →
// commit the input offsets to the group. Repartition topics are then purged
// below the committed offsets (at most every 30 s).
//
// # Rebalance and restore
//
// The group uses the task balancer of package partition (cooperative, all
// partitions of a task on one member). Callbacks are gated with the loop by
// franz-go's BlockRebalanceOnPoll and by Engine.mu. On assignment a task
// opens its DB, its input partitions are paused, and the changelog Restorer
// replays its changelogs from the checkpoint in the background while other
// tasks keep processing; when the restore completes the loop instantiates the
// processors, positions the input at the larger of the group's committed
// offset and the checkpoint's input offset (a local restart after a crash
// between store commit and offset commit does not apply input twice) and
// resumes fetching. On revocation every task commits and the revoked ones
// close; on loss (session expired) their uncommitted work is dropped.
//
// # Outages
//
// Every franz-go client retries requests forever with a backoff capped at
// 2 s (RequestRetries unbounded, RetryTimeout 0), and the producer retries
// records forever (RecordRetries unbounded, no delivery timeout), so a broker
// outage of any length stalls processing instead of failing it: the commit's
// flush keeps waiting and logs every 10 s; start-up waits for metadata and
// logs "waiting for brokers". Errors that are not transient (authorization,
// a missing topic, a record the broker refuses) are fatal.
//
// # Shutdown
//
// Shutdown commits, closes every task and leaves the group explicitly with
// a LeaveGroup naming the static instance id (franz-go does not send one for
// static members), unless KeepPartitionsOnClose is set.
package engine
