package migration

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// File handover: when source and destination run on the same host and talk
// over a Unix socket, the source can pass open files (the host ends of vsock
// connections) to the destination with SCM_RIGHTS, so that they outlive the
// source process. Both sides announce FeatureFiles in HELLO; the source then
// sends, after the device state, FILES frames whose bytes carry the
// descriptors as ancillary data. Over TCP (or TLS) nothing changes.

// MaxFiles bounds the files one migration hands over; more is a protocol
// error (each costs the destination a descriptor).
const MaxFiles = 4096

// maxFilesPerFrame is how many descriptors ride on one FILES frame: Linux
// accepts at most 253 (SCM_MAX_FD) in one message.
const maxFilesPerFrame = 250

// FileSource is implemented by a Source that has open files to hand over to
// a destination on the same host.
type FileSource interface {
	// HandoverFiles returns the files to pass to the destination, in the
	// order the device state refers to them. It is called while paused,
	// after DeviceState, and only when the files can travel (a Unix
	// socket, and a destination that takes them). Send closes them.
	HandoverFiles() ([]*os.File, error)
}

// FileDestination is implemented by a Destination that takes the files a
// same-host source hands over.
type FileDestination interface {
	// ReceiveFiles gives the destination the source's files, in the source's
	// order (none when they could not travel: TCP, or a source without
	// them). It is called once, before Commit; the destination owns them
	// from then on, including on failure.
	ReceiveFiles(files []*os.File)
}

// encodeFileCount is a FILES payload: the number of descriptors attached.
func encodeFileCount(n int) []byte { return binary.LittleEndian.AppendUint32(nil, uint32(n)) }

// decodeFileCount checks a FILES payload.
func decodeFileCount(p []byte) (int, error) {
	if len(p) != 4 {
		return 0, fmt.Errorf("%w: FILES of %d bytes, want 4", ErrCorrupt, len(p))
	}
	n := binary.LittleEndian.Uint32(p)
	if n == 0 || n > maxFilesPerFrame {
		return 0, fmt.Errorf("%w: FILES frame claims %d descriptors (1 to %d)", ErrProtocol, n, maxFilesPerFrame)
	}
	return int(n), nil
}

// sendFiles writes FILES frames carrying files' descriptors over uc. The
// caller has flushed everything buffered before, so that the frames keep
// their place in the stream.
func sendFiles(uc *net.UnixConn, files []*os.File) (int64, error) {
	var sent int64
	for len(files) > 0 {
		batch := files[:min(len(files), maxFilesPerFrame)]
		files = files[len(batch):]
		fds, err := rawFds(batch)
		if err != nil {
			return sent, err
		}
		var b frameBuffer
		if err := writeFrame(&b, MsgFiles, 0, encodeFileCount(len(batch))); err != nil {
			return sent, err
		}
		n, _, err := uc.WriteMsgUnix(b, unix.UnixRights(fds...), nil)
		sent += int64(n)
		if err == nil && n < len(b) {
			// The descriptors went with the first byte; the rest is plain.
			var m int
			m, err = uc.Write(b[n:])
			sent += int64(m)
		}
		// Keep each File (and so its descriptor) open until sent.
		runtime.KeepAlive(batch)
		if err != nil {
			return sent, fmt.Errorf("migration: send FILES frame: %w", err)
		}
	}
	return sent, nil
}

// handOver sends the source's files in FILES frames and closes them.
func (s *sender) handOver() error {
	files, err := s.src.(FileSource).HandoverFiles()
	defer closeFiles(files)
	if err != nil {
		return fmt.Errorf("migration: collect files to hand over: %w", err)
	}
	if len(files) > MaxFiles {
		return fmt.Errorf("migration: %d files to hand over, at most %d", len(files), MaxFiles)
	}
	if len(files) == 0 {
		return nil
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("migration: send device state: %w", err)
	}
	n, err := sendFiles(s.conn.(*net.UnixConn), files)
	s.stats.BytesSent += n
	return err
}

