package virtio

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// errDetached reports a doorbell taken off its Notifier (Wait looks
// again).
var errDetached = errors.New("virtio: doorbell detached")

// doorbell is one attached doorbell file. A worker sleeps on it in
// poll(2), together with wake, an eventfd the Notifier writes to rouse
// it (Kick, Pause, detach): a blocking system call, so the worker's
// thread sleeps in the kernel and a kick wakes that thread alone.
type doorbell struct {
	r  io.ReadCloser
	rc syscall.RawConn // r's descriptor; nil if forwarded only
	// wake rouses a worker in poll; closed on detach, which waits (as
	// os.File.Close does for descriptors in use) until no worker is
	// in poll any more.
	wake     *os.File
	wakeRC   syscall.RawConn
	detached atomic.Bool
	// forwarded: a goroutine reads r and kicks ch until r is closed
	// (guarded by Notifier.mu).
	forwarded bool
	// poll's arguments, kept here so a wait does not allocate (one
	// worker waits on a queue at a time).
	fds [2]unix.PollFd
	buf [64]byte
}

// newDoorbell prepares r to be slept on in poll: r must expose its
// descriptor (an *os.File does).
func newDoorbell(r io.ReadCloser) (*doorbell, error) {
	sc, ok := r.(syscall.Conn)
	if !ok {
		return nil, errors.New("virtio: doorbell has no descriptor")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("virtio: doorbell: %w", err)
	}
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("virtio: doorbell wake-up eventfd: %w", err)
	}
	wake := os.NewFile(uintptr(fd), "doorbell-wake")
	wakeRC, err := wake.SyscallConn()
	if err != nil {
		wake.Close()
		return nil, fmt.Errorf("virtio: doorbell wake-up eventfd: %w", err)
	}
	return &doorbell{r: r, rc: rc, wake: wake, wakeRC: wakeRC}, nil
}

// wakeUp rouses the worker in poll (or makes its next poll return at
// once: the eventfd stays readable until the worker drains it).
func (db *doorbell) wakeUp() {
	if db.wake == nil {
		return
	}
	one := [8]byte{1}
	_ = db.wakeRC.Control(func(fd uintptr) {
		// EAGAIN (the counter is full) still leaves it readable.
		_, _ = unix.Write(int(fd), one[:])
	})
}

// detach wakes the worker and waits until it is out of poll, so that the
// caller may close r. A forwarding goroutine blocked in r's Read is woken
// by a write to r when r is an eventfd (a blocking one ignores Close).
func (db *doorbell) detach() {
	db.detached.Store(true)
	if db.forwarded && db.rc != nil {
		one := [8]byte{1}
		_ = db.rc.Control(func(fd uintptr) { _, _ = unix.Write(int(fd), one[:]) })
	}
	if db.wake != nil {
		db.wakeUp()
		db.wake.Close()
	}
}

// forward reads kicks from r and passes them to ch until r is closed or
// detached.
func (db *doorbell) forward(ch chan struct{}) {
	var buf [64]byte
	for {
		_, err := db.r.Read(buf[:])
		if err != nil || db.detached.Load() {
			return
		}
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// wait sleeps until the doorbell rings (true: its counter was read) or
// the worker is woken (false, nil). An error other than errDetached
// means the doorbell is broken.
func (db *doorbell) wait() (bool, error) {
	if db.detached.Load() {
		return false, errDetached
	}
	var kicked bool
	var werr error
	err := db.rc.Control(func(dfd uintptr) {
		err := db.wakeRC.Control(func(wfd uintptr) {
			kicked, werr = db.poll(int(dfd), int(wfd))
		})
		if err != nil {
			werr = errDetached // the wake-up eventfd is closed
		}
	})
	if err != nil {
		return false, errDetached // r is closed
	}
	return kicked, werr
}

// poll sleeps in poll(2) on the doorbell dfd and the wake-up eventfd
// wfd, then reads what is ready.
func (db *doorbell) poll(dfd, wfd int) (bool, error) {
	db.fds = [2]unix.PollFd{{Fd: int32(dfd), Events: unix.POLLIN}, {Fd: int32(wfd), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(db.fds[:], -1)
		if err == nil {
			break
		}
		if err != unix.EINTR {
			return false, fmt.Errorf("virtio: poll doorbell: %w", err)
		}
	}
	if db.fds[1].Revents != 0 {
		_, _ = unix.Read(wfd, db.buf[:]) // drain the wake-up
	}
	if db.fds[0].Revents == 0 {
		return false, nil
	}
	n, err := unix.Read(dfd, db.buf[:])
	switch {
	case err == unix.EAGAIN:
		return false, nil
	case err != nil:
		return false, fmt.Errorf("virtio: read doorbell: %w", err)
	case n == 0:
		return false, fmt.Errorf("virtio: read doorbell: %w", io.EOF)
	}
	return true, nil
}
