// Package apptest gives the module's own tests hooks into a runtime.App that
// users must not have (simulating a crash without a real process kill),
// and a goroutine-safe Buffer to collect logs.
package apptest

// CrashOnClose, set by package runtime, makes the given *runtime.App abandon
// everything when its Run context ends — no commit, no flush of pending
// work, no LeaveGroup — as a killed process would.
var CrashOnClose func(app any)

// Crash points for CrashAt.
const (
	// AfterFlush: outputs and changelog records are in Kafka; stores and
	// group offsets are not updated.
	AfterFlush = 1
	// AfterStoreCommit: stores and their checkpoints are written; the
	// group offsets are not committed.
	AfterStoreCommit = 2
)

// CrashAt, set by package runtime, arms the given *runtime.App so that its
// next commit stops at point (AfterFlush or AfterStoreCommit) and the app
// then abandons everything as a killed process would. Run returns an error.
var CrashAt func(app any, point int)
