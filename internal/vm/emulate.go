package vm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"strings"

	"github.com/govisor/govisor/internal/kvm"
)

// Exception vectors (Intel SDM vol. 3, 6.3.1).
const (
	vecBP = 3
	vecUD = 6
)

// emulateFailed handles a KVM emulation failure on an instruction whose only
// effect is to raise an exception or to do something trivial. kvm_pvm (see
// DESIGN.md) emulates guest-kernel code and cannot run int3, ud2, int n,
// clac/stac, fwait or popcnt there; hardware KVM never exits for these, so
// this path costs nothing on real hosts.
func (r *vcpuRunner) emulateFailed(ie kvm.InternalError) (bool, error) {
	regs, err := r.c.Regs()
	if err != nil {
		return false, err
	}
	insn := ie.Insn
	if len(insn) == 0 {
		insn, err = r.readGuestCode(regs.RIP, 15)
		if err != nil {
			return false, fmt.Errorf("read instruction at rip %#x: %w", regs.RIP, err)
		}
	}
	act, err := decodeFallback(insn)
	if err != nil {
		return false, err
	}
	r.m.emulated.Add(1)
	regs.RIP += uint64(act.length)
	switch {
	case act.toggleAC != 0:
		if act.toggleAC > 0 {
			regs.RFLAGS |= 1 << 18
		} else {
			regs.RFLAGS &^= 1 << 18
		}
	case act.popcnt:
		src := getReg(&regs, act.src)
		if act.size == 4 {
			src &= 0xFFFFFFFF
		}
		setReg(&regs, act.dst, uint64(bits.OnesCount64(src)))
		// POPCNT clears OF, SF, ZF, AF, CF, PF and sets ZF when the source is 0.
		regs.RFLAGS &^= 0x8D5
		if src == 0 {
			regs.RFLAGS |= 1 << 6
		}
	}
	if err := r.c.SetRegs(regs); err != nil {
		return false, err
	}
	if act.vector < 0 {
		return true, nil
	}
	ev, err := r.c.VCPUEvents()
	if err != nil {
		return false, err
	}
	ev.Exception.Injected = 1
	ev.Exception.Nr = uint8(act.vector)
	ev.Exception.HasErrorCode = 0
	ev.Exception.Pending = 0
	ev.Flags = 0
	if err := r.c.SetVCPUEvents(ev); err != nil {
		return false, err
	}
	return true, nil
}

// fallback is what to do instead of an instruction KVM failed to emulate.
type fallback struct {
	length   int // bytes to skip
	vector   int // exception to inject after skipping, -1 for none
	toggleAC int // +1 stac, -1 clac
	popcnt   bool
	size     int // operand size for popcnt
	dst, src int // register numbers for popcnt
}

var errNotHandled = errors.New("instruction is not one govisor emulates")

// decodeFallback recognises the few instructions govisor completes itself.
func decodeFallback(b []byte) (fallback, error) {
	if len(b) == 0 {
		return fallback{}, errNotHandled
	}
	switch {
	case b[0] == 0xCC: // int3: a trap, so the saved RIP is the next instruction
		return fallback{length: 1, vector: vecBP}, nil
	case b[0] == 0xCD && len(b) >= 2 && b[1] < 32: // int n (an exception vector)
		return fallback{length: 2, vector: int(b[1])}, nil
	case len(b) >= 2 && b[0] == 0x0F && b[1] == 0x0B: // ud2: a fault, RIP stays
		return fallback{length: 0, vector: vecUD}, nil
	case len(b) >= 3 && b[0] == 0x0F && b[1] == 0x01 && b[2] == 0xCA: // clac
		return fallback{length: 3, vector: -1, toggleAC: -1}, nil
	case len(b) >= 3 && b[0] == 0x0F && b[1] == 0x01 && b[2] == 0xCB: // stac
		return fallback{length: 3, vector: -1, toggleAC: 1}, nil
	case b[0] == 0x9B: // fwait: no x87 exception is ever pending here
		return fallback{length: 1, vector: -1}, nil
	case b[0] == 0xF3: // popcnt r, r/m with a register operand
		i, rex := 1, byte(0)
		size := 4
		if i < len(b) && b[i]&0xF0 == 0x40 {
			rex = b[i]
			i++
			if rex&8 != 0 {
				size = 8
			}
		}
		if len(b) >= i+3 && b[i] == 0x0F && b[i+1] == 0xB8 && b[i+2]>>6 == 3 {
			modrm := b[i+2]
			dst := int(modrm>>3&7) | int(rex>>2&1)<<3
			src := int(modrm&7) | int(rex&1)<<3
			return fallback{length: i + 3, vector: -1, popcnt: true, size: size, dst: dst, src: src}, nil
		}
	}
	return fallback{}, fmt.Errorf("%w: % x", errNotHandled, b)
}

func regPtr(r *kvm.Regs, n int) *uint64 {
	return [...]*uint64{&r.RAX, &r.RCX, &r.RDX, &r.RBX, &r.RSP, &r.RBP, &r.RSI, &r.RDI,
		&r.R8, &r.R9, &r.R10, &r.R11, &r.R12, &r.R13, &r.R14, &r.R15}[n&15]
}

