//go:build !race

package bench

// raceEnabled reports whether this binary was built with -race.
const raceEnabled = false
