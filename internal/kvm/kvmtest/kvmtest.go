// Package kvmtest helps tests that need /dev/kvm: Require skips them loudly
// where there is none, and the tiny freestanding guests here exercise the
// VMM in milliseconds.
package kvmtest

import (
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"
)

// Require lets t use KVM: it skips t, loudly, when /dev/kvm is missing,
// except in CI (CI=true) or with GOVISOR_REQUIRE_KVM=1, where a KVM test
// that cannot run is a failure; other errors fail it. Each test that gets
// KVM is recorded in $GOVISOR_KVM_TALLY, so a run can say how many ran.
func Require(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err == nil {
		f.Close()
		tally(t)
		return
	}
	if errors.Is(err, os.ErrNotExist) {
		if os.Getenv("CI") == "true" || os.Getenv("GOVISOR_REQUIRE_KVM") == "1" {
			t.Fatal("FAILED: this test needs KVM and /dev/kvm is missing; in CI a KVM test must run: " +
				"run the tests with `make test`, which runs them in a lab host (go test -exec 'govisor lab testexec')")
		}
		t.Skip("SKIPPED: /dev/kvm is missing on this machine; this test needs KVM (`make test` runs it in a lab host)")
	}
	t.Fatalf("open /dev/kvm: %v", err)
}

// tally appends the top-level test's name to $GOVISOR_KVM_TALLY when the
// test ends without skipping: a test that got KVM and then skipped (a UEFI
// test on a lab QEMU that cannot run it) did not run.
func tally(t testing.TB) {
	path := os.Getenv("GOVISOR_KVM_TALLY")
	if path == "" {
		return
	}
	name, _, _ := strings.Cut(t.Name(), "/")
	t.Cleanup(func() {
		if t.Skipped() {
			return
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			t.Logf("kvmtest: tally: %v", err)
			return
		}
		defer f.Close()
		f.WriteString(name + "\n")
	})
}

// Asm is a tiny x86-64 machine-code builder for test guests. Each method
// appends one instruction; the encodings are from the Intel SDM vol. 2.
type Asm struct{ B []byte }

func (a *Asm) emit(b ...byte) *Asm { a.B = append(a.B, b...); return a }

// MovDX loads a port number into DX (mov dx, imm16).
func (a *Asm) MovDX(port uint16) *Asm { return a.emit(0x66, 0xBA, byte(port), byte(port>>8)) }

// MovAL loads AL (mov al, imm8).
func (a *Asm) MovAL(v byte) *Asm { return a.emit(0xB0, v) }

