package qcow2

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// backend is the host file under an image; tests substitute one that
// records the write and sync sequence to simulate crashes.
type backend interface {
	io.ReaderAt
	io.WriterAt
	// Sync makes the writes so far durable (fdatasync).
	Sync() error
	Size() (int64, error)
	Close() error
}

// fileBackend is a backend on an *os.File.
type fileBackend struct{ f *os.File }

func (b fileBackend) ReadAt(p []byte, off int64) (int, error)  { return b.f.ReadAt(p, off) }
func (b fileBackend) WriteAt(p []byte, off int64) (int, error) { return b.f.WriteAt(p, off) }
func (b fileBackend) Close() error                             { return b.f.Close() }

func (b fileBackend) Sync() error {
	if err := unix.Fdatasync(int(b.f.Fd())); err != nil {
		return fmt.Errorf("fdatasync: %w", err)
	}
	return nil
}

func (b fileBackend) Size() (int64, error) {
	st, err := b.f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// readFull reads len(p) bytes at off; bytes past the end of the file read
// as zeros, as qemu's file layer does.
func readFull(b io.ReaderAt, p []byte, off int64) error {
	n, err := b.ReadAt(p, off)
	if err == io.EOF || (err == nil && n < len(p)) {
		clear(p[n:])
		return nil
	}
	return err
}
