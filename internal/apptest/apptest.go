// Package apptest gives the module's own tests hooks into a runtime.App that
// users must not have: simulating a crash without a real process kill.
package apptest

// CrashOnClose, set by package runtime, makes the given *runtime.App abandon
// everything when its Run context ends — no commit, no flush of pending
// work, no LeaveGroup — as a killed process would.
var CrashOnClose func(app any)
