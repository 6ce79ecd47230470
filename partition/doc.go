// Package partition maps records and partitions to tasks and tasks to group
// members.
//
// # Tasks
//
// A topology is split into sub-topologies: parts of the processor graph
// connected by in-memory edges, each fed by one or more source topics. A
// task is one partition of one sub-topology, TaskID{Subtopology: s,
// Partition: p}, written "s_p" as in Kafka Streams ("0_3"). Task (s, p) owns
// partition p of every source topic of sub-topology s, together with the
// state stores and changelog partitions that go with it; a task is the unit
// of parallelism, of state and of assignment. TasksFor turns a set of
// assigned partitions into the tasks they belong to.
//
// # Co-partitioning
//
// A sub-topology's source topics (for instance both sides of a stream–table
// join) must be co-partitioned: the same number of partitions, and keys
// partitioned the same way, so that records with one key meet in one task.
// CheckCopartitioned verifies the counts at start-up and reports every
// offending group, e.g.
//
//	partition: topics not co-partitioned: order-lines=6, products=3
//
// wrapping ErrNotCopartitioned (or ErrUnknownTopic for a topic that does not
// exist).
//
// # Keys and Java compatibility
//
// Murmur2 is Kafka's Utils.murmur2 bit for bit, and ForKey(key, n) is
// toPositive(murmur2(key)) % n, the partition the Java producer's default
// partitioner (and franz-go's default kgo.StickyKeyPartitioner) chooses for a
// keyed record. Java, librdkafka configured with the murmur2_random
// partitioner, franz-go and choreo producers therefore agree on the partition
// of every key, which keeps topics written by services in different languages
// co-partitioned, and tells an application which task (and, with an
// AssignmentInfo, which instance) holds a key.
//
// # The task balancer
//
// Balancer is a kgo.GroupBalancer for the classic consumer group protocol
// (protocol type "consumer", protocol name "choreo-task-v1" by default)
// that assigns whole tasks: every partition of a task goes to the same
// member. It is cooperative (KIP-429): members keep consuming what they
// keep during a rebalance, partitions that move are first revoked from their
// owner and assigned to the new owner in the rebalance that follows, which
// franz-go starts on its own.
//
// Each member joins with a kmsg.ConsumerMemberMetadata, version 3: Topics
// are its subscriptions, OwnedPartitions the partitions it currently owns
// (as the cooperative-sticky balancer encodes them), Generation the last
// generation it was part of, and UserData one version byte (1) followed by
// the uvarint-length-prefixed bytes of BalancerConfig.UserData (e.g. the
// member's host:port for interactive queries). Later versions may append
// fields.
//
// The leader balances with its own BalancerConfig.Subtopologies. Topics a
// member consumes that no sub-topology lists become one single-topic
// sub-topology each (numbered after the configured ones), so nothing is left
// unassigned while members run different topology versions. A sub-topology
// has as many tasks as its largest topic has partitions; a task gets only
// the partitions that exist. A task runs on members that consume the most
// of its sub-topology's topics (normally all of them), and a member never
// gets a partition of a topic it does not consume: a task is never split,
// so while no member consumes all of a sub-topology's topics the partitions
// its owner does not consume wait rather than run without their co-partners
// (a join task without its table side would produce wrong results). The
// leader:
//
//   - keeps each task on the member that owns its partitions; when several
//     members claim a partition (a zombie that missed a rebalance), the
//     claim with the highest generation wins, else the first member's;
//   - gives unowned tasks to the owner its previous plan chose, if still
//     there (so tasks withheld for a revocation land as planned and the
//     group settles in two rounds), else to the least loaded member;
//   - moves tasks until total task counts, and each sub-topology's task
//     counts, differ by at most one between members (when all members can
//     run all sub-topologies; otherwise as evenly as they allow), choosing
//     the moves so that as few owned tasks as possible change hands;
//   - withholds moving partitions from their new owner for one round with
//     kgo.BalancePlan.AdjustCooperative.
//
// The result is deterministic: members are ordered by instance ID, then
// member ID, and every choice breaks ties in that order, then by task.
//
// Each member's SyncGroup assignment is a kmsg.ConsumerMemberAssignment
// whose UserData carries the whole group's AssignmentInfo: the
// sub-topologies as the leader saw them, every member with its UserData and
// tasks, and the owner of every task (one byte per task for small groups).
// Balancer.LastAssignment returns the latest one (and
// BalancerConfig.OnAssignment is told of each), so any instance can find the
// owner of a key: AssignmentInfo.OwnerOf(topic, ForKey(key, n)).
package partition
