// Package uffd handles page faults in user space with Linux's userfaultfd(2)
// (Documentation/admin-guide/mm/userfaultfd.rst): accesses to registered
// memory whose pages are missing block until the owner of the descriptor
// installs them (Copy, ZeroPage) or wakes the waiters (Wake).
package uffd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrClosed is returned by the methods of a closed FD.
var ErrClosed = errors.New("uffd: closed")

// FD is a userfaultfd: the registered ranges and the queue of their faults.
// Its methods are safe for concurrent use; Close unblocks ReadFault.
type FD struct {
	// mu is held shared by every use of fd and exclusively by Close, so
	// that the number is never closed (and perhaps reused for another
	// file) while an ioctl or a read is using it.
	mu       sync.RWMutex
	fd       int // -1 once closed
	stop     int // an eventfd Close signals to end ReadFault's poll
	features uint64
}

// Fault is one page fault waiting in a registered range.
type Fault struct {
	Addr  uintptr // the faulting address, rounded down to its page
	Write bool    // the access was a write
	TID   int     // the faulting thread, 0 if the kernel does not say
}

// pageSize is the host's base page size, the unit of every range here.
var pageSize = uintptr(unix.Getpagesize())

// Open creates a userfaultfd and completes the UFFDIO_API handshake.
//
// Faults are caught whatever mode they are taken in: not
// UFFD_USER_MODE_ONLY, because the faults that matter include those the
// kernel takes on a process's behalf (KVM reaching guest memory for a vCPU,
// a syscall's copy to or from user memory). That needs CAP_SYS_PTRACE or
// vm.unprivileged_userfaultfd=1 for userfaultfd(2); failing that, access to
// /dev/userfaultfd (Linux 6.1+) is tried.
func Open() (*FD, error) {
	fd, err := newFD()
	if err != nil {
		return nil, err
	}
	// Ask for the faulting thread's id (feat.ptid), so that callers can tell
	// whose access waits; older kernels without it still work.
	api := uffdioAPI{API: apiVersion, Features: featureThreadID}
	if err := ioctl(uintptr(fd), reqAPI, &api); errors.Is(err, unix.EINVAL) {
		// The handshake may be tried once per descriptor: start over
		// without the feature.
		unix.Close(fd)
		if fd, err = newFD(); err != nil {
			return nil, err
		}
		api = uffdioAPI{API: apiVersion}
		err = ioctl(uintptr(fd), reqAPI, &api)
		if err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("uffd: UFFDIO_API handshake: %w", err)
		}
	} else if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("uffd: UFFDIO_API handshake: %w", err)
	}
	stop, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("uffd: eventfd: %w", err)
	}
	return &FD{fd: fd, stop: stop, features: api.Features}, nil
}

// newFD makes the descriptor by userfaultfd(2), or by /dev/userfaultfd
// when the syscall is not permitted.
func newFD() (int, error) {
	const flags = unix.O_CLOEXEC | unix.O_NONBLOCK
	fd, err := sysUserfaultfd(flags)
	if err == nil {
		return fd, nil
	}
	if !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.ENOSYS) {
		return -1, fmt.Errorf("uffd: userfaultfd(2): %w", err)
	}
	dev, derr := unix.Open("/dev/userfaultfd", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if derr != nil {
		return -1, fmt.Errorf("uffd: userfaultfd(2): %w, and /dev/userfaultfd: %w (run as root or set vm.unprivileged_userfaultfd=1)", err, derr)
	}
	defer unix.Close(dev)
	r, derr := ioctlInt(uintptr(dev), reqDevNew, flags)
	if derr != nil {
		return -1, fmt.Errorf("uffd: /dev/userfaultfd USERFAULTFD_IOC_NEW: %w", derr)
	}
	return int(r), nil
}