// MovEAX loads EAX (mov eax, imm32).
func (a *Asm) MovEAX(v uint32) *Asm {
	return a.emit(0xB8, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}

// MovRAX loads RAX (mov rax, imm64).
func (a *Asm) MovRAX(v uint64) *Asm {
	a.emit(0x48, 0xB8)
	return a.emit(binary.LittleEndian.AppendUint64(nil, v)...)
}

// OutAL writes AL to port DX.
func (a *Asm) OutAL() *Asm { return a.emit(0xEE) }

// OutEAX writes EAX to port DX.
func (a *Asm) OutEAX() *Asm { return a.emit(0xEF) }

// InAL reads port DX into AL.
func (a *Asm) InAL() *Asm { return a.emit(0xEC) }

// MovEAXFromEDI copies the vCPU index (RDI in flat guests) to EAX.
func (a *Asm) MovEAXFromEDI() *Asm { return a.emit(0x89, 0xF8) }

// StoreImm32AtRAX writes a 32-bit immediate to [rax].
func (a *Asm) StoreImm32AtRAX(v uint32) *Asm {
	return a.emit(0xC7, 0x00, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}

// LoadEAXFromRAX reads [rax] into EAX (mov eax, [rax]).
func (a *Asm) LoadEAXFromRAX() *Asm { return a.emit(0x8B, 0x00) }

// IncMem64 increments the qword at an absolute 32-bit address.
func (a *Asm) IncMem64(addr uint32) *Asm {
	return a.emit(0x48, 0xFF, 0x04, 0x25, byte(addr), byte(addr>>8), byte(addr>>16), byte(addr>>24))
}

// Cpuid executes CPUID (clobbers EAX, EBX, ECX, EDX): an exit KVM
// handles in the kernel.
func (a *Asm) Cpuid() *Asm { return a.emit(0x0F, 0xA2) }

// ExitEvery is how many rounds of a guest's spin loop run between two of
// its CPUID exits (SpinForever): about a millisecond in a TCG lab host.
const ExitEvery = 1 << 16

// SpinForever runs body forever, executing CPUID (an exit KVM handles in
// the kernel) every ExitEvery rounds; setup runs first and again after
// each CPUID, which clobbers EAX, EBX, ECX and EDX, and body must leave
// ECX alone. Why the exit: under TCG's nested SVM (the lab) a vCPU
// spinning with interrupts off and no exit at all kept its lab CPU from
// ever taking an interrupt, freezing the lab host. Why not every round:
// an exit every millisecond or so is enough for that, and a loop that
// exits every round is mostly exits, each an emulated VMEXIT and VMRUN in
// a TCG lab.
func (a *Asm) SpinForever(setup, body func(*Asm)) *Asm {
	top := a.Len()
	setup(a)
	n := uint32(ExitEvery)
	a.emit(0xB9, byte(n), byte(n>>8), byte(n>>16), byte(n>>24)) // mov ecx, n
	inner := a.Len()
	body(a)
	a.emit(0xFF, 0xC9) // dec ecx
	rel := inner - (a.Len() + 6)
	a.emit(0x0F, 0x85, byte(rel), byte(rel>>8), byte(rel>>16), byte(rel>>24)) // jnz rel32
	a.Cpuid()
	rel = top - (a.Len() + 5)
	return a.emit(0xE9, byte(rel), byte(rel>>8), byte(rel>>16), byte(rel>>24)) // jmp rel32
}

// Lidt loads the IDTR from the 10-byte pseudo-descriptor at an absolute address.
func (a *Asm) Lidt(addr uint32) *Asm {
	return a.emit(0x0F, 0x01, 0x1C, 0x25, byte(addr), byte(addr>>8), byte(addr>>16), byte(addr>>24))
}

// Int3 is the breakpoint instruction.
func (a *Asm) Int3() *Asm { return a.emit(0xCC) }

// Ud2 raises #UD.
func (a *Asm) Ud2() *Asm { return a.emit(0x0F, 0x0B) }

// Iretq returns from an interrupt handler.
func (a *Asm) Iretq() *Asm { return a.emit(0x48, 0xCF) }

// AddQwordAtRSPImm8 adds to the qword at [rsp] (to move a saved RIP).
func (a *Asm) AddQwordAtRSPImm8(v int8) *Asm { return a.emit(0x48, 0x83, 0x04, 0x24, byte(v)) }

// Raw appends machine code the helpers here do not spell.
func (a *Asm) Raw(b ...byte) *Asm { return a.emit(b...) }

// Pause is the spin-wait hint.
func (a *Asm) Pause() *Asm { return a.emit(0xF3, 0x90) }

// Hlt halts until the next interrupt.
func (a *Asm) Hlt() *Asm { return a.emit(0xF4) }

// JmpBack jumps to the absolute offset target within this code (short jump).
func (a *Asm) JmpBack(target int) *Asm {
	rel := target - (len(a.B) + 2)
	return a.emit(0xEB, byte(int8(rel)))
}

// IncPages increments the first dword of each of pages 4 KiB pages from
// base, once each (clobbers EAX): a guest that dirties that many pages. The
// encoding means the same in 32-bit and 64-bit mode (base below 4 GiB).
func (a *Asm) IncPages(base uint32, pages int) *Asm {
	a.MovEAX(base)
	loop := a.Len()
	a.emit(0xF0, 0xFF, 0x00)             // lock inc dword [eax]
	a.emit(0x05, 0x00, 0x10, 0x00, 0x00) // add eax, 0x1000
	end := base + uint32(pages)*0x1000
	a.emit(0x3D, byte(end), byte(end>>8), byte(end>>16), byte(end>>24)) // cmp eax, end
	return a.emit(0x72, byte(int8(loop-(a.Len()+2))))                   // jb loop
}

// Len is the current code length (a label).
func (a *Asm) Len() int { return len(a.B) }

// Pad appends zero bytes up to offset n.
func (a *Asm) Pad(n int) *Asm {
	for len(a.B) < n {
		a.B = append(a.B, 0)
	}
	return a
}

// Exit writes v to the debug-exit port 0xF4 and halts.
func (a *Asm) Exit(v byte) *Asm { return a.MovDX(0xF4).MovAL(v).OutAL().Hlt() }

// Print writes s to the COM1 UART's transmit register.
func (a *Asm) Print(s string) *Asm {
	a.MovDX(0x3F8)
	for i := 0; i < len(s); i++ {
		a.MovAL(s[i]).OutAL()
	}
	return a
}

// IDTGate64 encodes a 64-bit interrupt gate to handler in code segment sel.
func IDTGate64(handler uint64, sel uint16) []byte {
	g := make([]byte, 16)
	binary.LittleEndian.PutUint16(g[0:], uint16(handler))
	binary.LittleEndian.PutUint16(g[2:], sel)
	g[5] = 0x8E // present, DPL 0, 64-bit interrupt gate
	binary.LittleEndian.PutUint16(g[6:], uint16(handler>>16))
	binary.LittleEndian.PutUint32(g[8:], uint32(handler>>32))
	return g
}
