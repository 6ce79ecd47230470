//go:build !(linux && cgo)

package bench

// trimCHeap is a no-op where the C heap is not glibc's (or there is no cgo).
func trimCHeap() {}
