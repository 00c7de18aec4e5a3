package vm

import (
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

// TestWaitRunnablePendingIO: a runner whose last exit still awaits
// completion by KVM_RUN is sent to complete it instead of parking when a
// pause is requested; without anything pending it parks until Resume, and
// stopping wins over both.
func TestWaitRunnablePendingIO(t *testing.T) {
	m := &Machine{}
	m.cond = sync.NewCond(&m.mu)
	m.running = 1
	for _, pending := range []bool{false, true} {
		if got := m.waitRunnable(pending); got != runGuest {
			t.Fatalf("not paused, pending %v: %v, want runGuest", pending, got)
		}
	}

	m.pauseReq = true
	if got := m.waitRunnable(true); got != runComplete {
		t.Fatalf("pause with an operation pending: %v, want runComplete", got)
	}
	if m.parked != 0 {
		t.Fatalf("parked = %d before the pending operation was completed", m.parked)
	}

	done := make(chan runnable, 1)
	go func() { done <- m.waitRunnable(false) }()
	m.mu.Lock()
	for m.parked != 1 {
		m.cond.Wait()
	}
	m.mu.Unlock()
	select {
	case got := <-done:
		t.Fatalf("waitRunnable returned %v while paused", got)
	case <-time.After(10 * time.Millisecond):
	}
	m.Resume()
	if got := <-done; got != runGuest {
		t.Fatalf("after Resume: %v, want runGuest", got)
	}
	if m.parked != 0 {
		t.Fatalf("parked = %d after Resume", m.parked)
	}

	m.pauseReq, m.stopping = true, true
	if got := m.waitRunnable(true); got != runStop {
		t.Fatalf("stopping with an operation pending: %v, want runStop", got)
	}
}

// ioSequence numbers MMIO reads 0, 1, 2, ... and records port writes.
type ioSequence struct {
	mu   sync.Mutex
	next uint32
	outs []uint32
}

type seqMMIO struct{ s *ioSequence }

func (d seqMMIO) Read(_ uint64, b []byte) {
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	var v [4]byte
	binary.LittleEndian.PutUint32(v[:], d.s.next)
	d.s.next++
	copy(b, v[:])
}

func (seqMMIO) Write(uint64, []byte) {}

type seqPort struct{ s *ioSequence }

func (seqPort) Read(_ uint64, b []byte) { clear(b) }

func (d seqPort) Write(_ uint64, b []byte) {
	var v [4]byte
	copy(v[:], b)
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	d.s.outs = append(d.s.outs, binary.LittleEndian.Uint32(v[:]))
}

func (s *ioSequence) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.outs)
}

// TestSaveRestoreCompletesPendingIO pauses, saves and restores, again and
// again, a guest that does nothing but read a number from MMIO and write it
// to a port. Nearly every pause lands right after such an exit; unless the
// runner lets KVM finish the instruction before it parks, the saved RIP
// still points at it and the restored vCPU runs it again: a port write
// repeated, or an MMIO read lost (seen as "started\nsstarted" in
// TestSaveRestoreRunningGuest on kvm_amd).
func TestSaveRestoreCompletesPendingIO(t *testing.T) {
	kvmtest.Require(t)
	const mmioBase, port = 0xD0000000, 0x510
	var a kvmtest.Asm
	a.MovDX(port)
	loop := a.Len()
	// The load replaces RAX (a 32-bit result is zero-extended), so the
	// address is loaded again on every turn.
	a.MovRAX(mmioBase).LoadEAXFromRAX().OutEAX().JmpBack(loop)
	cfg := Config{CPUs: 1, MemoryMiB: 64, Flat: &Flat{Code: a.B, Addr: flatAddr}, DebugExit: true}
	seq := &ioSequence{}
	register := func(m *Machine) {
		t.Helper()
		if err := m.RegisterMMIO(mmioBase, 0x1000, seqMMIO{seq}); err != nil {
			t.Fatal(err)
		}
		if err := m.RegisterPIO(port, 4, seqPort{seq}); err != nil {
			t.Fatal(err)
		}
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	register(m)
	const rounds = 30
	for round := 0; ; round++ {
		if err := m.Start(); err != nil {
			m.Close()
			t.Fatal(err)
		}
		want := seq.count() + 100
		for deadline := time.Now().Add(30 * time.Second); seq.count() < want; time.Sleep(100 * time.Microsecond) {
			if time.Now().After(deadline) {
				m.Stop(Exit{Reason: ExitHost})
				m.Wait()
				m.Close()
				t.Fatalf("round %d: the guest made %d port writes, waiting for %d", round, seq.count(), want)
			}
		}
		if round == rounds {
			m.Stop(Exit{Reason: ExitHost})
			m.Wait()
			m.Close()
			break
		}
		if err := m.Pause(); err != nil {
			m.Close()
			t.Fatalf("round %d: %v", round, err)
		}
		st, err := m.SaveState()
		if err != nil {
			m.Close()
			t.Fatalf("round %d: %v", round, err)
		}
		mem := copyMemory(t, m.Memory())
		m.Stop(Exit{Reason: ExitHost})
		m.Wait()
		m.Close()
		if m, err = Restore(cfg, st, mem); err != nil {
			t.Fatalf("round %d: restore: %v", round, err)
		}
		register(m)
	}
	seq.mu.Lock()
	defer seq.mu.Unlock()
	for i, v := range seq.outs {
		if v != uint32(i) {
			lo := max(i-3, 0)
			t.Fatalf("port write %d is %d, want %d (writes %d..: %v): an instruction was run twice across a save and restore",
				i, v, i, lo, seq.outs[lo:min(i+4, len(seq.outs))])
		}
	}
	t.Logf("%d port writes over %d save/restore rounds", len(seq.outs), rounds)
}