func getReg(r *kvm.Regs, n int) uint64    { return *regPtr(r, n) }
func setReg(r *kvm.Regs, n int, v uint64) { *regPtr(r, n) = v }

// readGuestCode reads n bytes at guest-virtual address va of the vCPU's
// current address space, stopping at the first unmapped page.
func (r *vcpuRunner) readGuestCode(va uint64, n int) ([]byte, error) {
	s, err := r.c.Sregs()
	if err != nil {
		return nil, err
	}
	va += s.CS.Base
	out := make([]byte, 0, n)
	for len(out) < n {
		gpa, err := translate(r.m.mem, s, va)
		if err != nil {
			if len(out) > 0 {
				return out, nil
			}
			return nil, err
		}
		chunk := 4096 - int(va&0xFFF)
		if chunk > n-len(out) {
			chunk = n - len(out)
		}
		b := make([]byte, chunk)
		if _, err := r.m.mem.ReadAt(b, int64(gpa)); err != nil {
			if len(out) > 0 {
				return out, nil
			}
			return nil, err
		}
		out = append(out, b...)
		va += uint64(chunk)
	}
	return out, nil
}

// translate walks the guest page tables (Intel SDM vol. 3, 4.3-4.5) for va.
func translate(mem interface {
	ReadAt([]byte, int64) (int, error)
}, s kvm.Sregs, va uint64) (uint64, error) {
	if s.CR0&cr0PG == 0 {
		return va & 0xFFFFFFFF, nil
	}
	read := func(addr uint64) (uint64, error) {
		var b [8]byte
		if _, err := mem.ReadAt(b[:], int64(addr)); err != nil {
			return 0, err
		}
		return binary.LittleEndian.Uint64(b[:]), nil
	}
	const addrMask = 0x000FFFFFFFFFF000
	if s.EFER&eferLMA == 0 {
		if s.CR4&cr4PAE == 0 {
			return 0, errors.New("32-bit non-PAE paging walk not implemented")
		}
		pdpte, err := read(s.CR3&0xFFFFFFE0 + (va>>30&3)*8)
		if err != nil || pdpte&1 == 0 {
			return 0, fmt.Errorf("page not present at %#x", va)
		}
		return walkFrom(read, pdpte&addrMask, va, 2)
	}
	levels := 4
	if s.CR4&(1<<12) != 0 { // LA57
		levels = 5
	}
	return walkFrom(read, s.CR3&addrMask, va, levels)
}

func walkFrom(read func(uint64) (uint64, error), table, va uint64, levels int) (uint64, error) {
	const addrMask = 0x000FFFFFFFFFF000
	for lvl := levels; lvl >= 1; lvl-- {
		shift := uint(12 + 9*(lvl-1))
		e, err := read(table + (va>>shift&0x1FF)*8)
		if err != nil {
			return 0, err
		}
		if e&1 == 0 {
			return 0, fmt.Errorf("page not present at %#x (level %d)", va, lvl)
		}
		if lvl <= 3 && lvl > 1 && e&0x80 != 0 { // 1 GiB or 2 MiB page
			mask := uint64(1)<<shift - 1
			return e&addrMask&^mask | va&mask, nil
		}
		table = e & addrMask
	}
	return table | va&0xFFF, nil
}

// dumpState formats the vCPU registers and the bytes at RIP for an error report.
func (r *vcpuRunner) dumpState() string {
	regs, err := r.c.Regs()
	if err != nil {
		return "(registers unavailable: " + err.Error() + ")"
	}
	s, _ := r.c.Sregs()
	var b strings.Builder
	fmt.Fprintf(&b, "  rip=%#016x rsp=%#016x rflags=%#x\n", regs.RIP, regs.RSP, regs.RFLAGS)
	fmt.Fprintf(&b, "  rax=%#x rbx=%#x rcx=%#x rdx=%#x rsi=%#x rdi=%#x rbp=%#x\n",
		regs.RAX, regs.RBX, regs.RCX, regs.RDX, regs.RSI, regs.RDI, regs.RBP)
	fmt.Fprintf(&b, "  r8=%#x r9=%#x r10=%#x r11=%#x r12=%#x r13=%#x r14=%#x r15=%#x\n",
		regs.R8, regs.R9, regs.R10, regs.R11, regs.R12, regs.R13, regs.R14, regs.R15)
	fmt.Fprintf(&b, "  cs=%#x (cpl %d, l=%d) cr0=%#x cr2=%#x cr3=%#x cr4=%#x efer=%#x",
		s.CS.Selector, s.CS.Selector&3, s.CS.L, s.CR0, s.CR2, s.CR3, s.CR4, s.EFER)
	if code, err := r.readGuestCode(regs.RIP, 15); err == nil {
		fmt.Fprintf(&b, "\n  code at rip: % x", code)
	}
	return b.String()
}
