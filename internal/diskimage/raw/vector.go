package raw

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/govisor/govisor/internal/diskimage"
)

// maxIOV is the most buffers one preadv/pwritev takes (UIO_MAXIOV).
const maxIOV = 1024

// ReadvAt reads the disk at off into bufs, in order, with one preadv(2)
// where it can: a virtio-blk request's guest buffers in one system call
// instead of one per buffer. It behaves as ReadAt of the buffers laid end
// to end (bytes past the end of a shorter file read as zeros; io.EOF with
// everything filled when the buffers reach past the disk's end).
func (m *Image) ReadvAt(bufs [][]byte, off int64) (int, error) {
	total := vecLen(bufs)
	fd, ok := m.vecFile(bufs, off, total)
	if !ok {
		return m.loop(bufs, off, m.ReadAt)
	}
	n, err := unix.Preadv(fd, bufs, off)
	for err == unix.EINTR { // a signal before any data moved
		n, err = unix.Preadv(fd, bufs, off)
	}
	if err != nil {
		if m.df != nil && errors.Is(err, unix.EINVAL) {
			return m.loop(bufs, off, m.ReadAt) // alignment the probe did not foresee
		}
		return 0, fmt.Errorf("raw: read %s at %d: %w", m.path, off, err)
	}
	if int64(n) < total {
		// The file ends early (ReadAt fills zeros) or a short read.
		k, err := m.loop(advance(bufs, n), off+int64(n), m.ReadAt)
		return n + k, err
	}
	return n, nil
}

// WritevAt writes bufs, in order, to the disk at off with one pwritev(2)
// where it can; it behaves as WriteAt of the buffers laid end to end.
func (m *Image) WritevAt(bufs [][]byte, off int64) (int, error) {
	if m.ro {
		return 0, diskimage.ErrReadOnly
	}
	total := vecLen(bufs)
	fd, ok := m.vecFile(bufs, off, total)
	if !ok {
		return m.loop(bufs, off, m.WriteAt)
	}
	n, err := unix.Pwritev(fd, bufs, off)
	for err == unix.EINTR {
		n, err = unix.Pwritev(fd, bufs, off)
	}
	if err != nil {
		if m.df != nil && errors.Is(err, unix.EINVAL) {
			return m.loop(bufs, off, m.WriteAt)
		}
		return 0, fmt.Errorf("raw: write %s at %d: %w", m.path, off, err)
	}
	if int64(n) < total {
		k, err := m.loop(advance(bufs, n), off+int64(n), m.WriteAt)
		return n + k, err
	}
	return n, nil
}

// vecFile returns the descriptor for a vectored transfer of total bytes
// at off, or false when the buffer-by-buffer path must serve it: out of
// range (ReadAt and WriteAt report it), too many buffers, or an O_DIRECT
// image whose buffers are not all aligned as O_DIRECT requires (ReadAt
// and WriteAt then pick a descriptor per buffer, as before).
func (m *Image) vecFile(bufs [][]byte, off, total int64) (int, bool) {
	if off < 0 || off > m.size || total > m.size-off || len(bufs) == 0 || len(bufs) > maxIOV {
		return 0, false
	}
	if m.df == nil {
		return int(m.f.Fd()), true
	}
	if off%m.dio.off != 0 {
		return 0, false
	}
	for _, b := range bufs {
		if len(b) == 0 || int64(len(b))%m.dio.off != 0 || bufAddr(b)%uintptr(m.dio.mem) != 0 {
			return 0, false
		}
	}
	return int(m.df.Fd()), true
}

// loop moves bufs one at a time with rw (ReadAt or WriteAt).
func (m *Image) loop(bufs [][]byte, off int64, rw func([]byte, int64) (int, error)) (int, error) {
	done := 0
	for _, b := range bufs {
		n, err := rw(b, off)
		done += n
		off += int64(n)
		if err != nil {
			return done, err // io.EOF: ReadAt reached the disk's end
		}
	}
	return done, nil
}

// advance returns bufs without their first n bytes.
func advance(bufs [][]byte, n int) [][]byte {
	for len(bufs) > 0 && n >= len(bufs[0]) {
		n -= len(bufs[0])
		bufs = bufs[1:]
	}
	if n == 0 || len(bufs) == 0 {
		return bufs
	}
	return append([][]byte{bufs[0][n:]}, bufs[1:]...)
}

func vecLen(bufs [][]byte) int64 {
	var t int64
	for _, b := range bufs {
		t += int64(len(b))
	}
	return t
}
