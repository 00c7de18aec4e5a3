package main

import (
	"encoding/binary"
	"fmt"

	"github.com/govisor/govisor/internal/kvm"
)

// asm32 assembles the few 32-bit instructions the bench guest needs, with
// labels and rel32/rel8 fixups.
type asm32 struct {
	b      []byte
	labels map[string]int
	fix    []fixup
}

type fixup struct {
	at, size int // offset of the displacement, 1 or 4 bytes
	label    string
}

func (a *asm32) emit(b ...byte) *asm32 { a.b = append(a.b, b...); return a }
func (a *asm32) imm32(v uint32) *asm32 { a.b = binary.LittleEndian.AppendUint32(a.b, v); return a }
func (a *asm32) label(name string) *asm32 {
	if a.labels == nil {
		a.labels = map[string]int{}
	}
	a.labels[name] = len(a.b)
	return a
}

// jump emits opcode bytes followed by a displacement to label.
func (a *asm32) jump(label string, size int, op ...byte) *asm32 {
	a.emit(op...)
	a.fix = append(a.fix, fixup{len(a.b), size, label})
	return a.emit(make([]byte, size)...)
}

func (a *asm32) bytes() []byte {
	for _, f := range a.fix {
		d := a.labels[f.label] - (f.at + f.size)
		if f.size == 1 {
			if d < -128 || d > 127 {
				panic(fmt.Sprintf("bench guest: rel8 to %s out of range", f.label))
			}
			a.b[f.at] = byte(int8(d))
		} else {
			binary.LittleEndian.PutUint32(a.b[f.at:], uint32(int32(d)))
		}
	}
	return a.b
}

// guest32 returns 32-bit protected-mode code (the PVH entry state, paging
// off). With no buffer and no gap measure it halts for good (idle).
// Otherwise it loops: it writes one word per 4 KiB page of a dirtyMiB
// buffer at 16 MiB (if any), and between writes reads the TSC; a gap of
// more than gapCycles since the previous read (a pause the guest could
// not see coming: a host preemption, a migration's downtime) is printed
// on COM1 as "G<cycles in hex>". The guest's TSC keeps running while it
// is paused only as far as the VMM lets it: both govisor and QEMU carry it
// over a migration, so the gap is the part of the downtime the guest's
// clock sees.
func guest32(dirtyMiB int, gapCycles uint32) []byte {
	if dirtyMiB == 0 && gapCycles == 0 {
		return []byte{0xFA, 0xF4, 0xEB, 0xFD} // cli; hlt; jmp back to hlt
	}
	const buf, stack = 16 << 20, 0x80000
	end := uint32(buf + dirtyMiB<<20)
	var a asm32
	a.emit(0xFA)                   // cli
	a.emit(0xBC).imm32(stack)      // mov esp, stack
	a.emit(0x31, 0xED)             // xor ebp, ebp
	a.emit(0x0F, 0x31, 0x89, 0xC6) // rdtsc; mov esi, eax
	a.label("outer")               //
	a.emit(0xBF).imm32(buf)        // mov edi, buf
	a.label("inner")               //
	if dirtyMiB > 0 {              //
		a.emit(0x89, 0x2F)             // mov [edi], ebp
		a.emit(0x81, 0xC7).imm32(4096) // add edi, 4096
	}
	if gapCycles > 0 {
		a.jump("check", 4, 0xE8) // call check
	}
	if dirtyMiB > 0 {
		a.emit(0x81, 0xFF).imm32(end)  // cmp edi, end
		a.jump("inner", 4, 0x0F, 0x82) // jb inner
	}
	a.emit(0x45)                   // inc ebp
	a.jump("outer", 4, 0xE9)       // jmp outer
	a.label("check")               //
	a.emit(0x0F, 0x31)             // rdtsc
	a.emit(0x89, 0xC3)             // mov ebx, eax
	a.emit(0x29, 0xF3)             // sub ebx, esi
	a.emit(0x89, 0xC6)             // mov esi, eax
	a.emit(0x81, 0xFB)             // cmp ebx, gapCycles
	a.imm32(gapCycles)             //
	a.jump("print", 1, 0x73)       // jae print
	a.emit(0xC3)                   // ret
	a.label("print")               //
	a.emit(0x66, 0xBA, 0xF8, 3)    // mov dx, 0x3f8
	a.emit(0xB0, 'G', 0xEE)        // mov al, 'G'; out dx, al
	a.emit(0xB9).imm32(8)          // mov ecx, 8
	a.label("hex")                 //
	a.emit(0xC1, 0xC3, 4)          // rol ebx, 4
	a.emit(0x88, 0xD8)             // mov al, bl
	a.emit(0x24, 0x0F)             // and al, 0xf
	a.emit(0x04, '0')              // add al, '0'
	a.emit(0x3C, '9')              // cmp al, '9'
	a.jump("digit", 1, 0x76)       // jbe digit
	a.emit(0x04, 7)                // add al, 'A'-'9'-1
	a.label("digit")               //
	a.emit(0xEE)                   // out dx, al
	a.emit(0x49)                   // dec ecx
	a.jump("hex", 1, 0x75)         // jnz hex
	a.emit(0xB0, '\n', 0xEE)       // mov al, '\n'; out dx, al
	a.emit(0x0F, 0x31, 0x89, 0xC6) // rdtsc; mov esi, eax: printing is not a gap
	a.emit(0xC3)                   // ret
	return a.bytes()
}

// tscKHz is the TSC frequency KVM gives guests on this host.
func tscKHz() (uint32, error) {
	sys, err := kvm.Open()
	if err != nil {
		return 0, err
	}
	defer sys.Close()
	vm, err := sys.CreateVM()
	if err != nil {
		return 0, err
	}
	defer vm.Close()
	c, err := vm.CreateVCPU(0)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.TSCKHz()
}
