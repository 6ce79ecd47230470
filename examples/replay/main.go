// Command replay records the order topics and replays a recording through
// two versions of the order topology, printing how their outputs and
// stores differ (runtime/replay). No broker is needed to replay.
//
//	go run ./examples/replay generate -o orders.jsonl -events 20000
//	go run ./examples/replay record -brokers localhost:9092 -o orders.jsonl   # TLS/SASL: CHOREO_* or -tls-ca, -sasl-user, ...
//	go run ./examples/replay diff -in orders.jsonl -a orders -b orders-truck-discount
//
// Versions: orders (examples/orders as it is) and orders-truck-discount
// (trucks priced 10% lower: a deliberate change).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/choreo-go/choreo/examples/orders/orders"
	"github.com/choreo-go/choreo/runtime"
	"github.com/choreo-go/choreo/runtime/replay"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// versions are the topology versions the command can compare.
var versions = map[string]func(*runtime.Builder){
	"orders": func(b *runtime.Builder) { orders.Topology(b) },
	"orders-truck-discount": func(b *runtime.Builder) {
		orders.TopologyPriced(b, func(e orders.LineEvent, p orders.Product) orders.PricedLine {
			if p.Family == "truck" {
				p.UnitPriceCents = p.UnitPriceCents * 9 / 10
			}
			return orders.Price(e, p)
		})
	},
}

func versionNames() string {
	var names []string
	for n := range versions {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: replay generate|record|diff [flags] (-h for each)")
		return 2
	}
	fs := flag.NewFlagSet("replay "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	var err error
	switch args[0] {
	case "generate":
		out := fs.String("o", "orders.jsonl", "recording file to write")
		events := fs.Int("events", 20000, "order-line events")
		seed := fs.Uint64("seed", 1, "generator seed")
		parts := fs.Int("partitions", 6, "partitions of the recorded topics")
		if fs.Parse(args[1:]) != nil {
			return 2
		}
		err = generate(*out, *events, *seed, int32(*parts), stdout)
	case "record":
		out := fs.String("o", "orders.jsonl", "recording file to write")
		brokers := fs.String("brokers", "localhost:9092", "seed brokers")
		topics := fs.String("topics", orders.TopicProducts+","+orders.TopicOrderLines, "topics to record")
		// TLS and SASL as in examples/orders: CHOREO_* variables, then flags.
		sec, serr := runtime.SecurityFromEnv()
		if serr != nil {
			fmt.Fprintln(stderr, "replay:", serr)
			return 2
		}
		sec.RegisterFlags(fs)
		if fs.Parse(args[1:]) != nil {
			return 2
		}
		var opts []kgo.Opt
		if opts, err = sec.ClientOpts(); err == nil {
			err = record(ctx, *out, append(opts, kgo.SeedBrokers(strings.Split(*brokers, ",")...)), strings.Split(*topics, ","), stdout)
		}
	case "diff":
		in := fs.String("in", "orders.jsonl", "recording to replay")
		a := fs.String("a", "orders", "version A: "+versionNames())
		b := fs.String("b", "orders-truck-discount", "version B")
		limit := fs.Int("limit", 20, "differences to print (0: all)")
		if fs.Parse(args[1:]) != nil {
			return 2
		}
		var same bool
		same, err = diff(*in, *a, *b, *limit, stdout)
		if err == nil && !same {
			return 1 // like diff(1): the versions differ
		}
	default:
		fmt.Fprintf(stderr, "unknown command %q: generate, record or diff\n", args[0])
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "replay:", err)
		return 2
	}
	return 0
}

// generate writes a recording of the generated order load, partitioned
// like the default producer would.
func generate(path string, events int, seed uint64, parts int32, w io.Writer) error {
	o := orders.DefaultOptions(seed)
	o.Lines = orders.LinesFor(events)
	o.MaxEvents = events
	o.Products = min(o.Products, max(events/20, 10))
	o.PriceChanges, o.Deletes = events/200, events/2000
	items, err := orders.Generate(o)
	if err != nil {
		return err
	}
	rec := &replay.Recording{Partitions: map[string]int32{orders.TopicProducts: parts, orders.TopicOrderLines: parts}}
	next := map[string]map[int32]int64{}
	for it := range items {
		kr, err := it.Record()
		if err != nil {
			return err
		}
		kr.Partition = orders.PartitionFor(it.Key, parts)
		if next[kr.Topic] == nil {
			next[kr.Topic] = map[int32]int64{}
		}
		kr.Offset = next[kr.Topic][kr.Partition]
		next[kr.Topic][kr.Partition]++
		rec.Records = append(rec.Records, replay.FromKafka(kr))
	}
	if err := rec.Save(path); err != nil {
		return err
	}
	fmt.Fprintf(w, "wrote %d records to %s\n", len(rec.Records), path)
	return nil
}

// record captures topics from a running cluster; opts carry the seed
// brokers and the security settings.
func record(ctx context.Context, path string, opts []kgo.Opt, topics []string, w io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	rec, err := replay.Capture(ctx, opts, topics...)
	if err != nil {
		return err
	}
	if err := rec.Save(path); err != nil {
		return err
	}
	fmt.Fprintf(w, "recorded %d records of %s to %s\n", len(rec.Records), strings.Join(topics, ", "), path)
	return nil
}

func topology(name string) (*runtime.Topology, error) {
	add, ok := versions[name]
	if !ok {
		return nil, fmt.Errorf("unknown version %q (have %s)", name, versionNames())
	}
	b := runtime.NewBuilder()
	add(b)
	return b.Build()
}

// diff replays the recording through versions a and b and prints the
// report; same is true when they agree.
func diff(path, a, b string, limit int, w io.Writer) (same bool, err error) {
	rec, err := replay.Load(path)
	if err != nil {
		return false, err
	}
	var results [2]*replay.Result
	for i, name := range []string{a, b} {
		topo, err := topology(name)
		if err != nil {
			return false, err
		}
		start := time.Now()
		res, err := replay.Run(topo, runtime.Config{ApplicationID: orders.AppID}, rec)
		if err != nil {
			return false, fmt.Errorf("%s: %w", name, err)
		}
		fmt.Fprintf(w, "%s: replayed %d records (%d of other topics ignored, %d failed) in %v: %d portfolio updates\n",
			name, res.Piped, res.Ignored, len(res.Errors), time.Since(start).Round(time.Millisecond), len(res.Outputs[orders.TopicPortfolio]))
		results[i] = res
	}
	rep := replay.Diff(results[0], results[1])
	fmt.Fprintf(w, "A = %s, B = %s\n", a, b)
	fmt.Fprint(w, rep.Format(asJSON, limit))
	return rep.Equal(), nil
}

// asJSON renders the msgpack values of the order topics and stores as
// JSON; other bytes as replay.Printable does.
func asJSON(_ string, v []byte) string {
	var m map[string]any
	if v == nil || msgpack.Unmarshal(v, &m) != nil {
		return replay.Printable(v)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return replay.Printable(v)
	}
	return string(b)
}
