package virtqueue

import (
	"fmt"
	"sync/atomic"
	"unsafe"
)

// word is a naturally aligned 32-bit word of guest memory that holds a
// 16-bit ring index (avail idx, used idx, used_event or avail_event). The
// guest updates these concurrently from other CPUs, so they are accessed
// only with atomic 32-bit operations, which also act as full fences on
// amd64 (XCHG, LOCK CMPXCHG) as the ring protocol requires (2.7.13).
type word struct {
	p     *uint32
	shift uint // 0 or 16: where the 16-bit field sits in the word
}

// newWord returns the word that holds the 16-bit field at gpa. b must be
// the guest memory of the 4-byte aligned word containing gpa.
func newWord(b []byte, gpa uint64) (word, error) {
	if len(b) < 4 {
		return word{}, fmt.Errorf("%w: ring word at %#x too short", ErrBadQueue, gpa)
	}
	// SAFETY: b has at least 4 bytes; the pointer is only used for 32-bit
	// atomic access after checking that it is 4-byte aligned. Guest memory
	// is an mmap'd mapping (or a test buffer) that outlives the queue, and
	// the pointer keeps a Go-heap buffer alive.
	p := unsafe.Pointer(&b[0])
	if uintptr(p)%4 != 0 {
		return word{}, fmt.Errorf("%w: ring word at %#x is not 4-byte aligned in host memory", ErrBadQueue, gpa)
	}
	return word{p: (*uint32)(p), shift: uint(gpa%4) * 8}, nil
}

// load atomically reads the 16-bit field.
func (w word) load() uint16 {
	return uint16(atomic.LoadUint32(w.p) >> w.shift)
}

// store atomically replaces the 16-bit field, leaving the other half of
// the word (which may belong to the guest) unchanged.
func (w word) store(v uint16) {
	mask := uint32(0xFFFF) << w.shift
	for {
		old := atomic.LoadUint32(w.p)
		nw := old&^mask | uint32(v)<<w.shift
		if atomic.CompareAndSwapUint32(w.p, old, nw) {
			return
		}
	}
}

// storeWord atomically replaces the whole word (for words the device
// owns entirely); the exchange is a full fence.
func (w word) storeWord(v uint32) {
	atomic.StoreUint32(w.p, v)
}
