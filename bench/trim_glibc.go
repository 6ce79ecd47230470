//go:build linux && cgo

package bench

// #include <malloc.h>
import "C"

// trimCHeap returns the C heap's free memory to the OS. Pebble allocates
// its block cache and memtables with C malloc; glibc keeps what an earlier
// phase freed (in arenas of its own per thread), which would count towards
// the next phase's RSS.
func trimCHeap() { C.malloc_trim(0) }
