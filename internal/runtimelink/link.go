// Package runtimelink lets packages of this module built on top of package
// runtime (the test driver in runtime/choreotest) reach what runtime keeps
// unexported, without widening runtime's public API. Package runtime sets
// the functions in its init; they are nil until runtime is linked in, which
// importing runtime/choreotest guarantees.
package runtimelink

import "github.com/choreo-go/choreo/internal/engine"

// EngineConfig maps a runtime.Config (passed as any: this package cannot
// import runtime) onto the engine's configuration.
var EngineConfig func(cfg any) (engine.Config, error)

// DecodeTableValue splits a table store's stored value into the record
// timestamp (ms) and the serialized value.
var DecodeTableValue func(raw []byte) (ts int64, value []byte, err error)
