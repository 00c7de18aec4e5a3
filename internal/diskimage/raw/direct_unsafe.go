package raw

import "unsafe"

// bufAddr is the address of p's first byte, for O_DIRECT's alignment rule.
func bufAddr(p []byte) uintptr {
	// SAFETY: the pointer is only converted to an integer and compared; it
	// is never turned back into a pointer or dereferenced.
	return uintptr(unsafe.Pointer(unsafe.SliceData(p)))
}
