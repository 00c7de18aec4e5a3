package guestmem

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugeAlign is the x86-64 huge page size guest RAM is aligned to.
const hugeAlign = 2 << 20

// mapRAM maps size bytes of anonymous private memory at a host address
// aligned to 2 MiB. KVM maps guest memory with 2 MiB EPT/NPT entries only
// where a memory slot's host address and guest-physical address agree modulo
// 2 MiB (it disallows large pages for the whole slot otherwise), and only
// kernels from 6.7 align large anonymous mappings by themselves: on older
// hosts (Debian 12's 6.1) every guest page would be mapped, and faulted in,
// 4 KiB at a time. QEMU aligns its RAM blocks the same way.
func mapRAM(size uint64) ([]byte, error) {
	p, err := unix.MmapPtr(-1, 0, nil, uintptr(size+hugeAlign), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, err
	}
	head := (hugeAlign - uintptr(p)%hugeAlign) % hugeAlign
	if head > 0 {
		if err := unix.MunmapPtr(p, head); err != nil {
			unix.MunmapPtr(p, uintptr(size+hugeAlign))
			return nil, fmt.Errorf("trim the mapping's head: %w", err)
		}
	}
	if tail := hugeAlign - head; tail > 0 {
		if err := unix.MunmapPtr(unsafe.Add(p, head+uintptr(size)), tail); err != nil {
			unix.MunmapPtr(unsafe.Add(p, head), uintptr(size)+tail)
			return nil, fmt.Errorf("trim the mapping's tail: %w", err)
		}
	}
	return unsafe.Slice((*byte)(unsafe.Add(p, head)), size), nil
}

// unmapRAM undoes mapRAM.
func unmapRAM(b []byte) {
	if len(b) > 0 {
		unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(b)), uintptr(len(b)))
	}
}
