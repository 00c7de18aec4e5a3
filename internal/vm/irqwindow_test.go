package vm

import (
	"os"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

// irqWindowCounter is the interrupt-window guest's liveness counter.
const irqWindowCounter = 0x3000

// TestInterruptPendingWithInterruptsOff runs a guest that keeps its LAPIC
// timer's interrupt pending with interrupts off while it counts and exits
// on CPUID: KVM then asks for an interrupt window (SVM's V_IRQ) on every
// entry. The host must keep its own time and the guest must keep running.
// Why a test: under TCG, QEMU's emulated VMRUN raised V_IRQ with an
// unlocked update that could drop the lab host's own timer interrupt, and
// a one-vCPU lab host with a one-shot LAPIC timer then never ran its
// kernel again (the lab host froze within about 25 s of this guest;
// lab/qemu.patch, lab.tickOptions). On hardware KVM it is a few seconds of
// an unusual but legal guest.
func TestInterruptPendingWithInterruptsOff(t *testing.T) {
	kvmtest.Require(t)
	var a gasm
	// xAPIC (SDM vol. 3 ch. 11): software-enable it (SVR), divide by 1,
	// periodic timer on vector 0x20 with a short count. The flat guest runs
	// with IF=0, so every tick stays pending.
	a.st32(0xFEE000F0, 0x1FF)
	a.st32(0xFEE003E0, 0xB)
	a.st32(0xFEE00320, 0x20|1<<17)
	a.st32(0xFEE00380, 0x1000)
	a.movRAX(irqWindowCounter)
	loop := len(a.b)
	a.emit(0x48, 0xFF, 0x00) // inc qword [rax]
	a.emit(0x0F, 0xA2)       // cpuid: an exit KVM handles itself (clobbers EAX)
	a.movRAX(irqWindowCounter)
	a.emit(0xEB, byte(int8(loop-(len(a.b)+2)))) // jmp loop
	m, err := New(Config{CPUs: 1, MemoryMiB: 64, Flat: &Flat{Code: a.b, Addr: flatAddr}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	run := 5 * time.Second
	if os.Getenv("GOVISOR_LAB") == "1" && os.Getenv("GOVISOR_LAB_QEMU") != "kvm" {
		run = 45 * time.Second // the TCG lab froze within about 25 s
	}
	last := readCounter(m, irqWindowCounter)
	for end := time.Now().Add(run); time.Now().Before(end); {
		time.Sleep(5 * time.Second)
		n := readCounter(m, irqWindowCounter)
		if n == last {
			t.Fatalf("the guest stopped counting at %d", n)
		}
		last = n
	}
	t.Logf("the guest counted to %d with an interrupt pending", last)
}
