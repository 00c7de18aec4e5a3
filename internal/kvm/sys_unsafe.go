package kvm

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The wrappers below retry an ioctl that a signal interrupted (EINTR):
// KVM_CREATE_VM, for one, fails so when a signal is pending, and govisor
// signals its own threads (vCPU kicks). The one ioctl for which EINTR means
// something is KVM_RUN, which goes through ioctlRun and is never retried.
// The loops stay in each wrapper so that the pointer conversion remains in
// the Syscall call itself, as unsafe.Pointer's rules require.

// ioctlPtr issues an ioctl whose argument is a pointer to p.
func ioctlPtr[T any](fd int, req uintptr, p *T) (uintptr, error) {
	for {
		// SAFETY: p points to a Go value whose layout mirrors the C struct the
		// request expects (sizes checked in abi_unsafe_test.go); the kernel reads
		// or writes at most sizeof(T) bytes during the call, and p stays live
		// until Syscall returns.
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(p)))
		if errno == unix.EINTR && req != reqRun {
			continue
		}
		if errno != 0 {
			return r, errno
		}
		return r, nil
	}
}

// ioctlBuf issues an ioctl whose argument is a byte buffer holding a C
// struct with a flexible array member (kvm_cpuid2, kvm_msrs, kvm_msr_list).
func ioctlBuf(fd int, req uintptr, b []byte) (uintptr, error) {
	for {
		// SAFETY: b is large enough for the header plus the number of entries
		// its header declares; the kernel never writes beyond that count.
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(&b[0])))
		if errno == unix.EINTR && req != reqRun {
			continue
		}
		if errno != 0 {
			return r, errno
		}
		return r, nil
	}
}

// ioctlVal issues an ioctl whose argument is a plain integer.
func ioctlVal(fd int, req, arg uintptr) (uintptr, error) {
	for {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
		if errno == unix.EINTR && req != reqRun {
			continue
		}
		if errno != 0 {
			return r, errno
		}
		return r, nil
	}
}

// ioctlRun issues KVM_RUN without the Go scheduler's syscall bookkeeping
// cost being any different from a normal blocking call. EINTR is returned,
// not retried: it is how a kick or immediate_exit stops KVM_RUN.
func ioctlRun(fd int) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), reqRun, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// sliceAddr is the user-space address of b's first byte, as KVM wants for
// memory slots and dirty bitmaps.
func sliceAddr(b []byte) uint64 {
	// SAFETY: only the address is taken; callers keep b mapped (it is an
	// mmap'd region or a live Go slice) for as long as KVM uses the address.
	return uint64(uintptr(unsafe.Pointer(&b[0])))
}

// runStruct views the mmap'd kvm_run page.
type runStruct struct {
	mem []byte
}

// SAFETY for the accessors below: mem is the vCPU's mmap'd kvm_run area of
// KVM_GET_VCPU_MMAP_SIZE bytes (at least one page), and every offset used is
// inside the first 512 bytes of struct kvm_run, naturally aligned.
func (r runStruct) u8(off int) *uint8   { return (*uint8)(unsafe.Pointer(&r.mem[off])) }
func (r runStruct) u16(off int) *uint16 { return (*uint16)(unsafe.Pointer(&r.mem[off])) }
func (r runStruct) u32(off int) *uint32 { return (*uint32)(unsafe.Pointer(&r.mem[off])) }
func (r runStruct) u64(off int) *uint64 { return (*uint64)(unsafe.Pointer(&r.mem[off])) }
