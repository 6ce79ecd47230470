// Package engine runs a compiled processor graph (internal/graph) as one
// member of the application's consumer group. It knows nothing of the typed
// DSL: it instantiates nodes per task, feeds them records and commits.
//
// # Tasks and the loop
//
// A task is (sub-topology, partition). One loop goroutine polls the group
// consumer, appends fetched records to per-partition queues of their task
// and processes every task in turn (on ProcessingThreads goroutines). When
// fewer than MaxPollRecords records are left queued it polls again without
// waiting, so the consumer's buffer is drained, and franz-go's next fetch
// sent, while the queued records are processed: a repartitioning topology
// otherwise idles for a fetch round trip whenever its queues run dry.
// Within a task the next record is taken
// from the partition whose head has the lowest timestamp. A task with an
// empty partition waits for it (KIP-695) while the partition is known to
// have records still to fetch (its position is below its last stable
// offset), or while that is not known yet — franz-go returns nothing for an
// empty partition, so the loop probes the last stable and start offsets —
// up to 5 s; with MaxTaskIdle > 0 it also waits that long for a caught-up
// partition. Transaction markers are kept by the consumer only to move a
// partition's position past a transaction's end.
//
// Each record runs inside a savepoint of the task's state.Batch: an error or
// a panic rolls back its store writes and drops the records it sent, then the
// error policy decides (fail the app or skip the record). Sends of a
// successful record go to the producer at once; store writes stay in the
// batch until the commit.
//
// # Commit (at-least-once)
//
// Every CommitInterval, when pending writes pass a size cap (CommitMaxBytes
// of state.Batch.Bytes summed over the tasks, or CommitMaxRecords distinct
// keys), before a revocation and on shutdown: produce the dirty store
// entries of each task to its changelog partitions (one record per key,
// the latest value) → flush the producer → apply each task's batch with a
// checkpoint holding those changelog offsets and the processed input
// offsets, in one Pebble batch (the tasks' batches on up to
// ProcessingThreads goroutines at once) → commit the input offsets to the
// group. Repartition topics are then purged
// below the committed offsets (at most every 30 s).
//
// # Commit (exactly-once)
//
// One franz-go GroupTransactSession per instance (transactional id
// <app>-<instance>): the loop is always inside a transaction. Every
// CommitInterval the dirty store entries go to the changelogs inside it and
// the session ends it, committing the processed input positions (set on the
// TxnOffsetCommit request through PreTxnCommitFnContext — the session alone
// would commit the polled ones, including records a task has not processed
// yet). Only when the transaction committed are the store batches applied
// with their checkpoints. A revocation or loss dooms the open transaction:
// it is aborted, every task drops its pending work and the consumer rewinds
// to the committed positions. An error from ending it (outcome unknown,
// producer fenced after a long outage), or an End still blocked after twice
// the transaction timeout (the broker has aborted the transaction by then),
// closes every task and the session and joins again with a new one; tasks
// reopen and replay their changelog tails. A commit blocked by an outage when
// the app is told to stop gives up CloseTimeout later, like the final commit.
//
// # Memory
//
// An instance's memory grows with what it holds between commits, not with
// its state, which lives in Pebble: the pending writes of every task
// (bounded by CommitMaxBytes: reaching it triggers a commit), the
// changelog records a commit produces from them (one per pending key,
// until the flush), the fetched records not processed yet (the group
// consumer fetches at most DefaultFetchMaxBytes at a time unless
// ClientOpts say otherwise, and the loop processes a poll's records
// before the next poll), and Pebble's cache and memtables outside the Go
// heap (StateCacheBytes, StateMemTableBytes). A task's batch keeps its
// index for reuse only up to some thousand keys, so idle tasks do not
// hold the memory of their largest commit.
//
// # Bad records
//
// A record that fails (deserialization, processing error or panic) is rolled
// back, then Config.OnError decides: fail the app, skip it, or send its
// original bytes to the dead-letter topic with KIP-1034 headers. An output
// record larger than its topic's max.message.bytes is caught in Send, before
// it could fail a producer batch, and handled the same way alone.
//
// # Rebalance and restore
//
// The group uses the task balancer of package partition (cooperative, all
// partitions of a task on one member). Callbacks are gated with the loop by
// franz-go's BlockRebalanceOnPoll and by Engine.mu. On assignment a task
// opens its DB and its input partitions are paused. Once franz-go has
// fetched the group's committed offsets (which waits for pending
// transactions, so changelog end offsets are final), the input is
// positioned at the larger of the committed offset and the checkpoint's
// input offset for the same topic id (a local restart after a crash between
// store commit and offset commit does not apply input twice), and the
// changelog Restorer replays the task's changelogs from the checkpoint in
// the background while other tasks keep processing. When the restore
// completes the loop instantiates the processors and resumes fetching. On
// revocation (at-least-once) every task commits and the revoked ones close;
// on loss (session expired) their uncommitted work is dropped. The app is
// Running only when every task the group's latest assignment gives it is
// open and restored: franz-go hands new tasks over only after the loop's
// current poll round, and the state stays Rebalancing until then.
//
// # Interactive queries
//
// query.go keeps what queries read apart from Engine.mu, which the loop
// holds through a poll round and its commit (for the length of an
// outage): the DB of every task here, restoring or active, and the
// group's latest AssignmentInfo. Each member advertises
// Config.ApplicationServer in its balancer UserData (a version byte and
// the length-prefixed host:port); the balancer delivers the whole
// assignment to every member, so KeyOwner maps a serialized key to its
// partition (murmur2 over the leader's task count of the store's
// sub-topology, found by topic), its task and that task's owner.
// StoreGet reads the task's DB (committed state, never the pending batch)
// when the task is active here, else reports ErrStoreNotReady (restoring,
// or assigned here but not opened yet) or a *NotLocalError. StoreRange
// merges per-task iterators by key. A task closing closes its DB under
// any reader; the reader then fails with state.ErrClosed, reported as
// ErrStoreNotReady, so queries never delay a revocation.
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
// # Metrics
//
// metrics.go holds the Prometheus collector (Engine.Collector). The hot
// path does no label lookups: a task tallies processed records per input
// partition and sent records per topic in plain fields on its own
// goroutine, and the per-task atomics take the tallies once per fetched
// partition or per run of up to 500 records; acknowledged records are
// counted in the producer promises by topic; the gauges the
// loop owns (consumer lag, task phases, the task DBs whose size is read at
// scrape time) are copied into a snapshot at the end of each loop
// iteration; restore progress comes from a changelog.Listener chained in
// front of the user's. Collect turns all of it into constant metrics.
//
// # Driver
//
// driver.go runs the same tasks without brokers for runtime/choreotest:
// every task of every sub-topology opens at once on in-memory stores;
// produce (the one path by which tasks, changelog writes and dead letters
// reach Kafka) hands records to the driver's sink instead of the producer,
// which appends them to in-memory partitions and queues them for the task
// reading that topic; records are processed in the order they were
// written, and after each piped record or clock move the driver commits
// with the engine's own produceChangelogs and applyBatches. planInternalTopics
// derives repartition and changelog partition counts from declared counts,
// as setupTopics does from the broker's.
//
// # Access rights
//
// RequiredACLs derives the ACLs the app needs from the topology (auth.go).
// After the topics are set up, checkACLs compares them with what the broker
// reports (authorized operations in metadata and DescribeGroups) and names
// each missing right in an *AuthorizationError. Denials found later (topic
// creation, the transactional id, fetch, produce, commit, the repartition
// purge) are named at the request; explain asks the broker again for any
// denial that does not name its right yet. SASL refusals (also a broker
// closing the connection during authentication three times in a row) and
// certificate failures in the TLS handshake wrap ErrAuthentication. None of
// these is retried.
//
// # Shutdown
//
// Shutdown commits, closes every task and leaves the group explicitly with
// a LeaveGroup naming the static instance id (franz-go does not send one for
// static members), unless KeepPartitionsOnClose is set.
package engine
