// Package allzero tells whether a buffer holds only zero bytes: the test
// that lets snapshots, live migration, image conversion and the sparse
// image formats skip empty pages and blocks.
package allzero

import "bytes"

// zero is what buffers are compared with, a chunk at a time: bytes.Equal
// is vectorised, a byte or word loop is several times slower on pages.
var zero [4096]byte

// Is reports whether p holds only zero bytes (true for an empty p).
func Is(p []byte) bool {
	for len(p) > 0 {
		n := min(len(p), len(zero))
		if !bytes.Equal(p[:n], zero[:n]) {
			return false
		}
		p = p[n:]
	}
	return true
}
