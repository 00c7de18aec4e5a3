package vm

import (
	"bytes"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

const flatAddr = 0x100000

// recorder is a test device that records every write and answers reads
// with the last value written.
type recorder struct {
	mu     sync.Mutex
	writes []uint32
	last   [8]byte
}

func (r *recorder) Read(_ uint64, d []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	copy(d, r.last[:])
}

func (r *recorder) Write(_ uint64, d []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b [4]byte
	copy(b[:], d)
	copy(r.last[:], d)
	r.writes = append(r.writes, binary.LittleEndian.Uint32(b[:]))
}

func (r *recorder) values() []uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint32(nil), r.writes...)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newFlat(t *testing.T, cpus int, code []byte, console *syncBuffer) *Machine {
	t.Helper()
	kvmtest.Require(t)
	cfg := Config{CPUs: cpus, MemoryMiB: 64, Flat: &Flat{Code: code, Addr: flatAddr}, DebugExit: true}
	if console != nil {
		cfg.Console = console
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(m.Close)
	return m
}

func waitExit(t *testing.T, m *Machine) Exit {
	t.Helper()
	select {
	case <-m.Done():
	case <-time.After(60 * time.Second):
		m.Stop(Exit{Reason: ExitHost})
		t.Fatal("guest did not stop within 60s")
	}
	return m.Wait()
}

func TestSerialAndDebugExit(t *testing.T) {
	var a kvmtest.Asm
	a.Print("hello from the guest\n").Exit(7)
	var out syncBuffer
	m := newFlat(t, 1, a.B, &out)
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	ex := waitExit(t, m)
	if ex.Reason != ExitDebug || ex.Code != 7 {
		t.Fatalf("exit = %+v, want debug-exit 7", ex)
	}
	if out.String() != "hello from the guest\n" {
		t.Fatalf("console = %q", out.String())
	}
}

func TestPIOAndMMIODispatch(t *testing.T) {
	const mmioBase, port = 0xD0000000, 0x510
	var a kvmtest.Asm
	a.MovRAX(mmioBase + 0x10).StoreImm32AtRAX(0xCAFEF00D).LoadEAXFromRAX()
	a.MovDX(port).OutEAX()
	a.MovEAX(0x1234).OutEAX()
	a.Exit(0)
	m := newFlat(t, 1, a.B, nil)
	mmio, pio := &recorder{}, &recorder{}
	if err := m.RegisterMMIO(mmioBase, 0x1000, mmio); err != nil {
		t.Fatal(err)
	}
	if err := m.RegisterPIO(port, 4, pio); err != nil {
		t.Fatal(err)
	}
	if ex := m.Run(); ex.Reason != ExitDebug || ex.Code != 0 {
		t.Fatalf("exit = %+v %v", ex, ex.Err)
	}
	if got := mmio.values(); len(got) != 1 || got[0] != 0xCAFEF00D {
		t.Fatalf("MMIO writes = %#x", got)
	}
	if got := pio.values(); len(got) != 2 || got[0] != 0xCAFEF00D || got[1] != 0x1234 {
		t.Fatalf("port writes = %#x, want the MMIO read-back then 0x1234", got)
	}
}

func TestMultiVCPUStartup(t *testing.T) {
	for _, n := range []int{2, 4} {
		var a kvmtest.Asm
		a.MovDX(0x510).MovEAXFromEDI().OutEAX()
		loop := a.Len()
		a.Hlt().JmpBack(loop)
		m := newFlat(t, n, a.B, nil)
		rec := &recorder{}
		if err := m.RegisterPIO(0x510, 4, rec); err != nil {
			t.Fatal(err)
		}
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for len(rec.values()) < n && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		m.Stop(Exit{Reason: ExitHost})
		ex := waitExit(t, m)
		if ex.Reason != ExitHost {
			t.Fatalf("exit = %+v", ex)
		}
		seen := map[uint32]bool{}
		for _, v := range rec.values() {
			seen[v] = true
		}
		for i := 0; i < n; i++ {
			if !seen[uint32(i)] {
				t.Errorf("%d vCPUs: vCPU %d never ran (saw %v)", n, i, rec.values())
			}
		}
	}
}

func TestPauseResume(t *testing.T) {
	m := newFlat(t, 2, countingGuest(), nil)
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { m.Stop(Exit{Reason: ExitHost}); waitExit(t, m) }()
	waitCounter(t, m, 0)
	for i := 0; i < 3; i++ {
		if err := m.Pause(); err != nil {
			t.Fatal(err)
		}
		v1 := counter(m)
		time.Sleep(20 * time.Millisecond)
		if v2 := counter(m); v2 != v1 {
			t.Fatalf("counter moved while paused: %d -> %d", v1, v2)
		}
		m.Resume()
		waitCounter(t, m, v1)
	}
}

// TestExceptionFallback runs int3 and ud2 at CPL0 with handlers installed.
// kvm_pvm cannot emulate them and govisor raises the exceptions itself;
// hardware KVM runs them natively. Either way the handlers must run once each.
func TestExceptionFallback(t *testing.T) {
	const (
		idtAt  = flatAddr + 0x1000
		idtrAt = flatAddr + 0x2000
		bpAt   = 0x100
		udAt   = 0x140
		port   = 0x510
	)
	var a kvmtest.Asm
	a.Lidt(idtrAt)
	a.Int3()
	a.MovDX(port).MovEAX(2).OutEAX()
	a.Ud2()
	a.MovDX(port).MovEAX(4).OutEAX()
	a.Exit(0)
	a.Pad(bpAt)
	a.MovDX(port).MovEAX(1).OutEAX().Iretq()
	a.Pad(udAt)
	// #UD is a fault: the saved RIP is the ud2 itself, so skip its 2 bytes.
	a.MovDX(port).MovEAX(3).OutEAX().AddQwordAtRSPImm8(2).Iretq()
	a.Pad(0x1000)
	idt := make([]byte, 256*16)
	copy(idt[3*16:], kvmtest.IDTGate64(flatAddr+bpAt, 0x10))
	copy(idt[6*16:], kvmtest.IDTGate64(flatAddr+udAt, 0x10))
	code := append(a.B, idt...)
	for len(code) < 0x2000 {
		code = append(code, 0)
	}
	idtr := make([]byte, 10)
	binary.LittleEndian.PutUint16(idtr, uint16(len(idt)-1))
	binary.LittleEndian.PutUint64(idtr[2:], idtAt)
	code = append(code, idtr...)

	m := newFlat(t, 1, code, nil)
	rec := &recorder{}
	if err := m.RegisterPIO(port, 4, rec); err != nil {
		t.Fatal(err)
	}
	ex := m.Run()
	if ex.Reason != ExitDebug {
		t.Fatalf("exit = %+v %v", ex, ex.Err)
	}
	got := rec.values()
	want := []uint32{1, 2, 3, 4}
	if len(got) != len(want) {
		t.Fatalf("handler trace = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("handler trace = %v, want %v", got, want)
		}
	}
	t.Logf("instructions completed by govisor after KVM emulation failures: %d", m.EmulatedInstructions())
}

func TestConfigErrors(t *testing.T) {
	kvmtest.Require(t)
	for _, c := range []Config{
		{CPUs: 0, MemoryMiB: 64},
		{CPUs: 65, MemoryMiB: 64},
		{CPUs: 1, MemoryMiB: 16},
		{CPUs: 1, MemoryMiB: 1 << 30},
		{CPUs: 1, MemoryMiB: 64}, // no kernel
		{CPUs: 1, MemoryMiB: 64, Kernel: []byte("this is not a kernel at all, just text")},
	} {
		if m, err := New(c); err == nil {
			m.Close()
			t.Errorf("New(%+v) succeeded", c)
		} else {
			t.Logf("%v", err)
		}
	}
}

// counterAddr is where countingGuest keeps its counter.
const counterAddr = 0x3000

// countingGuest increments the qword at counterAddr forever on every vCPU.
func countingGuest() []byte {
	var a kvmtest.Asm
	// The CPUID exits are for the TCG lab's sake (kvmtest.Asm SpinForever).
	a.SpinForever(func(*kvmtest.Asm) {}, func(a *kvmtest.Asm) { a.IncMem64(counterAddr) })
	return a.B
}

// counter reads countingGuest's counter.
func counter(m *Machine) uint64 {
	var b [8]byte
	m.Memory().ReadAt(b[:], counterAddr)
	return binary.LittleEndian.Uint64(b[:])
}

// waitCounter waits until the counter exceeds n.
func waitCounter(t *testing.T, m *Machine, n uint64) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); counter(m) <= n; {
		if time.Now().After(deadline) {
			t.Fatalf("the guest's counter stays at %d (waiting for more than %d)", counter(m), n)
		}
		time.Sleep(time.Millisecond)
	}
}