// rawFds returns the files' descriptors without File.Fd, which would put
// them (and the sockets they share with the source's connections) into
// blocking mode.
func rawFds(files []*os.File) ([]int, error) {
	fds := make([]int, len(files))
	for i, f := range files {
		rc, err := f.SyscallConn()
		if err != nil {
			return nil, fmt.Errorf("migration: hand over %s: %w", f.Name(), err)
		}
		if err := rc.Control(func(fd uintptr) { fds[i] = int(fd) }); err != nil {
			return nil, fmt.Errorf("migration: hand over %s: %w", f.Name(), err)
		}
	}
	return fds, nil
}

// frameBuffer collects one frame's bytes.
type frameBuffer []byte

func (b *frameBuffer) Write(p []byte) (int, error) {
	*b = append(*b, p...)
	return len(p), nil
}

// ErrTooManyFiles means the peer passed more descriptors than MaxFiles.
var ErrTooManyFiles = errors.New("migration: peer passed too many file descriptors")

// unixReader reads a Unix stream socket with recvmsg and a control buffer
// on every read: a read without one makes the kernel drop (close) any
// descriptors that arrive with the bytes. Received descriptors queue up in
// arrival order until a FILES frame takes them.
type unixReader struct {
	uc  *net.UnixConn
	oob []byte

	mu     sync.Mutex
	queue  []*os.File
	err    error // a failure to report on the next Read
	closed bool  // close whatever arrives from now on
}

func newUnixReader(uc *net.UnixConn) *unixReader {
	return &unixReader{uc: uc, oob: make([]byte, unix.CmsgSpace(4*(maxFilesPerFrame+3)))}
}

// Read implements io.Reader.
func (u *unixReader) Read(p []byte) (int, error) {
	u.mu.Lock()
	if err := u.err; err != nil {
		u.mu.Unlock()
		return 0, err
	}
	u.mu.Unlock()
	n, oobn, flags, _, err := u.uc.ReadMsgUnix(p, u.oob)
	if oobn > 0 {
		if ferr := u.take(u.oob[:oobn], flags); ferr != nil {
			return n, ferr
		}
	}
	if n == 0 && err == nil {
		err = io.EOF
	}
	return n, err
}

// take queues the descriptors in one message's control data.
func (u *unixReader) take(oob []byte, flags int) error {
	msgs, err := unix.ParseSocketControlMessage(oob)
	var files []*os.File
	if err == nil {
		for _, m := range msgs {
			fds, ferr := unix.ParseUnixRights(&m)
			if ferr != nil {
				continue // not SCM_RIGHTS (credentials): nothing to close
			}
			for _, fd := range fds {
				files = append(files, os.NewFile(uintptr(fd), "migration-handover"))
			}
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	switch {
	case err != nil:
		u.err = fmt.Errorf("%w: unreadable control message: %v", ErrCorrupt, err)
	case flags&unix.MSG_CTRUNC != 0:
		u.err = fmt.Errorf("%w: more descriptors in one message than a FILES frame may carry", ErrProtocol)
	case u.closed:
	case len(u.queue)+len(files) > MaxFiles:
		u.err = fmt.Errorf("%w (more than %d)", ErrTooManyFiles, MaxFiles)
	default:
		u.queue = append(u.queue, files...)
		return nil
	}
	closeFiles(files)
	return u.err
}

// pop takes the n oldest queued descriptors.
func (u *unixReader) pop(n int) ([]*os.File, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.queue) < n {
		return nil, fmt.Errorf("%w: FILES frame announces %d descriptors, %d arrived", ErrProtocol, n, len(u.queue))
	}
	out := append([]*os.File(nil), u.queue[:n]...)
	u.queue = u.queue[n:]
	return out, nil
}

// pending is the number of queued descriptors no FILES frame took.
func (u *unixReader) pending() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.queue)
}

// close closes queued descriptors and any that arrive later.
func (u *unixReader) close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	closeFiles(u.queue)
	u.queue, u.closed = nil, true
}

// closeFiles closes every file, ignoring errors: they are unwanted copies.
func closeFiles(files []*os.File) {
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
}
