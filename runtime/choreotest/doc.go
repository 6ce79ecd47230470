// Package choreotest runs a choreo topology in-process, without brokers,
// deterministically: the test driver of choreo, like Kafka Streams'
// TopologyTestDriver.
//
// The driver runs the runtime's own tasks (internal/engine): the same
// record processing, store batches with per-record savepoints, error
// policies and dead-letter records, and punctuation as a running App, on
// in-memory stores. Only Kafka is replaced. A record piped into an input
// topic is appended to an in-memory partition (chosen from the key by the
// default partitioner unless given) and processed to the end before the
// call returns: what it produces to a topic the topology reads (a
// repartition topic, or a user topic read downstream) is processed in
// turn, records in the order they were written. Then the driver commits as
// the engine does, so stores and changelog topics reflect every piped
// record. Time moves only when told: record timestamps drive stream time
// and stream-time punctuators; AdvanceWallClock moves the wall clock and
// fires wall-clock punctuators.
//
//	d, err := choreotest.New(topo, runtime.Config{ApplicationID: "orders"},
//		choreotest.WithPartitions("order-lines", 6))
//	in := choreotest.Input(d, "order-lines", runtime.String(), runtime.JSON[Line]())
//	out := choreotest.Output(d, "order-portfolio", runtime.String(), runtime.JSON[Portfolio]())
//	err = in.Pipe("O1", Line{...})
//	rec, err := out.Read()
//	pf, ok, err := choreotest.Table(d, portfolio).Get("C1")
//
// Every topic starts with one partition unless WithPartitions says
// otherwise; repartition and changelog topics derive their counts as on a
// cluster, and a task exists per sub-topology and partition. Records, also
// of internal and dead-letter topics, can be read raw with Records, which
// is what the replay tool (package runtime/replay) builds on.
package choreotest
