//go:build race

package crashtest

// raceEnabled scales the default run down: the race detector slows the
// child and the broker several times.
const raceEnabled = true
