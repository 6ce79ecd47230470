package bench

import (
	"fmt"
	"time"
)

// Scale selects the sizes of a run.
type Scale string

// Scales.
const (
	// Full is the whole suite of issue 6 (≤ 15 minutes on 2 cores).
	Full Scale = "full"
	// Quick is a smaller run (≤ 2 minutes).
	Quick Scale = "quick"
	// Tiny checks the harness end to end in seconds (tests).
	Tiny Scale = "tiny"
)

// latencyStep is one W4 latency run: a multiple of the peak rate for a
// duration.
type latencyStep struct {
	Multiple float64
	Duration time.Duration
}

// sizes are the record counts of a run.
type sizes struct {
	// Records of the baselines, W1 and W2 (100-byte values).
	Records int64
	// Keys is the small key space (W2, baselines).
	Keys int
	// BigKeys is the large key space (W2, W3's table, stateful ceiling).
	BigKeys int
	// ValueSize in bytes.
	ValueSize int
	// StreamRecords is W3's input after the table is loaded: stream
	// records and table updates together.
	StreamRecords int64
	// UpdateEvery makes every UpdateEvery-th W3 input record a table
	// update (100: 1%).
	UpdateEvery int
	// OrderEvents of the W4 burst (140,000: the peak hour).
	OrderEvents int
	// Latency are W4's latency runs.
	Latency []latencyStep
	// DrainTimeout bounds the wait for a latency run's backlog.
	DrainTimeout time.Duration
	// RestoreKeys is W5's changelog size; RestoreTail its warm tail.
	RestoreKeys int
	RestoreTail int
	// RSSKeys is the key count of the state-size run (0: skipped).
	RSSKeys int
	// PhaseTimeout bounds every phase (a safety net, not a measurement).
	PhaseTimeout time.Duration
}

func sizesFor(s Scale) (sizes, error) {
	switch s {
	case Full:
		return sizes{
			Records: 1_000_000, Keys: 10_000, BigKeys: 1_000_000, ValueSize: 100,
			StreamRecords: 1_000_000, UpdateEvery: 100,
			OrderEvents: 140_000,
			Latency: []latencyStep{
				{1, 60 * time.Second}, {100, 30 * time.Second}, {1000, 30 * time.Second},
			},
			DrainTimeout: 45 * time.Second,
			RestoreKeys:  1_000_000, RestoreTail: 10_000,
			RSSKeys:      10_000_000,
			PhaseTimeout: 10 * time.Minute,
		}, nil
	case Quick:
		return sizes{
			Records: 200_000, Keys: 10_000, BigKeys: 200_000, ValueSize: 100,
			StreamRecords: 200_000, UpdateEvery: 100,
			OrderEvents: 28_000,
			Latency: []latencyStep{
				{1, 5 * time.Second}, {100, 3 * time.Second}, {1000, 2 * time.Second},
			},
			DrainTimeout: 15 * time.Second,
			RestoreKeys:  200_000, RestoreTail: 2_000,
			PhaseTimeout: 2 * time.Minute,
		}, nil
	case Tiny:
		return sizes{
			Records: 5_000, Keys: 500, BigKeys: 5_000, ValueSize: 100,
			StreamRecords: 5_000, UpdateEvery: 100,
			OrderEvents: 2_000,
			Latency: []latencyStep{
				{1, 2 * time.Second}, {100, time.Second}, {1000, 100 * time.Millisecond},
			},
			DrainTimeout: 30 * time.Second,
			RestoreKeys:  5_000, RestoreTail: 100,
			PhaseTimeout: 2 * time.Minute,
		}, nil
	}
	return sizes{}, fmt.Errorf("bench: unknown scale %q", s)
}
