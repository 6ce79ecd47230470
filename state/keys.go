package state

import (
	"bytes"
	"fmt"
	"sync"
)

// maxStoreName is the longest store name: the name's length is encoded in
// one byte in front of every key.
const maxStoreName = 255

// checkpointKey holds the encoded Checkpoint. Every store key starts with a
// length byte of at least 1, so a key starting with 0x00 is outside every
// store's range and can be neither read nor overwritten through a store.
// The rest of the 0x00 space is reserved for future metadata.
var checkpointKey = []byte("\x00checkpoint")

// errIterInvalid ends an iterator whose DB was closed or wiped under it.
var errIterInvalid = fmt.Errorf("%w: iterator invalidated by Close or Wipe", ErrClosed)

func checkStore(store string) error {
	if len(store) == 0 || len(store) > maxStoreName {
		return fmt.Errorf("%w: %d bytes", ErrInvalidStoreName, len(store))
	}
	return nil
}

// appendKey appends the physical key of key in store: the store name's
// length, the name, then the key. The length byte makes the encoding
// prefix-free, so store "a" never sees the keys of store "ab".
func appendKey(dst []byte, store string, key []byte) []byte {
	dst = append(dst, byte(len(store)))
	dst = append(dst, store...)
	return append(dst, key...)
}

// putKey writes the physical key into dst, which must be exactly
// 1+len(store)+len(key) long.
func putKey(dst []byte, store string, key []byte) {
	dst[0] = byte(len(store))
	n := 1 + copy(dst[1:], store)
	copy(dst[n:], key)
}

// appendBounds appends the physical bounds of [lower, upper) in store to
// dst and returns them as subslices of the result. hi is nil only when no
// key can follow the store's prefix (a 255-byte name of 0xff bytes), in
// which case the unbounded upper end is still exact.
func appendBounds(dst []byte, store string, lower, upper []byte) (buf, lo, hi []byte) {
	dst = appendKey(dst, store, lower)
	loEnd := len(dst)
	if upper != nil {
		dst = appendKey(dst, store, upper)
	} else {
		dst = appendKey(dst, store, nil)
		if n := successorLen(dst[loEnd:]); n > 0 {
			dst[loEnd+n-1]++
			dst = dst[:loEnd+n]
		} else {
			dst = dst[:loEnd]
			return dst, dst[:loEnd:loEnd], nil
		}
	}
	return dst, dst[:loEnd:loEnd], dst[loEnd:]
}

// successorLen returns n such that p[:n] with its last byte incremented is
// the smallest key greater than every key with prefix p, or 0 if there is
// none.
func successorLen(p []byte) int {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] != 0xff {
			return i + 1
		}
	}
	return 0
}

// emptyRange reports whether [lower, upper) holds no key.
func emptyRange(lower, upper []byte) bool {
	return upper != nil && bytes.Compare(lower, upper) >= 0
}

// keyBufs holds scratch buffers for physical keys. Readers may run
// concurrently, so a DB cannot keep a single buffer; a pool keeps Get free
// of allocations.
var keyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 128); return &b }}

// maxPooledKey keeps a rare huge key from pinning its buffer in the pool.
const maxPooledKey = 64 << 10

func getKeyBuf() *[]byte { return keyBufs.Get().(*[]byte) }

func putKeyBuf(b *[]byte, used []byte) {
	if cap(used) > maxPooledKey {
		return
	}
	*b = used[:0]
	keyBufs.Put(b)
}
