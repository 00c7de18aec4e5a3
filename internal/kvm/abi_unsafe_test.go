package kvm

import (
	"testing"
	"unsafe"
)

// The Go mirrors must have exactly the C sizes, or every ioctl number and
// every kernel copy_from_user would be wrong.
func TestABISizes(t *testing.T) {
	cases := []struct {
		name      string
		got, want uintptr
	}{
		{"kvm_regs", unsafe.Sizeof(Regs{}), sizeofRegs},
		{"kvm_segment", unsafe.Sizeof(Segment{}), 24},
		{"kvm_dtable", unsafe.Sizeof(DTable{}), 16},
		{"kvm_sregs", unsafe.Sizeof(Sregs{}), sizeofSregs},
		{"kvm_fpu", unsafe.Sizeof(FPU{}), sizeofFPU},
		{"kvm_lapic_state", unsafe.Sizeof(LAPICState{}), sizeofLAPICState},
		{"kvm_vcpu_events", unsafe.Sizeof(VCPUEvents{}), sizeofVCPUEvents},
		{"kvm_xsave", unsafe.Sizeof(XSave{}), sizeofXSave},
		{"kvm_xcrs", unsafe.Sizeof(XCRs{}), sizeofXCRs},
		{"kvm_userspace_memory_region", unsafe.Sizeof(UserspaceMemoryRegion{}), sizeofUserspaceMemoryRegion},
		{"kvm_dirty_log", unsafe.Sizeof(dirtyLog{}), sizeofDirtyLog},
		{"kvm_irq_level", unsafe.Sizeof(irqLevel{}), sizeofIRQLevel},
		{"kvm_irqchip", unsafe.Sizeof(IRQChip{}), sizeofIRQChip},
		{"kvm_irqfd", unsafe.Sizeof(irqfd{}), sizeofIRQFD},
		{"kvm_pit_config", unsafe.Sizeof(pitConfig{}), sizeofPITConfig},
		{"kvm_pit_channel_state", unsafe.Sizeof(PITChannelState{}), 24},
		{"kvm_pit_state2", unsafe.Sizeof(PITState2{}), sizeofPITState2},
		{"kvm_ioeventfd", unsafe.Sizeof(ioeventfd{}), sizeofIOEventFD},
		{"kvm_clock_data", unsafe.Sizeof(ClockData{}), sizeofClockData},
		{"kvm_enable_cap", unsafe.Sizeof(enableCap{}), sizeofEnableCap},
		{"kvm_msi", unsafe.Sizeof(MSI{}), sizeofMSI},
		{"kvm_cpuid_entry2", unsafe.Sizeof(CPUIDEntry{}), sizeofCPUIDEntry2},
		{"kvm_msr_entry", unsafe.Sizeof(MSR{}), sizeofMSREntry},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("sizeof(%s) = %d, want %d", c.name, c.got, c.want)
		}
	}
	// Offsets the kernel relies on inside the bigger structs.
	var ev VCPUEvents
	if off := unsafe.Offsetof(ev.ExceptionPayload); off != 56 {
		t.Errorf("kvm_vcpu_events.exception_payload at %d, want 56", off)
	}
	var s Sregs
	if off := unsafe.Offsetof(s.CR0); off != 224 {
		t.Errorf("kvm_sregs.cr0 at %d, want 224", off)
	}
}

// Known request numbers from the kernel headers (as printed by a C program).
func TestIoctlNumbers(t *testing.T) {
	cases := []struct {
		name      string
		got, want uintptr
	}{
		{"KVM_RUN", reqRun, 0xae80},
		{"KVM_GET_REGS", reqGetRegs, 0x8090ae81},
		{"KVM_SET_SREGS", reqSetSregs, 0x4138ae84},
		{"KVM_SET_USER_MEMORY_REGION", reqSetUserMemoryRegion, 0x4020ae46},
		{"KVM_GET_SUPPORTED_CPUID", reqGetSupportedCPUID, 0xc008ae05},
		{"KVM_SET_CPUID2", reqSetCPUID2, 0x4008ae90},
		{"KVM_CREATE_PIT2", reqCreatePIT2, 0x4040ae77},
		{"KVM_IRQFD", reqIRQFD, 0x4020ae76},
		{"KVM_IOEVENTFD", reqIOEventFD, 0x4040ae79},
		{"KVM_SET_VCPU_EVENTS", reqSetVCPUEvents, 0x4040aea0},
		{"KVM_GET_XSAVE", reqGetXSave, 0x9000aea4},
		{"KVM_GET_IRQCHIP", reqGetIRQChip, 0xc208ae62},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
}

func TestPCRouting(t *testing.T) {
	r := PCRouting()
	pin2 := 0
	for _, e := range r {
		if e.Chip == IRQChipIOAPIC && e.Pin == 2 {
			pin2++
			if e.GSI != 0 {
				t.Errorf("IOAPIC pin 2 fed by GSI %d, want the PIT's GSI 0", e.GSI)
			}
		}
		if e.GSI == 2 {
			t.Errorf("GSI 2 (the PIC cascade) is routed: %+v", e)
		}
	}
	if pin2 != 1 || len(r) != 15+23 {
		t.Errorf("%d routes, %d to IOAPIC pin 2", len(r), pin2)
	}
}
