package uffd

import (
	"testing"
	"unsafe"
)

// TestABISizes checks the Go structs against the sizes of
// include/uapi/linux/userfaultfd.h that the ioctl numbers encode.
func TestABISizes(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"uffdio_api", unsafe.Sizeof(uffdioAPI{}), sizeofAPI},
		{"uffdio_range", unsafe.Sizeof(uffdioRange{}), sizeofRange},
		{"uffdio_register", unsafe.Sizeof(uffdioRegister{}), sizeofRegister},
		{"uffdio_copy", unsafe.Sizeof(uffdioCopy{}), sizeofCopy},
		{"uffdio_zeropage", unsafe.Sizeof(uffdioZeropage{}), sizeofZeropage},
	} {
		if c.got != c.want {
			t.Errorf("sizeof(struct %s) = %d, want %d", c.name, c.got, c.want)
		}
	}
}

// TestIoctlNumbers checks the computed numbers against the values the
// kernel header's macros give on x86-64.
func TestIoctlNumbers(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"UFFDIO_API", reqAPI, 0xC018AA3F},
		{"UFFDIO_REGISTER", reqRegister, 0xC020AA00},
		{"UFFDIO_UNREGISTER", reqUnregister, 0x8010AA01},
		{"UFFDIO_WAKE", reqWake, 0x8010AA02},
		{"UFFDIO_COPY", reqCopy, 0xC028AA03},
		{"UFFDIO_ZEROPAGE", reqZeropage, 0xC020AA04},
		{"USERFAULTFD_IOC_NEW", reqDevNew, 0xAA00},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
}
