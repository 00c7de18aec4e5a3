package vm

import (
	"encoding/binary"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

// gasm emits the few x86-64 instructions the hostile guests need. Every
// memory access goes through RAX (the address) and RCX (the value), every
// port access through DX and EAX, and loops count in ESI, so the attack
// snippets compose without register allocation. The guest runs in the
// flat 64-bit mode the VMM sets up (4 GiB identity-mapped with 2 MiB
// pages, boot tables in x86setup.go), with interrupts off.
type gasm struct{ b []byte }

func (a *gasm) emit(b ...byte) { a.b = append(a.b, b...) }

func (a *gasm) imm32(v uint32) { a.b = binary.LittleEndian.AppendUint32(a.b, v) }

func (a *gasm) imm64(v uint64) { a.b = binary.LittleEndian.AppendUint64(a.b, v) }

// movRAX, movRCX: mov reg, imm64.
func (a *gasm) movRAX(v uint64) { a.emit(0x48, 0xB8); a.imm64(v) }
func (a *gasm) movRCX(v uint64) { a.emit(0x48, 0xB9); a.imm64(v) }

// st stores the low width bytes of v at addr (width 1, 2, 4 or 8).
func (a *gasm) st(addr uint64, width int, v uint64) {
	a.movRAX(addr)
	a.movRCX(v)
	switch width {
	case 1:
		a.emit(0x88, 0x08) // mov [rax], cl
	case 2:
		a.emit(0x66, 0x89, 0x08) // mov [rax], cx
	case 4:
		a.emit(0x89, 0x08) // mov [rax], ecx
	case 8:
		a.emit(0x48, 0x89, 0x08) // mov [rax], rcx
	default:
		panic("gasm: store width")
	}
}

func (a *gasm) st8(addr uint64, v uint8)   { a.st(addr, 1, uint64(v)) }
func (a *gasm) st16(addr uint64, v uint16) { a.st(addr, 2, uint64(v)) }
func (a *gasm) st32(addr uint64, v uint32) { a.st(addr, 4, uint64(v)) }
func (a *gasm) st64(addr uint64, v uint64) { a.st(addr, 8, v) }

// ld loads width bytes at addr, zero-extended, into ECX (width 1, 2 or 4).
func (a *gasm) ld(addr uint64, width int) {
	a.movRAX(addr)
	switch width {
	case 1:
		a.emit(0x0F, 0xB6, 0x08) // movzx ecx, byte [rax]
	case 2:
		a.emit(0x0F, 0xB7, 0x08) // movzx ecx, word [rax]
	case 4:
		a.emit(0x8B, 0x08) // mov ecx, [rax]
	case 8:
		a.emit(0x48, 0x8B, 0x08) // mov rcx, [rax]
	default:
		panic("gasm: load width")
	}
}

// out writes the low width bytes of v to port.
func (a *gasm) out(port uint16, width int, v uint32) {
	a.emit(0xBA)
	a.imm32(uint32(port)) // mov edx, port
	a.emit(0xB8)
	a.imm32(v) // mov eax, v
	switch width {
	case 1:
		a.emit(0xEE)
	case 2:
		a.emit(0x66, 0xEF)
	case 4:
		a.emit(0xEF)
	default:
		panic("gasm: port width")
	}
}

// in reads width bytes from port into ECX (zero-extended).
func (a *gasm) in(port uint16, width int) {
	a.emit(0xBA)
	a.imm32(uint32(port))
	a.emit(0x31, 0xC0) // xor eax, eax
	switch width {
	case 1:
		a.emit(0xEC)
	case 2:
		a.emit(0x66, 0xED)
	case 4:
		a.emit(0xED)
	default:
		panic("gasm: port width")
	}
	a.emit(0x89, 0xC1) // mov ecx, eax
}

// report writes tag<<16 | (ECX & 0xFFFF) to port as a 32-bit OUT.
func (a *gasm) report(port uint16, tag uint16) {
	a.emit(0x0F, 0xB7, 0xC1) // movzx eax, cx
	a.emit(0x0D)
	a.imm32(uint32(tag) << 16) // or eax, tag<<16
	a.emit(0xBA)
	a.imm32(uint32(port))
	a.emit(0xEF)
}

// repeat runs body n times (n > 0), counting in ESI; body must leave ESI alone.
func (a *gasm) repeat(n uint32, body func()) {
	a.emit(0xBE)
	a.imm32(n) // mov esi, n
	top := len(a.b)
	body()
	a.emit(0xFF, 0xCE) // dec esi
	a.emit(0x0F, 0x85) // jnz rel32
	a.imm32(uint32(int32(top - (len(a.b) + 4))))
}

// spin loops forever on PAUSE, with a CPUID exit every kvmtest.ExitEvery
// rounds (kvmtest.Asm SpinForever says why).
func (a *gasm) spin() {
	a.spinForever(func(*kvmtest.Asm) {}, func(k *kvmtest.Asm) { k.Pause() })
}

// count increments the qword at addr forever (a liveness counter), with a
// CPUID exit every kvmtest.ExitEvery rounds.
func (a *gasm) count(addr uint64) {
	a.spinForever(func(k *kvmtest.Asm) { k.MovRAX(addr) }, func(k *kvmtest.Asm) { k.Raw(0x48, 0xFF, 0x00) }) // inc qword [rax]
}

// spinForever appends kvmtest.Asm SpinForever's loop (its jumps are
// relative, so it runs wherever it lands in this code).
func (a *gasm) spinForever(setup, body func(*kvmtest.Asm)) {
	k := kvmtest.Asm{B: a.b}
	k.SpinForever(setup, body)
	a.b = k.B
}

// ifNotVCPU0 sends vCPUs other than 0 (RDI = vCPU index, as Flat enters
// them) elsewhere: call patch(target) once that code's offset is known.
func (a *gasm) ifNotVCPU0() (patch func(target int)) {
	a.emit(0x85, 0xFF) // test edi, edi
	a.emit(0x0F, 0x85) // jnz rel32
	at := len(a.b)
	a.imm32(0)
	return func(target int) {
		binary.LittleEndian.PutUint32(a.b[at:], uint32(int32(target-(at+4))))
	}
}

// hostileTrapPort is where catchAll's handlers report what a vCPU took.
const hostileTrapPort = 0x520

// catchAll emits every vCPU's prologue: a stack of 4 KiB below
// stackBase+4 KiB*(vCPU index+1) and an IDT whose 256 handlers each
// report their vector (a 1-byte write to hostileTrapPort), then CR2, the
// three qwords on top of the handler's stack and RSP (32-bit writes, low
// half first), and halt for good. The guest runs with interrupts off and
// takes no exception by design; what a vCPU took when it died (a triple
// fault without an IDT says nothing, and kvm_amd resets the vCPU on one)
// is the clue. The stubs and the IDT go after the code (tables), at
// offsets fixed up then.
func (a *gasm) catchAll(stackBase uint32) (tables func()) {
	a.emit(0x48, 0x8D, 0x47, 0x01) // lea rax, [rdi+1]
	a.emit(0x48, 0xC1, 0xE0, 0x0C) // shl rax, 12
	a.emit(0x48, 0x05)             // add rax, imm32
	a.imm32(stackBase)             //
	a.emit(0x48, 0x89, 0xC4)       // mov rsp, rax
	a.emit(0x0F, 0x01, 0x1C, 0x25) // lidt [disp32]
	fix := len(a.b)
	a.imm32(0)
	return func() {
		common := make([]int, 0, 256) // offsets of each stub's jmp rel32
		stubs := make([]int, 256)
		for v := range 256 {
			stubs[v] = len(a.b)
			a.emit(0xB0, byte(v)) // mov al, v
			a.emit(0xE9)          // jmp rel32 common
			common = append(common, len(a.b))
			a.imm32(0)
		}
		at := len(a.b)
		for _, c := range common {
			binary.LittleEndian.PutUint32(a.b[c:], uint32(int32(at-(c+4))))
		}
		port := uint16(hostileTrapPort)
		a.emit(0x66, 0xBA, byte(port), byte(port>>8)) // mov dx, port
		a.emit(0xEE)                                  // out dx, al
		a.emit(0x0F, 0x20, 0xD0)                      // mov rax, cr2
		a.outRAX()
		for i := range 3 {
			a.emit(0x48, 0x8B, 0x44, 0x24, byte(8*i)) // mov rax, [rsp+8i]
			a.outRAX()
		}
		a.emit(0x48, 0x89, 0xE0) // mov rax, rsp
		a.outRAX()
		hl := len(a.b)
		a.emit(0xFA, 0xF4) // cli; hlt
		a.emit(0xEB, byte(int8(hl-(len(a.b)+2))))
		for len(a.b)%16 != 0 {
			a.emit(0x90)
		}
		idt := len(a.b)
		for v := range 256 {
			a.emit(kvmtest.IDTGate64(flatAddr+uint64(stubs[v]), 0x10)...)
		}
		idtr := len(a.b)
		a.emit(0xFF, 0x0F) // limit 256*16-1
		a.imm64(flatAddr + uint64(idt))
		binary.LittleEndian.PutUint32(a.b[fix:], uint32(flatAddr+uint64(idtr)))
	}
}

// outRAX writes RAX to the port in DX as two 32-bit writes, low half first.
func (a *gasm) outRAX() {
	a.emit(0xEF)                   // out dx, eax
	a.emit(0x48, 0xC1, 0xE8, 0x20) // shr rax, 32
	a.emit(0xEF)                   // out dx, eax
}
