// Package bench is choreo's benchmark harness (issue 6): it measures choreo
// under load against its own limits, in one run, on one machine.
//
// # What runs where
//
// The broker (internal/testbroker/cmd/broker: franz-go's kfake on loopback with a data
// directory) is a child process, built once with the go command, so the
// code under test is a client of a broker as in production and the
// broker's CPU and memory stay out of the figures. Every workload runs its
// choreo App (or a hand-written baseline loop) inside the measuring
// process, and reads input that was produced before it started (preload),
// so the load generator's CPU is not counted either. Only the latency
// runs of W4 produce while the App runs: their load comes from another
// child process (cmd/load), so it shares the machine but not the App's
// heap and CPU accounting.
//
// With Options.Brokers the harness runs against an existing cluster
// instead of its own broker, with Options.Security (TLS, SASL) on every
// client, the load generator's included; the broker's CPU is then not
// measured.
//
// # How a workload is measured
//
// Every franz-go client of the code under test carries a hook (kgo.WithHooks
// through runtime.Config.ClientOpts for the App) that counts the records
// fetched and produced per topic. The measured window opens when the first
// batch of an input topic is fetched and closes when the last output record
// is acknowledged by the broker (a restore closes at its last restored
// partition). At both ends the hook reads the process CPU time
// (getrusage), so "CPU s per million records" is the whole process's CPU
// in the window: the App, its franz-go clients and Pebble, plus the
// harness's own samplers (negligible). Peak RSS is the highest resident
// set size sampled every 20 ms during the phase (process-wide, after a GC
// and a return of free memory to the OS before each phase). The broker's
// CPU in the window is read from /proc/<pid>/stat.
//
// Throughput is input records per second over the window; "moved" counts
// every record fetched plus every record produced by the code under test
// over all hops (inputs, repartition topics both ways, changelogs,
// outputs). For choreo, changelog records written by the final commit
// after the last output are counted as moved but their wait for the
// commit interval is not timed.
//
// # Baselines (same run, fixed settings)
//
// Six partitions, franz-go defaults plus 10 ms linger, a consumer group
// committing every second (after a flush), Pebble written in one batch per
// poll with NoSync:
//
//   - passthrough: raw consume → produce, the stateless ceiling;
//   - stateful ceiling: raw consume → read-modify-write of a count in
//     Pebble → produce the count to the output and to a changelog;
//   - pebble: raw Pebble batch writes, no Kafka;
//   - raw consume of a changelog topic (for restores).
//
// Every choreo figure is reported with the ratio to its baseline.
//
// Run it with go run ./bench/cmd/bench (flags -quick, -workloads, -out,
// -cpuprofile); see bench/README.md for the latest results.
package bench
