package cpuid

import (
	"fmt"
	"strings"
)

// Reg names one of the four CPUID output registers.
type Reg uint8

// The CPUID output registers.
const (
	EAX Reg = iota
	EBX
	ECX
	EDX
)

// String returns the register's name.
func (r Reg) String() string {
	switch r {
	case EAX:
		return "EAX"
	case EBX:
		return "EBX"
	case ECX:
		return "ECX"
	case EDX:
		return "EDX"
	}
	return fmt.Sprintf("Reg(%d)", uint8(r))
}

// Bits selects bits of one output register of one CPUID leaf. Index is
// compared only with entries whose index is significant (FlagSignificantIndex).
type Bits struct {
	Function, Index uint32
	Reg             Reg
	Mask            uint32
}

// Template says which CPUID bits a guest sees, in the manner of
// Firecracker's CPU templates.
type Template struct {
	// Name identifies the template (as in `govisor probe`).
	Name string
	// Clear lists bits forced to 0.
	Clear []Bits
	// Set lists bits forced to 1 in leaves KVM reports.
	Set []Bits
	// ZeroLeaves lists leaves whose every sub-leaf is zeroed.
	ZeroLeaves []uint32
	// NoXSave asks a Linux guest not to use XSAVE (kernel option noxsave).
	NoXSave bool
	// ClearCPUID lists Linux feature names to hide with clearcpuid=, for
	// hosts where KVM does not apply the template to every leaf.
	ClearCPUID []string
	// GlibcHide lists glibc CPU feature names that guest user space must
	// not use (GLIBC_TUNABLES=glibc.cpu.hwcaps=-NAME,...), for hosts where
	// guest user space sees the host's CPUID and XCR0.
	GlibcHide []string
}

// bit returns a Bits for bit n of reg in leaf fn, sub-leaf idx.
func bit(fn, idx uint32, reg Reg, n ...uint) Bits {
	b := Bits{Function: fn, Index: idx, Reg: reg}
	for _, i := range n {
		b.Mask |= 1 << i
	}
	return b
}

// Feature bits named by the Intel SDM vol. 2A, CPUID instruction, and
// AMD APM vol. 3, appendix E.
var (
	hypervisorBit = bit(1, 0, ECX, 31) // CPUID.1:ECX[31], reserved for hypervisors
	vmx           = bit(1, 0, ECX, 5)
	svm           = bit(0x80000001, 0, ECX, 2)
	// KVM_FEATURE_PV_UNHALT, KVM_FEATURE_PV_SEND_IPI and
	// KVM_FEATURE_PV_SCHED_YIELD (Linux Documentation/virt/kvm/x86/cpuid.rst).
	kvmHypercallFeatures = bit(0x40000001, 0, EAX, 7, 11, 13)
)

// Host exposes everything KVM supports that a VM may use at full speed. It
// marks the CPU as virtual and hides nested virtualization (VMX, SVM):
// the VMM neither sets up nor saves nested state, so snapshots and
// migration would lose it.
var Host = Template{
	Name:  "host",
	Clear: []Bits{vmx, svm},
	Set:   []Bits{hypervisorBit},
}

