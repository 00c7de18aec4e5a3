package uffd

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctl issues request req on fd with a pointer to arg.
func ioctl[T any](fd uintptr, req uintptr, arg *T) error {
	// SAFETY: arg points to a Go value laid out as the kernel's struct for
	// req (sizes checked by abi_unsafe_test.go); the conversion happens in
	// the call expression, so the pointer stays valid for the syscall.
	_, _, e := unix.Syscall(unix.SYS_IOCTL, fd, req, uintptr(unsafe.Pointer(arg)))
	if e != 0 {
		return e
	}
	return nil
}

// ioctlInt issues request req on fd with an integer argument.
func ioctlInt(fd uintptr, req uintptr, arg uintptr) (uintptr, error) {
	r, _, e := unix.Syscall(unix.SYS_IOCTL, fd, req, arg)
	if e != 0 {
		return 0, e
	}
	return r, nil
}

// Addr is the host virtual address of b's first byte (0 for an empty b):
// what fault addresses are compared with.
func Addr(b []byte) uintptr {
	if len(b) == 0 {
		return 0
	}
	// SAFETY: only the address is taken, as a number; nothing is accessed
	// through it here. Callers that hand it to the kernel keep b alive and
	// pinned (Copy) or pass memory the Go runtime does not move (mmap).
	return uintptr(unsafe.Pointer(unsafe.SliceData(b)))
}
