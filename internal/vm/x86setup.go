package vm

import (
	"encoding/binary"
	"fmt"

	"github.com/govisor/govisor/internal/kvm"
)

// Fixed low-memory layout shared with internal/x86/linuxboot (boot_params at
// 0x7000, PVH start_info at 0x6000, cmdline at 0x20000), mptable (EBDA at
// 0x9FC00) and acpi (0xE0000-0xFFFFF).
const (
	gdtAddr   = 0x500
	idtAddr   = 0x520
	pml4Addr  = 0x9000
	pdptAddr  = 0xA000
	pdAddr    = 0xB000 // four page directories: 0xB000-0xEFFF, identity-map 4 GiB
	bootStack = 0x8FF0
)

// GDT selectors. The Linux 64-bit boot protocol (Documentation/arch/x86/boot.rst,
// "64-bit Boot Protocol") wants __BOOT_CS = 0x10 and __BOOT_DS = 0x18.
const (
	selCode64 = 0x10
	selData   = 0x18
	selTSS    = 0x20
	selCode32 = 0x28
)

// Descriptor access/flag words (type, S, DPL, P in the low byte; AVL, L, D/B, G in the high nibble).
const (
	flagsCode64 = 0xA09B
	flagsData   = 0xC093
	flagsTSS    = 0x808B
	flagsCode32 = 0xC09B
)

func gdtEntry(flags uint16, base, limit uint32) uint64 {
	return uint64(base&0xFF000000)<<32 | uint64(flags&0xF0FF)<<40 | uint64(limit&0x000F0000)<<32 |
		uint64(base&0x00FFFFFF)<<16 | uint64(limit&0xFFFF)
}

func segment(sel uint16, flags uint16) kvm.Segment {
	limit := uint32(0xFFFFF)
	g := uint8(flags >> 15 & 1)
	if g == 1 {
		limit = limit<<12 | 0xFFF
	}
	return kvm.Segment{
		Base: 0, Limit: limit, Selector: sel,
		Type: uint8(flags & 0xF), Present: uint8(flags >> 7 & 1), DPL: uint8(flags >> 5 & 3),
		DB: uint8(flags >> 14 & 1), S: uint8(flags >> 4 & 1), L: uint8(flags >> 13 & 1), G: g,
	}
}

// writeBootTables writes the GDT, an empty IDT and identity page tables
// mapping the first 4 GiB with 2 MiB pages (enough for any kernel entry).
func writeBootTables(mem interface {
	WriteAt([]byte, int64) (int, error)
}) error {
	gdt := make([]byte, 6*8)
	for i, e := range []uint64{0, 0, gdtEntry(flagsCode64, 0, 0xFFFFF), gdtEntry(flagsData, 0, 0xFFFFF),
		gdtEntry(flagsTSS, 0, 0xFFFFF), gdtEntry(flagsCode32, 0, 0xFFFFF)} {
		binary.LittleEndian.PutUint64(gdt[i*8:], e)
	}
	pt := make([]byte, pdAddr+4*0x1000-pml4Addr)
	binary.LittleEndian.PutUint64(pt[0:], pdptAddr|3)
	for i := 0; i < 4; i++ {
		binary.LittleEndian.PutUint64(pt[pdptAddr-pml4Addr+8*i:], uint64(pdAddr+0x1000*i)|3)
	}
	for i := 0; i < 4*512; i++ {
		binary.LittleEndian.PutUint64(pt[pdAddr-pml4Addr+8*i:], uint64(i)<<21|0x83) // P|RW|PS
	}
	for _, w := range []struct {
		addr int64
		b    []byte
	}{{gdtAddr, gdt}, {idtAddr, make([]byte, 8)}, {pml4Addr, pt}} {
		if _, err := mem.WriteAt(w.b, w.addr); err != nil {
			return fmt.Errorf("vm: write boot tables at %#x: %w", w.addr, err)
		}
	}
	return nil
}

// entryState is the register state a vCPU starts with.
type entryState struct {
	rip, rsi, rbx, rdi uint64
	pvh                bool // 32-bit protected mode, paging off (PVH boot ABI)
}

const (
	cr0PE   = 1 << 0
	cr0ET   = 1 << 4
	cr0PG   = 1 << 31
	cr4PAE  = 1 << 5
	eferLME = 1 << 8
	eferLMA = 1 << 10
)

// setEntryState puts vCPU c in 64-bit long mode (or 32-bit protected mode
// for PVH) at the given entry point, as the boot protocols require.
func setEntryState(c *kvm.VCPU, st entryState) error {
	s, err := c.Sregs()
	if err != nil {
		return err
	}
	s.GDT = kvm.DTable{Base: gdtAddr, Limit: 6*8 - 1}
	s.IDT = kvm.DTable{Base: idtAddr, Limit: 7}
	data := segment(selData, flagsData)
	s.DS, s.ES, s.FS, s.GS, s.SS = data, data, data, data, data
	s.TR = segment(selTSS, flagsTSS)
	if st.pvh {
		s.CS = segment(selCode32, flagsCode32)
		s.CR0 = cr0PE | cr0ET
		s.CR4 = 0
		s.EFER = 0
	} else {
		s.CS = segment(selCode64, flagsCode64)
		s.CR0 = cr0PE | cr0ET | cr0PG
		s.CR3 = pml4Addr
		s.CR4 = cr4PAE
		s.EFER = eferLME | eferLMA
	}
	if err := c.SetSregs(s); err != nil {
		return err
	}
	if err := c.SetRegs(kvm.Regs{RIP: st.rip, RSI: st.rsi, RBX: st.rbx, RDI: st.rdi, RSP: bootStack, RFLAGS: 2}); err != nil {
		return err
	}
	fpu := kvm.FPU{FCW: 0x37F, MXCSR: 0x1F80}
	return c.SetFPU(fpu)
}

// Boot MSRs as a freshly reset CPU plus firmware would leave them.
var bootMSRs = []kvm.MSR{
	{Index: 0x174}, {Index: 0x175}, {Index: 0x176}, // SYSENTER_CS/ESP/EIP
	{Index: 0xC0000081}, {Index: 0xC0000082}, {Index: 0xC0000083}, {Index: 0xC0000084}, // STAR, LSTAR, CSTAR, SFMASK
	{Index: 0xC0000102},             // KERNEL_GS_BASE
	{Index: 0x10},                   // TSC
	{Index: 0x1A0, Data: 1},         // MISC_ENABLE: fast strings
	{Index: 0x2FF, Data: 1<<11 | 6}, // MTRRdefType: MTRRs on, default write-back
}

// setBootMSRs writes bootMSRs, skipping any this KVM refuses (kvm_pvm does
// not implement every MSR; none of these is needed to boot).
func setBootMSRs(c *kvm.VCPU) {
	if c.SetMSRs(bootMSRs) == nil {
		return
	}
	for _, m := range bootMSRs {
		_ = c.SetMSRs([]kvm.MSR{m})
	}
}

// setupLAPIC routes LINT0 as ExtINT (the PIC) and LINT1 as NMI, as PC
// firmware does (Intel SDM vol. 3, 10.5.1 Local Vector Table).
func setupLAPIC(c *kvm.VCPU) error {
	l, err := c.LAPIC()
	if err != nil {
		return err
	}
	set := func(off int, mode uint32) {
		v := binary.LittleEndian.Uint32(l.Regs[off:])
		v = v&^(0x700|1<<16) | mode<<8
		binary.LittleEndian.PutUint32(l.Regs[off:], v)
	}
	set(0x350, 7) // LINT0: ExtINT
	set(0x360, 4) // LINT1: NMI
	return c.SetLAPIC(l)
}