// sysUserfaultfd is userfaultfd(flags).
func sysUserfaultfd(flags int) (int, error) {
	r, _, e := unix.Syscall(unix.SYS_USERFAULTFD, uintptr(flags), 0, 0)
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// ThreadIDs reports whether Fault.TID is filled in.
func (u *FD) ThreadIDs() bool { return u.features&featureThreadID != 0 }

// control runs ioctl req on the descriptor, or fails with ErrClosed.
func control[T any](u *FD, req uintptr, arg *T) error {
	u.mu.RLock()
	defer u.mu.RUnlock()
	if u.fd < 0 {
		return ErrClosed
	}
	return ioctl(uintptr(u.fd), req, arg)
}

// span checks that b is a non-empty whole number of pages at a page
// boundary and returns it as a uffdio_range.
func span(b []byte) (uffdioRange, error) {
	a, n := Addr(b), uintptr(len(b))
	if n == 0 || a%pageSize != 0 || n%pageSize != 0 {
		return uffdioRange{}, fmt.Errorf("uffd: range %#x+%#x is not whole pages", a, n)
	}
	return uffdioRange{Start: uint64(a), Len: uint64(n)}, nil
}

// Register arms mem (page-aligned, anonymous or shmem) in missing mode:
// from now on an access to a page of it that has no page table entry waits
// for Copy, ZeroPage or Wake and is reported by ReadFault.
func (u *FD) Register(mem []byte) error {
	r, err := span(mem)
	if err != nil {
		return err
	}
	reg := uffdioRegister{Range: r, Mode: modeMissing}
	if err := control(u, reqRegister, &reg); err != nil {
		return fmt.Errorf("uffd: UFFDIO_REGISTER %#x+%#x: %w", r.Start, r.Len, err)
	}
	if reg.Ioctls&rangeIoctls != rangeIoctls {
		u.Unregister(mem)
		return fmt.Errorf("uffd: the kernel offers ioctls %#x on %#x+%#x, without copy, zeropage or wake", reg.Ioctls, r.Start, r.Len)
	}
	return nil
}

// Unregister disarms mem; faults waiting in it are woken and resolved as
// ordinary faults (anonymous memory: zero pages).
func (u *FD) Unregister(mem []byte) error {
	r, err := span(mem)
	if err != nil {
		return err
	}
	if err := control(u, reqUnregister, &r); err != nil {
		return fmt.Errorf("uffd: UFFDIO_UNREGISTER %#x+%#x: %w", r.Start, r.Len, err)
	}
	return nil
}

// Wake wakes the faults waiting in mem, which retry their access.
func (u *FD) Wake(mem []byte) error {
	r, err := span(mem)
	if err != nil {
		return err
	}
	if err := control(u, reqWake, &r); err != nil {
		return fmt.Errorf("uffd: UFFDIO_WAKE %#x+%#x: %w", r.Start, r.Len, err)
	}
	return nil
}

// Copy atomically installs a copy of src as the pages of dst (a registered
// range of the same length) and wakes what waits on them. It reports false,
// without error, if a page of dst was already present (EEXIST): that page
// and the ones after it keep their contents, and their waiters are woken.
func (u *FD) Copy(dst, src []byte) (bool, error) {
	r, err := span(dst)
	if err != nil {
		return false, err
	}
	if len(src) != len(dst) {
		return false, fmt.Errorf("uffd: copy of %d bytes into %d", len(src), len(dst))
	}
	// The kernel reads src through its address: keep it where it is.
	var pin runtime.Pinner
	pin.Pin(&src[0])
	defer pin.Unpin()
	for done := uint64(0); done < r.Len; {
		c := uffdioCopy{Dst: r.Start + done, Src: uint64(Addr(src)) + done, Len: r.Len - done}
		err := control(u, reqCopy, &c)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, unix.EEXIST):
			// userfaultfd.rst: a page that is already there is left alone
			// and nothing is woken; wake the waiters so they see it.
			return false, u.Wake(dst)
		case errors.Is(err, unix.EAGAIN):
			// A partial copy, or the address space changing under it:
			// c.Copy says how far it got; carry on from there.
			if c.Copy > 0 {
				done += uint64(c.Copy)
			}
		default:
			return false, fmt.Errorf("uffd: UFFDIO_COPY %#x+%#x: %w", r.Start+done, r.Len-done, err)
		}
	}
	return true, nil
}

