package uffd

// The userfaultfd ABI of include/uapi/linux/userfaultfd.h, which
// golang.org/x/sys/unix does not carry (only SYS_USERFAULTFD).

// apiVersion is UFFD_API, the only protocol version the kernel speaks.
const apiVersion = 0xAA

// featureThreadID is UFFD_FEATURE_THREAD_ID: page-fault messages carry the
// faulting thread's id (feat.ptid).
const featureThreadID = 1 << 8

// eventPagefault is UFFD_EVENT_PAGEFAULT, the only event delivered to a
// context that asked for no event features.
const eventPagefault = 0x12

// Flags of uffd_msg.arg.pagefault.flags.
const (
	pagefaultFlagWrite = 1 << 0 // UFFD_PAGEFAULT_FLAG_WRITE
)

// modeMissing is UFFDIO_REGISTER_MODE_MISSING: report accesses to pages
// that have no page table entry (never populated, or dropped).
const modeMissing = 1 << 0

// Ioctl numbers within the 0xAA group (_UFFDIO_*), and the bits of the
// ioctls masks UFFDIO_API and UFFDIO_REGISTER return.
const (
	nrRegister   = 0x00
	nrUnregister = 0x01
	nrWake       = 0x02
	nrCopy       = 0x03
	nrZeropage   = 0x04
	nrAPI        = 0x3F
)

// Linux's generic _IOC encoding (include/uapi/asm-generic/ioctl.h), used
// by x86: dir<<30 | size<<16 | type<<8 | nr.
const (
	iocWrite = 1
	iocRead  = 2
	uffdioID = 0xAA // UFFDIO
)

func ioc(dir, nr, size uintptr) uintptr { return dir<<30 | size<<16 | uffdioID<<8 | nr }
func iowr(nr, size uintptr) uintptr     { return ioc(iocRead|iocWrite, nr, size) }
func ior(nr, size uintptr) uintptr      { return ioc(iocRead, nr, size) }

// Struct sizes (checked against unsafe.Sizeof by abi_unsafe_test.go).
const (
	sizeofAPI      = 24 // struct uffdio_api
	sizeofRange    = 16 // struct uffdio_range
	sizeofRegister = 32 // struct uffdio_register
	sizeofCopy     = 40 // struct uffdio_copy
	sizeofZeropage = 32 // struct uffdio_zeropage
	sizeofMsg      = 32 // struct uffd_msg
)

// The ioctls, as the header defines them with _IOWR/_IOR.
var (
	reqAPI        = iowr(nrAPI, sizeofAPI)                        // UFFDIO_API
	reqRegister   = iowr(nrRegister, sizeofRegister)              // UFFDIO_REGISTER
	reqUnregister = ior(nrUnregister, sizeofRange)                // UFFDIO_UNREGISTER
	reqWake       = ior(nrWake, sizeofRange)                      // UFFDIO_WAKE
	reqCopy       = iowr(nrCopy, sizeofCopy)                      // UFFDIO_COPY
	reqZeropage   = iowr(nrZeropage, sizeofZeropage)              // UFFDIO_ZEROPAGE
	reqDevNew     = ioc(0, 0x00, 0)                               // USERFAULTFD_IOC_NEW on /dev/userfaultfd: _IO(0xAA, 0x00)
	rangeIoctls   = uint64(1<<nrWake | 1<<nrCopy | 1<<nrZeropage) // what Register must offer
)

// uffdioAPI is struct uffdio_api.
type uffdioAPI struct {
	API      uint64
	Features uint64
	Ioctls   uint64
}

// uffdioRange is struct uffdio_range.
type uffdioRange struct {
	Start, Len uint64
}

// uffdioRegister is struct uffdio_register.
type uffdioRegister struct {
	Range  uffdioRange
	Mode   uint64
	Ioctls uint64
}

// uffdioCopy is struct uffdio_copy.
type uffdioCopy struct {
	Dst, Src, Len, Mode uint64
	Copy                int64
}

// uffdioZeropage is struct uffdio_zeropage.
type uffdioZeropage struct {
	Range    uffdioRange
	Mode     uint64
	Zeropage int64
}
