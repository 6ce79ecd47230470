// Command load produces benchmark load into a Kafka cluster (see package
// bench/load): keyed records of a chosen size, keys uniform or Zipf over N
// keys, at a rate or as fast as possible; or, with -orders, the order
// events of the order-portfolio scenario. Every record carries the
// creation-time header choreo-created-ns for latency measurements.
//
//	go run ./bench/cmd/load -brokers 127.0.0.1:9092 -topic in -keys 10000 -count 1000000
//	go run ./bench/cmd/load -brokers 127.0.0.1:9092 -topic in -dist zipf -rate 5000 -duration 30s
//	go run ./bench/cmd/load -brokers 127.0.0.1:9092 -orders -rate 100x -events 117000
//
// Topics are created (with -partitions) when missing. When done it prints
// one JSON line with the records and bytes produced and the time taken.
//
// TLS and SASL are set like the order example's: the CHOREO_TLS* and
// CHOREO_SASL* environment variables, overridden by -tls, -tls-ca,
// -tls-cert, -tls-key, -tls-server-name, -sasl-mechanism, -sasl-user and
// -sasl-password-file (the password only in CHOREO_SASL_PASSWORD or a
// file).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/bench/load"
	"github.com/choreo-go/choreo/examples/orders/orders"
	"github.com/choreo-go/choreo/runtime"
)

func main() { os.Exit(run(os.Args[1:])) }

// parseRate reads events/s: a number, "peak" (the 39/s of the peak hour)
// or a multiple of it such as "100x".
func parseRate(s string) (float64, error) {
	switch {
	case s == "" || s == "0" || s == "max":
		return 0, nil
	case s == "peak":
		return orders.PeakRate, nil
	case strings.HasSuffix(s, "x"):
		m, err := strconv.ParseFloat(strings.TrimSuffix(s, "x"), 64)
		if err != nil || m < 0 {
			return 0, fmt.Errorf("bad rate %q", s)
		}
		return m * orders.PeakRate, nil
	}
	r, err := strconv.ParseFloat(s, 64)
	if err != nil || r < 0 {
		return 0, fmt.Errorf("bad rate %q", s)
	}
	return r, nil
}

func run(args []string) int {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	var (
		brokers    = fs.String("brokers", "", "comma-separated seed brokers (required)")
		topic      = fs.String("topic", "load", "topic to produce to (keyed load)")
		partitions = fs.Int("partitions", 6, "partitions of topics created here")
		keys       = fs.Int("keys", 10_000, "number of distinct keys")
		dist       = fs.String("dist", "uniform", "key distribution: uniform or zipf")
		zipfS      = fs.Float64("zipf-s", load.DefaultZipfS, "Zipf exponent (> 1)")
		size       = fs.Int("size", 100, "value size in bytes")
		count      = fs.Int64("count", 0, "records to produce (0 with -duration: until it ends)")
		rateS      = fs.String("rate", "max", "records (or events) per second: a number, max, peak (39/s) or a multiple like 100x")
		duration   = fs.Duration("duration", 0, "stop after this long")
		seed       = fs.Uint64("seed", 1, "random seed: the same seed yields the same load")
		noHeader   = fs.Bool("no-header", false, "leave out the choreo-created-ns header")
		ordersMode = fs.Bool("orders", false, "produce the order scenario (products, order-lines) instead of keyed records")
		events     = fs.Int("events", orders.DefaultEvents, "order-line events (-orders)")
		customers  = fs.Int("customers", orders.DefaultCustomers, "customers (-orders)")
		products   = fs.Int("products", orders.DefaultProducts, "products (-orders)")
		skew       = fs.Float64("skew", orders.DefaultSkew, "Zipf exponent of customers, 0 = uniform (-orders)")
		idBase     = fs.Int("idbase", 0, "order number and seq offset, to add orders after an earlier load (-orders)")
	)
	sec, err := runtime.SecurityFromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		return 2
	}
	sec.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	rate, err := parseRate(*rateS)
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		return 2
	}
	if *brokers == "" {
		fmt.Fprintln(os.Stderr, "load: -brokers is required")
		return 2
	}
	secOpts, err := sec.ClientOpts()
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	cl, err := kgo.NewClient(append(append(orders.ProducerOpts(), kgo.SeedBrokers(strings.Split(*brokers, ",")...)), secOpts...)...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		return 1
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	var st load.Stats
	if *ordersMode {
		if err := orders.CreateTopics(ctx, adm, int32(*partitions)); err != nil {
			fmt.Fprintln(os.Stderr, "load:", err)
			return 1
		}
		o := orders.Options{
			Products:  *products,
			Lines:     orders.LinesFor(*events),
			Customers: *customers,
			Skew:      *skew,
			Seed:      *seed,
			Rate:      rate,
			MaxEvents: *events,
			IDBase:    *idBase,
		}
		st, err = load.ProduceOrders(ctx, cl, o, nil)
	} else {
		d, derr := load.ParseDist(*dist)
		if derr != nil {
			fmt.Fprintln(os.Stderr, derr)
			return 2
		}
		s := load.Spec{Topic: *topic, Keys: *keys, Dist: d, ZipfS: *zipfS, ValueSize: *size,
			Count: *count, Rate: rate, Duration: *duration, Seed: *seed, NoHeader: *noHeader}
		if err := s.Validate(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		if err := load.CreateTopic(ctx, adm, *topic, int32(*partitions), false); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		st, err = load.Produce(ctx, cl, s, nil)
	}
	out, _ := json.Marshal(struct {
		load.Stats
		RatePerSec float64 `json:"rate_per_s"`
		Error      string  `json:"error,omitempty"`
	}{st, st.Rate(), errString(err)})
	fmt.Println(string(out))
	if err != nil {
		if ctx.Err() != nil {
			return 130
		}
		return 1
	}
	return 0
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