// PVM hides what the instruction emulator of kvm_pvm (a software KVM)
// cannot run at guest CPL0: CMPXCHG16B, XSAVE/XRSTOR(S) and everything
// that needs XSAVE-managed state (AVX, AVX2, AVX-512, AMX, MPX, PKU, CET),
// POPCNT/LZCNT, RDRAND/RDSEED, RDPID, FSGSBASE, INVPCID/PCID, SMAP
// (STAC/CLAC), and the fast-string hints ERMS/FSRM. kvm_pvm applies
// KVM_SET_CPUID2 only to the bits it reports as supported (leaf 7 shows
// the host's bits whatever is set), so Linux guests also get KernelArgs.
//
// It also hides the KVM paravirtual features that are used through
// hypercalls (PV_UNHALT, PV_SEND_IPI, PV_SCHED_YIELD): kvm_pvm's emulator
// rewrites a guest's VMMCALL into its own hypercall instruction in place,
// which faults once Linux has made its text read-only (seen: an oops in
// kvm_hypercall4 sending an IPI). kvmclock and the other MSR-based
// features stay.
var PVM = Template{
	Name: "pvm",
	Clear: []Bits{
		vmx, svm,
		// CPUID.1:ECX: FMA, CX16, PCID, POPCNT, XSAVE, OSXSAVE, AVX, F16C, RDRAND.
		bit(1, 0, ECX, 12, 13, 17, 23, 26, 27, 28, 29, 30),
		// CPUID.7.0:EBX: FSGSBASE, AVX2, ERMS, INVPCID, MPX, AVX512F, AVX512DQ,
		// RDSEED, SMAP, AVX512IFMA, AVX512PF, AVX512ER, AVX512CD, AVX512BW, AVX512VL.
		bit(7, 0, EBX, 0, 5, 9, 10, 14, 16, 17, 18, 20, 21, 26, 27, 28, 30, 31),
		// CPUID.7.0:ECX: AVX512VBMI, PKU, OSPKE, AVX512VBMI2, CET_SS, VAES,
		// VPCLMULQDQ, AVX512VNNI, AVX512BITALG, AVX512VPOPCNTDQ, RDPID.
		bit(7, 0, ECX, 1, 3, 4, 6, 7, 9, 10, 11, 12, 14, 22),
		// CPUID.7.0:EDX: AVX512_4VNNIW, AVX512_4FMAPS, FSRM, AVX512_VP2INTERSECT,
		// CET_IBT, AMX_BF16, AVX512_FP16, AMX_TILE, AMX_INT8.
		bit(7, 0, EDX, 2, 3, 4, 8, 20, 22, 23, 24, 25),
		// CPUID.7.1:EAX: AVX_VNNI, AVX512_BF16, AVX_IFMA.
		bit(7, 1, EAX, 4, 5, 23),
		// CPUID.80000001H:ECX: ABM (LZCNT), XOP, FMA4, TBM.
		bit(0x80000001, 0, ECX, 5, 11, 16, 21),
		kvmHypercallFeatures,
	},
	Set: []Bits{hypervisorBit},
	// Leaf 0xD describes XSAVE state (XSAVES is sub-leaf 1 EAX bit 3);
	// leaves 0x1D and 0x1E describe AMX tiles, which live in XSAVE state.
	ZeroLeaves: []uint32{0xD, 0x1D, 0x1E},
	NoXSave:    true,
	ClearCPUID: []string{"cx16", "xsave", "popcnt", "erms", "fsrm", "fsgsbase", "rdpid", "invpcid", "pcid", "smap", "rdrand", "rdseed"},
	// kvm_pvm runs guest user space with the host's CPUID and XCR0 (AVX and
	// AVX-512 enabled), while the guest kernel, told noxsave, saves only the
	// FXSAVE area when it switches processes: the upper halves of YMM/ZMM
	// and the mask registers leak from one guest process to another (seen
	// with a probe in the test guest). glibc then corrupts strings in its
	// AVX2/EVEX string functions. The kernel passes GLIBC_TUNABLES to init's
	// environment, so glibc keeps to its SSE2 code there.
	GlibcHide: []string{"AVX", "AVX2", "AVX512F", "AVX512VL", "AVX512BW", "AVX512DQ", "AVX512CD",
		"AVX512ER", "AVX512PF", "FMA", "F16C", "AVX_VNNI", "XSAVEC", "XSAVE", "OSXSAVE"},
}

// Templates returns every built-in template.
func Templates() []Template { return []Template{Host, PVM} }

// KernelArgs returns the Linux command-line options that hide the
// template's features from a guest whose KVM ignores parts of the CPUID
// (kvm_pvm passes leaf 7 through from the host, and the host's CPUID to
// guest user space); "" if none are needed.
func KernelArgs(t Template) string {
	var args []string
	if t.NoXSave {
		args = append(args, "noxsave")
	}
	if len(t.ClearCPUID) > 0 {
		args = append(args, "clearcpuid="+strings.Join(t.ClearCPUID, ","))
	}
	if len(t.GlibcHide) > 0 {
		args = append(args, "GLIBC_TUNABLES=glibc.cpu.hwcaps=-"+strings.Join(t.GlibcHide, ",-"))
	}
	return strings.Join(args, " ")
}

// matches reports whether b applies to e.
func (b Bits) matches(e *Entry) bool {
	return e.Function == b.Function && (e.Flags&FlagSignificantIndex == 0 || e.Index == b.Index)
}

// reg returns a pointer to register r of e.
func (e *Entry) reg(r Reg) *uint32 {
	switch r {
	case EAX:
		return &e.EAX
	case EBX:
		return &e.EBX
	case ECX:
		return &e.ECX
	default:
		return &e.EDX
	}
}

// apply applies t's masks to entries in place.
func (t Template) apply(entries []Entry) error {
	for _, bs := range [][]Bits{t.Clear, t.Set} {
		for _, b := range bs {
			if b.Reg > EDX {
				return fmt.Errorf("cpuid: template %q: bad register %v", t.Name, b.Reg)
			}
		}
	}
	for i := range entries {
		e := &entries[i]
		for _, fn := range t.ZeroLeaves {
			if e.Function == fn {
				e.EAX, e.EBX, e.ECX, e.EDX = 0, 0, 0, 0
			}
		}
		for _, b := range t.Clear {
			if b.matches(e) {
				*e.reg(b.Reg) &^= b.Mask
			}
		}
		for _, b := range t.Set {
			if b.matches(e) {
				*e.reg(b.Reg) |= b.Mask
			}
		}
	}
	return nil
}
