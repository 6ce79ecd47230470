// Package runtime is choreo's public API: a typed DSL and a processor API
// to declare a stream-processing topology, the serdes that put typed
// records on the wire, and the App that runs a topology against Kafka.
//
// # From DSL to running tasks
//
// A topology goes through three stages:
//
//  1. The DSL. A Builder collects operators: StreamOf and TableOf read
//     topics, Filter, Map, GroupBy, Count, Join and the others derive new
//     streams and tables, To writes topics, Process adds user processors.
//     Every call adds typed nodes to a processor graph
//     (internal/graph). Mistakes (duplicate names, serdes of the wrong
//     type, misplaced options) are collected and reported by Build.
//  2. The compile step. Build validates the graph and splits it into
//     sub-topologies: parts connected by direct edges or shared stores,
//     cut at repartition topics. It records which source topics must be
//     co-partitioned (all sources of a sub-topology; a stream–table join's
//     stream and table) and which repartition partition counts are known
//     statically. Topology.Describe prints the result like Kafka Streams.
//  3. The engine. An App runs one task per (sub-topology, partition). For
//     each task it creates the node instances once, children before
//     parents, and hands every input record to the source that reads its
//     topic. Node instances hold their children already type-asserted, so
//     the per-record path has no boxing, reflection or map lookups. The
//     engine knows nothing of the DSL.
//
// # Records and serdes
//
// Streams and tables are typed by key and value: Stream[K, V], Table[K, V].
// A Record carries key, value, timestamp (ms) and headers; headers and
// timestamps pass through every operator unchanged, so a correlation id set
// upstream reaches every output. Aggregations emit with the timestamp of
// the input record that changed them.
//
// A Serde converts a type to bytes and back: String, Bytes, Int64 (8 bytes
// big-endian, like Kafka's LongSerializer), JSON, Msgpack, or your own.
// Operators that produce a new key or value type use DefaultSerde unless
// given WithKeySerde or WithValueSerde, whose type is checked by Build.
// Serde failures wrap ErrSerde; a source returns them wrapped in a
// *graph.Error naming the source node, for the App's error handler.
//
// A nil value on the wire is a tombstone (Record.Tombstone, zero Value);
// a nil key becomes the zero key and is written back as nil. Tombstones
// pass through stream operators (value mappers forward them without
// calling the user function), are skipped by stream aggregations and
// stream–table joins, and delete keys in tables.
//
// # Tables are changelogs of changes
//
// A table forwards changes: the old and the new value of a key (an insert
// has no old value, a deletion no new one). TableOf and aggregations keep
// their table in a store whose changelog topic is <app>-<store>-changelog;
// store values are [8-byte big-endian timestamp][serialized value], so a
// table's timestamps survive a restore. Filter and MapTableValues derive
// tables without a store of their own. ToStream turns changes into records
// (a deletion becomes a tombstone). GroupTable regroups a table: a row that
// moves to another group is subtracted from the old group and added to the
// new one; a row that stays travels as one record, and the aggregate emits
// one update.
//
// # Repartitioning and joins
//
// Map, FlatMap, SelectKey and Process may change the key. Grouping such a
// stream, or joining it with a table, first routes it through a repartition
// topic <app>-<name>-repartition, so that records with equal keys meet in
// the same task. A stream–table join runs in the table's task: its stream
// and table source topics must be co-partitioned (same partition count,
// keys partitioned alike — murmur2, as the Java client does), which the App
// checks at startup; a join's repartition topic takes the table's partition
// count.
//
// # Names
//
// Named gives an operator an explicit name. For stateful operators it also
// names the store (and so the changelog topic); for Repartition, GroupBy,
// GroupByKey, GroupTable and a repartitioning join it names the repartition
// topic. Operators without a name get a derived one, as in Kafka Streams:
// KSTREAM-FILTER-0000000003, KSTREAM-AGGREGATE-STATE-STORE-0000000004. A
// derived name changes when an operator is added upstream, and with it the
// changelog and repartition topics: name every stateful operator and
// repartition of a production topology. Duplicate names are a Build error.
//
// # Interactive queries
//
// Query(app, table) gives typed, read-only access to the store of a
// materialized table — TableOf, or an aggregation (Count, Reduce,
// Aggregate, CountTable, ReduceTable, AggregateTable) — while the app
// runs: Get(ctx, k), and Range(ctx, from, to) and All(ctx) as
// iter.Seq2[Row[K, V], error]. Reads go to the task's DB, never to the
// batch of writes pending until the next commit, so they return committed
// state (under ExactlyOnce: state whose transaction committed). A
// reader never holds a task open: if the task closes meanwhile (revoked,
// app stopping) the read ends with ErrStoreNotReady, and a slow reader
// cannot hold up a rebalance. Keys and values are decoded with the
// table's serdes, through the same [timestamp][value] store format the
// operators use; a Row carries the timestamp.
//
// Each instance answers for the tasks it runs. Config.ApplicationServer
// (host:port, Kafka Streams' application.server) is advertised in the
// group's member metadata, and the group leader's task balancer sends the
// whole assignment, with every member's endpoint, to every member in each
// rebalance. So on any instance TableQuery.KeyOwner(k) serializes k with
// the table's key serde, picks its partition with murmur2 over the
// store's task count, and names the task's owner (instance id, host:port,
// whether it is this instance); App.Instances lists every instance with
// its tasks, partitions and stores. Get answers:
//
//   - the value (or ok == false) when the key's task runs here — also
//     while a cooperative rebalance already assigns it elsewhere, until it
//     is revoked;
//   - a *NotLocalError (ErrNotLocal) naming the owner when another
//     instance owns it;
//   - ErrStoreNotReady when the task is assigned here but still opening or
//     restoring (as in Kafka Streams, a restoring store is not queryable),
//     before the first assignment, and when the app is not running.
//
// Range and All read every task of the store that runs here, merged into
// one ascending order of serialized keys (byte-wise: String keys sort as
// strings, Int64 keys as big-endian bytes); each task's part is a snapshot
// taken when the iteration starts. from is included and to excluded. They
// yield ErrStoreNotReady while any local task of the store restores, so a
// partial answer never looks complete. The whole table is the union of
// every instance's All.
//
// # Processor API
//
// Process adds a user Processor, created once per task by a supplier. It
// receives records, forwards records of any key and value type through its
// ProcessorContext, schedules stream-time or wall-clock punctuators, and
// uses the stores it declared (AddStore, opened typed with OpenStore).
//
// # Operations
//
// App.Handler serves /healthz, /readyz, /topology and /metrics. The
// metrics (choreo_*: records consumed, processed and produced, process and
// commit latency, consumer lag per partition, restore progress, state
// sizes, rebalances, app state, skipped and dead-lettered records) are
// listed with their labels in the README's Metrics section. They go to a
// registry of the App's own unless Config.MetricsRegisterer names one;
// App.MetricsGatherer and App.MetricsCollector serve users who expose
// metrics themselves.
//
// # Security
//
// Config.Security sets TLS (CA file, client certificate and key, server
// name, or a *tls.Config) and SASL (PLAIN, SCRAM-SHA-256/512, OAUTHBEARER
// with a token source) for every client the app opens; SecurityFromEnv and
// Security.RegisterFlags read them from CHOREO_* variables and flags. The
// password is a Secret, printed as "[redacted]" everywhere. App.RequiredACLs
// lists the ACLs the principal needs: Read and DescribeConfigs on input
// topics, Write and DescribeConfigs on output topics, Create, Read, Write,
// Delete and DescribeConfigs on internal topics (prefixed "<ApplicationID>-"),
// Read on the group, and Write on transactional ids (prefixed, exactly-once
// only). Run checks at start-up what the broker reports (topic operations
// through metadata, group operations through DescribeGroups) and fails with
// an *AuthorizationError (ErrNotAuthorized) naming the missing right; a
// right denied later (Create, the transactional id, a revoked ACL) fails the
// same way at the first refused request. Refused credentials or
// certificates fail with ErrAuthentication. None of these is retried.
package runtime
