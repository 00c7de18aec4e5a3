package diskimage

import "io"

// ClipRead fits a ReadAt of p at off to a disk of size bytes as
// io.ReaderAt has it, for the drivers that read block by block: it
// returns the part of p on the disk and the error ReadAt ends with,
// io.EOF when the read reaches past the end. An empty part leaves nothing
// to read: ReadAt returns 0 and that error (nil for an empty read at the
// very end, io.EOF past it or at a negative offset).
func ClipRead(p []byte, off, size int64) ([]byte, error) {
	if off < 0 || off >= size {
		if len(p) == 0 && off == size {
			return p, nil
		}
		return nil, io.EOF
	}
	if int64(len(p)) > size-off {
		return p[:size-off], io.EOF
	}
	return p, nil
}
