package kvm

// Go mirrors of the x86 KVM ABI structures (include/uapi/linux/kvm.h and
// arch/x86/include/uapi/asm/kvm.h). Field order and padding match the C
// layout; abi_unsafe_test.go checks every size.

const (
	sizeofRegs                  = 144
	sizeofSregs                 = 312
	sizeofFPU                   = 416
	sizeofLAPICState            = 1024
	sizeofVCPUEvents            = 64
	sizeofXSave                 = 4096
	sizeofXCRs                  = 392
	sizeofUserspaceMemoryRegion = 32
	sizeofDirtyLog              = 16
	sizeofIRQLevel              = 8
	sizeofIRQChip               = 520
	sizeofIRQFD                 = 32
	sizeofPITConfig             = 64
	sizeofPITState2             = 112
	sizeofIOEventFD             = 64
	sizeofClockData             = 48
	sizeofEnableCap             = 104
	sizeofMSI                   = 32
	sizeofCPUIDEntry2           = 40
	sizeofMSREntry              = 16
)

// Regs is struct kvm_regs: the general-purpose registers.
type Regs struct {
	RAX, RBX, RCX, RDX, RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11, R12, R13, R14, R15   uint64
	RIP, RFLAGS                            uint64
}

// Segment is struct kvm_segment: a segment register with its hidden part.
type Segment struct {
	Base                           uint64
	Limit                          uint32
	Selector                       uint16
	Type                           uint8
	Present, DPL, DB, S, L, G, AVL uint8
	Unusable                       uint8
	_                              uint8
}

// DTable is struct kvm_dtable: a descriptor-table register (GDTR, IDTR).
type DTable struct {
	Base  uint64
	Limit uint16
	_     [3]uint16
}

// Sregs is struct kvm_sregs: segment, control and descriptor-table registers.
type Sregs struct {
	CS, DS, ES, FS, GS, SS Segment
	TR, LDT                Segment
	GDT, IDT               DTable
	CR0, CR2, CR3, CR4     uint64
	CR8                    uint64
	EFER                   uint64
	APICBase               uint64
	InterruptBitmap        [4]uint64
}

// FPU is struct kvm_fpu: the legacy x87/SSE state.
type FPU struct {
	FPR        [8][16]uint8
	FCW        uint16
	FSW        uint16
	FTWX       uint8
	_          uint8
	LastOpcode uint16
	LastIP     uint64
	LastDP     uint64
	XMM        [16][16]uint8
	MXCSR      uint32
	_          uint32
}

// LAPICState is struct kvm_lapic_state: the local APIC register page.
type LAPICState struct {
	Regs [1024]byte
}

// VCPUEvents is struct kvm_vcpu_events: pending and injected exceptions,
// interrupts, NMIs and SMIs.
type VCPUEvents struct {
	Exception struct {
		Injected, Nr, HasErrorCode, Pending uint8
		ErrorCode                           uint32
	}
	Interrupt struct {
		Injected, Nr, Soft, Shadow uint8
	}
	NMI struct {
		Injected, Pending, Masked, _ uint8
	}
	SIPIVector uint32
	Flags      uint32
	SMI        struct {
		SMM, Pending, SMMInsideNMI, LatchedInit uint8
	}
	TripleFault         struct{ Pending uint8 }
	_                   [26]uint8
	ExceptionHasPayload uint8
	ExceptionPayload    uint64
}

// VCPUEvents.Flags bits.
const (
	VCPUEventValidNMIPending = 1 << 0
	VCPUEventValidSIPIVector = 1 << 1
	VCPUEventValidShadow     = 1 << 2
	VCPUEventValidSMM        = 1 << 3
	VCPUEventValidPayload    = 1 << 4
)

// XSave is struct kvm_xsave: the XSAVE area.
type XSave struct {
	Region [1024]uint32
}

// XCR is one extended control register.
type XCR struct {
	XCR   uint32
	_     uint32
	Value uint64
}

// XCRs is struct kvm_xcrs.
type XCRs struct {
	NrXCRs uint32
	Flags  uint32
	XCRs   [16]XCR
	_      [16]uint64
}

// UserspaceMemoryRegion is struct kvm_userspace_memory_region.
type UserspaceMemoryRegion struct {
	Slot          uint32
	Flags         uint32
	GuestPhysAddr uint64
	MemorySize    uint64
	UserspaceAddr uint64
}

// Memory region flags.
const (
	MemLogDirtyPages = 1 << 0
	MemReadOnly      = 1 << 1
)

type dirtyLog struct {
	Slot   uint32
	_      uint32
	Bitmap uint64 // user pointer
}

type irqLevel struct {
	IRQ   uint32
	Level uint32
}

// IRQChip is struct kvm_irqchip: the state of one in-kernel interrupt controller.
type IRQChip struct {
	ChipID uint32
	_      uint32
	Chip   [512]byte
}

// In-kernel interrupt controller ids for IRQChip.ChipID.
const (
	IRQChipPICMaster = 0
	IRQChipPICSlave  = 1
	IRQChipIOAPIC    = 2
)

type irqfd struct {
	FD         uint32
	GSI        uint32
	Flags      uint32
	ResampleFD uint32
	_          [16]uint8
}

