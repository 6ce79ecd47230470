// Package crashtest holds the crash test of issue 3 (exactly-once,
// crash-consistent state): a test program (cmd/app) runs a choreo App as a
// real child process on an embedded broker that lives in the test process;
// the test kills it with SIGKILL at random moments, restarts it on the same
// state directory (sometimes deleted first), and checks the outputs:
//
//   - count topology, exactly-once: the committed output of every key is
//     exactly 1, 2, …, n, each carrying the sequence number of its input in
//     order (no gap, no repeat); at-least-once: no gap, repeats counted;
//   - orders topology (examples/orders): exactly-once, the final portfolio
//     equals the model; at-least-once, the lines table equals the model
//     and portfolio differences are reported;
//   - every restart that reaches RUNNING replayed exactly the committed
//     changelog records after its checkpoints, counted by the test's own
//     read-committed consumer;
//   - the warm path, deterministically: a crash between the Kafka commit
//     and the store commit replays exactly the changelog tail, and an
//     at-least-once restart after the store commit resumes from the
//     checkpointed input offsets (no input applied twice).
//
// The default run is short (a few kills, ~20k events per combination); the
// long run of the acceptance sits behind a flag:
//
//	go test ./internal/crashtest -crash.long -timeout 60m -v
//
// Other flags: -crash.kills, -crash.events, -crash.seed, -crash.log (the
// child's log level; its stderr goes to a file whose tail is printed on
// failure).
package crashtest