// ZeroPage installs zero-filled pages in dst (a registered range) and wakes
// what waits on them; like Copy it reports false if a page was there.
func (u *FD) ZeroPage(dst []byte) (bool, error) {
	r, err := span(dst)
	if err != nil {
		return false, err
	}
	for {
		z := uffdioZeropage{Range: r}
		err := control(u, reqZeropage, &z)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, unix.EEXIST):
			return false, u.Wake(dst)
		case errors.Is(err, unix.EAGAIN):
			if z.Zeropage > 0 {
				r.Start += uint64(z.Zeropage)
				r.Len -= uint64(z.Zeropage)
				if r.Len == 0 {
					return true, nil
				}
			}
		default:
			return false, fmt.Errorf("uffd: UFFDIO_ZEROPAGE %#x+%#x: %w", r.Start, r.Len, err)
		}
	}
}

// ReadFault waits for the next page fault in a registered range. It
// returns ErrClosed once Close has been called. A fault may be reported
// more than once (its thread was interrupted by a signal and retried).
func (u *FD) ReadFault() (Fault, error) {
	u.mu.RLock()
	defer u.mu.RUnlock()
	if u.fd < 0 {
		return Fault{}, ErrClosed
	}
	var b [sizeofMsg]byte
	for {
		n, err := unix.Read(u.fd, b[:])
		switch {
		case err == unix.EAGAIN:
			// Wait in poll(2), a system call, so that the Go runtime runs
			// other goroutines meanwhile: the threads that fault may be
			// holding the others. userfaultfd.rst: poll needs O_NONBLOCK.
			fds := []unix.PollFd{{Fd: int32(u.fd), Events: unix.POLLIN}, {Fd: int32(u.stop), Events: unix.POLLIN}}
			if _, err := unix.Poll(fds, -1); err != nil && err != unix.EINTR {
				return Fault{}, fmt.Errorf("uffd: poll: %w", err)
			}
			if fds[1].Revents != 0 {
				return Fault{}, ErrClosed
			}
			continue
		case err == unix.EINTR:
			continue
		case err != nil:
			return Fault{}, fmt.Errorf("uffd: read: %w", err)
		case n != sizeofMsg:
			return Fault{}, fmt.Errorf("uffd: read %d bytes, want a %d-byte uffd_msg", n, sizeofMsg)
		}
		// struct uffd_msg: event (u8) at 0; arg.pagefault.flags at 8,
		// .address at 16, .feat.ptid at 24. Only page faults are asked for.
		if b[0] != eventPagefault {
			continue
		}
		flags := binary.LittleEndian.Uint64(b[8:])
		addr := uintptr(binary.LittleEndian.Uint64(b[16:]))
		return Fault{Addr: addr &^ (pageSize - 1), Write: flags&pagefaultFlagWrite != 0,
			TID: int(binary.LittleEndian.Uint32(b[24:]))}, nil
	}
}

// Close releases the descriptor: every range is unregistered and waiting
// faults are woken (userfaultfd.rst), and ReadFault returns ErrClosed. It
// waits for calls in progress to return; closing twice is harmless.
func (u *FD) Close() error {
	var one [8]byte
	one[0] = 1
	unix.Write(u.stop, one[:]) // ends ReadFault's poll; fails only once closed
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.fd < 0 {
		return nil
	}
	err := unix.Close(u.fd)
	unix.Close(u.stop)
	u.fd, u.stop = -1, -1
	if err != nil {
		return fmt.Errorf("uffd: close: %w", err)
	}
	return nil
}
