package netdev

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Backend is where the device's frames go and come from: a TAP device or
// a packet socket. Every frame is preceded by a 12-byte
// virtio_net_hdr_v1, as the guest exchanges it (5.1.6).
type Backend interface {
	// ReadFrame reads one header and frame into p; it blocks until one
	// arrives, the deadline passes or the backend is closed.
	ReadFrame(p []byte) (int, error)
	// WriteFrame writes one header and frame gathered from bufs.
	WriteFrame(bufs [][]byte) (int, error)
	// SetOffload enables the offloads (TUNOffload* bits) the guest
	// accepts on frames it receives.
	SetOffload(flags int) error
	// SetDeadline makes blocked and future reads and writes fail with
	// os.ErrDeadlineExceeded after t; the zero time clears it.
	SetDeadline(t time.Time) error
}

// Offload bits of TUNSETOFFLOAD (linux/if_tun.h): what the kernel may
// hand to the guest without finishing it.
const (
	TUNOffloadCsum   = 0x01 // TUN_F_CSUM: partial checksums
	TUNOffloadTSO4   = 0x02 // TUN_F_TSO4
	TUNOffloadTSO6   = 0x04 // TUN_F_TSO6
	TUNOffloadTSOECN = 0x08 // TUN_F_TSO_ECN: TSO packets with CWR set
)

// packetFile is a non-blocking file descriptor carrying one frame per
// read and write, polled by the Go runtime.
type packetFile struct {
	f  *os.File
	rc syscall.RawConn

	// The writer's arguments and results, so the RawConn callback is made
	// once and WriteFrame does not allocate (one writer at a time).
	wbufs   [][]byte
	wn      int
	werr    error
	writeFn func(fd uintptr) bool
}

func newPacketFile(fd int, name string) (*packetFile, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netdev: %s: set non-blocking: %w", name, err)
	}
	p := &packetFile{f: os.NewFile(uintptr(fd), name)}
	rc, err := p.f.SyscallConn()
	if err != nil {
		p.f.Close()
		return nil, fmt.Errorf("netdev: %s: %w", name, err)
	}
	p.rc = rc
	p.writeFn = func(fd uintptr) bool {
		p.wn, p.werr = unix.Writev(int(fd), p.wbufs)
		return p.werr != unix.EAGAIN
	}
	return p, nil
}

// ReadFrame implements Backend.
func (p *packetFile) ReadFrame(b []byte) (int, error) { return p.f.Read(b) }

// WriteFrame implements Backend.
func (p *packetFile) WriteFrame(bufs [][]byte) (int, error) {
	p.wbufs = bufs
	if err := p.rc.Write(p.writeFn); err != nil {
		p.wbufs = nil
		return 0, err
	}
	p.wbufs = nil
	return p.wn, p.werr
}

// SetDeadline implements Backend.
func (p *packetFile) SetDeadline(t time.Time) error { return p.f.SetDeadline(t) }

// Close closes the file descriptor.
func (p *packetFile) Close() error { return p.f.Close() }

// Socket is a Backend over one end of a SOCK_SEQPACKET Unix socket pair:
// frames with their headers, one per message. It connects a guest to a
// user-space switch, another VM, or a test.
type Socket struct{ *packetFile }

// NewSocketPair returns a Socket and the other end of its pair, which
// reads and writes the same header-prefixed frames.
func NewSocketPair() (*Socket, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("netdev: socketpair: %w", err)
	}
	p, err := newPacketFile(fds[0], "netdev-socket")
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, err
	}
	if err := unix.SetNonblock(fds[1], true); err != nil {
		p.Close()
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("netdev: socketpair: %w", err)
	}
	return &Socket{p}, os.NewFile(uintptr(fds[1]), "netdev-socket-peer"), nil
}

// SetOffload implements Backend; a socket carries whatever it is given.
func (s *Socket) SetOffload(flags int) error { return nil }

// isTimeout reports whether err is a deadline set by SetDeadline.
func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }
