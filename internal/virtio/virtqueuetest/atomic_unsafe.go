package virtqueuetest

import (
	"sync/atomic"
	"unsafe"
)

// load16 atomically reads the 16-bit little-endian field at b[off], using
// the aligned 32-bit word that holds it, as the device side does.
func load16(b []byte, off uint64) uint16 {
	w := off &^ 3
	// SAFETY: Memory.buf is 8-byte aligned (allocated as []uint64) and off
	// was bounds-checked by the caller, so b[w:w+4] is an aligned word
	// inside the buffer.
	p := (*uint32)(unsafe.Pointer(&b[w]))
	return uint16(atomic.LoadUint32(p) >> ((off & 3) * 8))
}

// store16 atomically replaces the 16-bit field at b[off].
func store16(b []byte, off uint64, v uint16) {
	w := off &^ 3
	shift := (off & 3) * 8
	// SAFETY: as in load16.
	p := (*uint32)(unsafe.Pointer(&b[w]))
	mask := uint32(0xFFFF) << shift
	for {
		old := atomic.LoadUint32(p)
		if atomic.CompareAndSwapUint32(p, old, old&^mask|uint32(v)<<shift) {
			return
		}
	}
}

// alignedBuffer returns a zeroed n-byte buffer that starts 8-byte aligned.
func alignedBuffer(n uint64) []byte {
	words := make([]uint64, (n+7)/8)
	// SAFETY: the []uint64 backing array is n rounded up to 8 bytes long
	// and stays alive through the returned slice.
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), n)
}
