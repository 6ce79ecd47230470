// Package orders is the order-portfolio scenario of /work/shared/ORDERS.md:
// the record formats of the `products`, `order-lines` and `order-portfolio`
// topics, a deterministic load generator and producer, the choreo topology
// that keeps an always-current portfolio per customer, and a model that
// computes the portfolio the topology must end with from the input topics
// themselves, so that events written by outside producers count too.
//
// The pieces:
//
//   - Types: [Product], [LineEvent] (the input contract), [PricedLine] (a
//     line event joined with its product: the repartitioned and stored
//     intermediate) and [Portfolio] (the output contract). All are msgpack
//     maps with the field names of the contract.
//   - Load: [Options], [Generate] (a deterministic sequence of [Item]s),
//     [Produce] (writes them with murmur2 key partitioning, optionally paced)
//     and [CreateTopics].
//   - Processing: [Topology] builds the DSL topology; [AddLine], [SubLine]
//     and [LatestLine] are its aggregation functions.
//   - Checking: [ReadInputs] reads both input topics back (read-committed, up
//     to their end offsets), [Model] / [Evaluate] compute the expected
//     portfolio and [EvaluateLines] the expected lines table,
//     [ReadPortfolioTopic] reads the latest output per customer,
//     [ReadTable] the final contents of a table from its changelog topic
//     ([ChangelogTopic]; [ReadTables] reads both tables the model
//     predicts), [Diff] and [DiffLines] compare, and [WaitProcessed] waits
//     until a consumer group has processed everything in its source topics.
//
// # The model
//
// For every line (order_id, line_no) the model takes the line's events in
// the order the topology processes them (their order in the order-lines
// partition), drops each event whose product is unknown or deleted as of the
// event's record timestamp, and keeps the remaining event with the highest
// seq, priced with the latest product version whose timestamp is not after
// the event's. Counts and open value then follow from each line's kept
// event.
//
// last_event_time is "the largest event_time that reached the customer's
// aggregate". An event reaches the aggregate when it passes the join and the
// lines table then holds it, i.e. when its seq is higher than that of every
// earlier joined event of its line: the reduce keeps the stored line for an
// event with a lower or equal seq, and the aggregate then sees the stored
// line's event_time again, not the late event's. Under the contract (a
// line's events arrive in seq order; a replay is an exact duplicate) this is
// the same as the maximum event_time over all joined events of the
// customer's lines, superseded ones included. A line's event_time is
// credited to the customer_id of that event.
//
// The model and the join agree when a product changes before the events that
// use it are produced. The generator keeps to this strictly: a product it
// changes or deletes mid-stream is not used by any line before the change,
// so no event that should see the old version can still be in flight when
// the join sees the new one, and compaction of old product versions on the
// compacted products topic cannot change the model's answer either.
package orders