type pitConfig struct {
	Flags uint32
	_     [15]uint32
}

// PITChannelState is struct kvm_pit_channel_state.
type PITChannelState struct {
	Count                       uint32
	LatchedCount                uint16
	CountLatched, StatusLatched uint8
	Status, ReadState           uint8
	WriteState, WriteLatch      uint8
	RWMode, Mode, BCD, Gate     uint8
	CountLoadTime               int64
}

// PITState2 is struct kvm_pit_state2: the in-kernel i8254 PIT.
type PITState2 struct {
	Channels [3]PITChannelState
	Flags    uint32
	_        [9]uint32
}

type ioeventfd struct {
	DataMatch uint64
	Addr      uint64
	Len       uint32
	FD        int32
	Flags     uint32
	_         [36]uint8
}

// IOEventFD flags.
const (
	IOEventFDDataMatch = 1 << 0
	IOEventFDPIO       = 1 << 1
	IOEventFDDeassign  = 1 << 2
)

// ClockData is struct kvm_clock_data: the VM-wide kvmclock.
type ClockData struct {
	Clock    uint64
	Flags    uint32
	_        uint32
	Realtime uint64
	HostTSC  uint64
	_        [4]uint32
}

type enableCap struct {
	Cap   uint32
	Flags uint32
	Args  [4]uint64
	_     [64]uint8
}

// MSI is struct kvm_msi: a message-signalled interrupt to inject.
type MSI struct {
	AddressLo uint32
	AddressHi uint32
	Data      uint32
	Flags     uint32
	DevID     uint32
	_         [12]uint8
}

// CPUIDEntry is struct kvm_cpuid_entry2.
type CPUIDEntry struct {
	Function uint32
	Index    uint32
	Flags    uint32
	EAX      uint32
	EBX      uint32
	ECX      uint32
	EDX      uint32
	_        [3]uint32
}

// MSR is struct kvm_msr_entry: one model-specific register.
type MSR struct {
	Index uint32
	_     uint32
	Data  uint64
}

// Multiprocessor states (struct kvm_mp_state).
const (
	MPStateRunnable      = 0
	MPStateUninitialized = 1
	MPStateInitReceived  = 2
	MPStateHalted        = 3
	MPStateSIPIReceived  = 4
)

// Capabilities checked with KVM_CHECK_EXTENSION.
const (
	CapIRQChip               = 0
	CapHLT                   = 1
	CapUserMemory            = 3
	CapSetTSSAddr            = 4
	CapExtCPUID              = 7
	CapNrVCPUs               = 9
	CapNrMemSlots            = 10
	CapMPState               = 14
	CapIRQRouting            = 25
	CapIRQFD                 = 32
	CapPIT2                  = 33
	CapPITState2             = 35
	CapIOEventFD             = 36
	CapSetIdentityMapAddr    = 37
	CapAdjustClock           = 39
	CapVCPUEvents            = 41
	CapXSave                 = 55
	CapXCRs                  = 56
	CapTSCControl            = 60
	CapGetTSCKHz             = 61
	CapMaxVCPUs              = 66
	CapKVMClockCtrl          = 76
	CapSignalMSI             = 77
	CapReadonlyMem           = 81
	CapSplitIRQChip          = 121
	CapMaxVCPUID             = 128
	CapX2APICAPI             = 129
	CapImmediateExit         = 136
	CapX86DisableExits       = 143
	CapExceptionPayload      = 164
	CapManualDirtyLogProtect = 168
	CapDirtyLogRing          = 192
)

// Exit reasons (kvm_run.exit_reason).
const (
	ExitUnknown       = 0
	ExitException     = 1
	ExitIO            = 2
	ExitHypercall     = 3
	ExitDebug         = 4
	ExitHLT           = 5
	ExitMMIO          = 6
	ExitIRQWindowOpen = 7
	ExitShutdown      = 8
	ExitFailEntry     = 9
	ExitIntr          = 10
	ExitNMI           = 16
	ExitInternalError = 17
	ExitSystemEvent   = 24
	ExitIOAPICEOI     = 26
	ExitX86RDMSR      = 29
	ExitX86WRMSR      = 30
	ExitXen           = 34
)

// ExitNeedsCompletion reports whether the instruction behind an exit of this
// reason is finished only by the next KVM_RUN. api.rst, the NOTE under
// KVM_EXIT_MMIO: for these exits "the corresponding operations are complete
// (and guest state is consistent) only after userspace has re-entered the
// kernel with KVM_RUN"; the pending state is not in what KVM_GET_REGS and
// the like return, so it must be completed (KVM_RUN with immediate_exit set)
// before the vCPU's state is saved.
func ExitNeedsCompletion(reason uint32) bool {
	switch reason {
	case ExitIO, ExitMMIO, ExitHypercall, ExitX86RDMSR, ExitX86WRMSR, ExitXen:
		return true
	}
	return false
}

// Internal-error suberrors and system-event types.
const (
	InternalErrorEmulation  = 1
	InternalErrorSimulEx    = 2
	InternalErrorDeliveryEv = 3
	SystemEventShutdown     = 1
	SystemEventReset        = 2
	SystemEventCrash        = 3
	emulationFlagInstrBytes = 1
	ioIn, ioOut             = 0, 1
)
