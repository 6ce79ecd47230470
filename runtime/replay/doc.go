// Package replay records the records of chosen topics, replays a recording
// through a topology with the test driver (runtime/choreotest), and diffs
// what two topology versions make of the same recording: the way to see
// what a change of a topology does to real traffic before deploying it.
//
// A Recording comes from a live cluster (Capture: every committed record
// of the topics, read-committed) or from a test (FromDriver), and is saved
// as JSON lines (Save, Load): a header with the format version and the
// partition counts, then one record per line with its topic, partition,
// offset, timestamp, key, value and headers (bytes in base64, null for
// nil). Run feeds a recording to a topology in a deterministic order: each
// partition in offset order, the partitions merged by timestamp; records of
// topics the topology does not read are counted and skipped. The Result
// holds every record written to the topology's output and dead-letter
// topics, the final content of every store, and the records that failed.
// Diff compares two results key by key: the sequence of values each output
// key received, each store's final value per key, and the failures.
// Offsets and timestamps are not compared.
//
// examples/replay is a command built on it, for the order topology.
package replay
