package graph

import "errors"

// ErrDeserialization marks an error raised by a source that could not decode
// an input record, so the engine can route it to the deserialization handler.
// Sources wrap their serde errors with it (fmt.Errorf("...: %w: %w", ErrDeserialization, err)).
var ErrDeserialization = errors.New("deserialization failed")

// IsDeserialization reports whether err is (or wraps) a deserialization failure.
func IsDeserialization(err error) bool { return errors.Is(err, ErrDeserialization) }
