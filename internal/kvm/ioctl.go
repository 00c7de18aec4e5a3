// Package kvm is a typed binding of the Linux KVM API (Documentation/virt/kvm/api.rst)
// over golang.org/x/sys/unix, without cgo: the system (/dev/kvm), VM and
// vCPU file descriptors, their ioctls and the ABI structures they exchange.
package kvm

// ioctl request encoding from include/uapi/asm-generic/ioctl.h: the
// direction, the size of the argument struct, the type (KVMIO) and the number.
const (
	iocNone  = 0
	iocWrite = 1
	iocRead  = 2

	kvmio = 0xAE
)

func ioc(dir, nr, size uintptr) uintptr {
	return dir<<30 | size<<16 | kvmio<<8 | nr
}

func io(nr uintptr) uintptr         { return ioc(iocNone, nr, 0) }
func ior(nr, size uintptr) uintptr  { return ioc(iocRead, nr, size) }
func iow(nr, size uintptr) uintptr  { return ioc(iocWrite, nr, size) }
func iowr(nr, size uintptr) uintptr { return ioc(iocRead|iocWrite, nr, size) }

// Request numbers; struct sizes come from the Go mirrors of the ABI structs,
// whose sizes abi_unsafe_test.go checks against the C layout.
var (
	// System ioctls.
	reqGetAPIVersion     = io(0x00)
	reqCreateVM          = io(0x01)
	reqGetMSRIndexList   = iowr(0x02, 4)
	reqCheckExtension    = io(0x03)
	reqGetVCPUMmapSize   = io(0x04)
	reqGetSupportedCPUID = iowr(0x05, 8)

	// VM ioctls.
	reqCreateVCPU          = io(0x41)
	reqGetDirtyLog         = iow(0x42, sizeofDirtyLog)
	reqSetUserMemoryRegion = iow(0x46, sizeofUserspaceMemoryRegion)
	reqSetTSSAddr          = io(0x47)
	reqSetIdentityMapAddr  = iow(0x48, 8)
	reqCreateIRQChip       = io(0x60)
	reqIRQLine             = iow(0x61, sizeofIRQLevel)
	reqGetIRQChip          = iowr(0x62, sizeofIRQChip)
	reqSetIRQChip          = ior(0x63, sizeofIRQChip)
	reqIRQFD               = iow(0x76, sizeofIRQFD)
	reqCreatePIT2          = iow(0x77, sizeofPITConfig)
	reqIOEventFD           = iow(0x79, sizeofIOEventFD)
	reqSetClock            = iow(0x7b, sizeofClockData)
	reqGetClock            = ior(0x7c, sizeofClockData)
	reqGetPIT2             = ior(0x9f, sizeofPITState2)
	reqSetPIT2             = iow(0xa0, sizeofPITState2)
	reqEnableCap           = iow(0xa3, sizeofEnableCap)
	reqSignalMSI           = iow(0xa5, sizeofMSI)
	reqSetGSIRouting       = iow(0x6a, 8)

	// vCPU ioctls.
	reqRun           = io(0x80)
	reqGetRegs       = ior(0x81, sizeofRegs)
	reqSetRegs       = iow(0x82, sizeofRegs)
	reqGetSregs      = ior(0x83, sizeofSregs)
	reqSetSregs      = iow(0x84, sizeofSregs)
	reqGetMSRs       = iowr(0x88, 8)
	reqSetMSRs       = iow(0x89, 8)
	reqGetFPU        = ior(0x8c, sizeofFPU)
	reqSetFPU        = iow(0x8d, sizeofFPU)
	reqGetLAPIC      = ior(0x8e, sizeofLAPICState)
	reqSetLAPIC      = iow(0x8f, sizeofLAPICState)
	reqSetCPUID2     = iow(0x90, 8)
	reqGetMPState    = ior(0x98, 4)
	reqSetMPState    = iow(0x99, 4)
	reqGetVCPUEvents = ior(0x9f, sizeofVCPUEvents)
	reqSetVCPUEvents = iow(0xa0, sizeofVCPUEvents)
	reqGetTSCKHz     = io(0xa3)
	reqGetXSave      = ior(0xa4, sizeofXSave)
	reqSetXSave      = iow(0xa5, sizeofXSave)
	reqGetXCRs       = ior(0xa6, sizeofXCRs)
	reqSetXCRs       = iow(0xa7, sizeofXCRs)
	reqKVMClockCtrl  = io(0xad)
)
