package vm

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/guestmem"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/x86/cpuid"
)

// copyMemory gives a restored machine its own copy of guest RAM.
func copyMemory(t *testing.T, src *guestmem.Memory) *guestmem.Memory {
	t.Helper()
	var ranges []guestmem.Range
	for _, r := range src.Regions() {
		ranges = append(ranges, guestmem.Range{GPA: r.GPA, Size: uint64(len(r.Host))})
	}
	dst, err := guestmem.New(ranges)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range src.Regions() {
		copy(dst.Regions()[i].Host, r.Host)
	}
	return dst
}

// TestSaveRestoreRunningGuest snapshots two busy vCPUs and restores them
// into a new machine: the guest's counter carries on from where it stopped.
func TestSaveRestoreRunningGuest(t *testing.T) {
	var a kvmtest.Asm
	a.Print("started\n")
	a.B = append(a.B, countingGuest()...)
	var out syncBuffer
	m := newFlat(t, 2, a.B, &out)
	read := counter
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	waitCounter(t, m, 1000)
	// Both vCPUs must have printed before the snapshot: one may still be
	// printing while the other counts (every byte is an exit, and nested
	// vCPUs are scheduled unevenly).
	for deadline := time.Now().Add(30 * time.Second); len(out.String()) < 2*len("started\n"); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("console %q: both vCPUs should have printed", out.String())
		}
	}
	if _, err := m.SaveState(); err != ErrNotPaused {
		t.Fatalf("SaveState of a running machine: %v, want ErrNotPaused", err)
	}
	if err := m.Pause(); err != nil {
		t.Fatal(err)
	}
	st, err := m.SaveState()
	if err != nil {
		t.Fatal(err)
	}
	saved := read(m)
	mem := copyMemory(t, m.Memory())
	m.Stop(Exit{Reason: ExitHost})
	m.Wait()

	// The state survives an encoding round trip (snapshots store it so).
	st2, err := DecodeState(EncodeState(st))
	if err != nil {
		t.Fatal(err)
	}
	r, err := Restore(m.cfg, st2, mem)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := read(r); got != saved {
		t.Fatalf("restored counter %d, saved %d", got, saved)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { r.Stop(Exit{Reason: ExitHost}); r.Wait() }()
	waitCounter(t, r, saved+1000)
	// Each vCPU of the original printed once (possibly interleaved); the
	// restored vCPUs continue in the counting loop and print nothing.
	if len(out.String()) != 2*len("started\n") {
		t.Errorf("console %q: the restored guest must not start over", out.String())
	}
}

func TestRestoreRefusesMismatch(t *testing.T) {
	kvmtest.Require(t)
	var a kvmtest.Asm
	a.Exit(0)
	m := newFlat(t, 1, a.B, nil)
	st, err := m.SaveState()
	if err != nil {
		t.Fatal(err)
	}
	mem := copyMemory(t, m.Memory())
	defer mem.Close()
	bad := *st
	bad.Version = 99
	if _, err := Restore(m.cfg, &bad, mem); err == nil {
		t.Error("restored a state of another version")
	}
	cfg := m.cfg
	cfg.CPUs = 2
	if _, err := Restore(cfg, st, mem); err == nil {
		t.Error("restored a 1-vCPU state into 2 vCPUs")
	}
	cfg = m.cfg
	cfg.MemoryMiB = 128
	if _, err := Restore(cfg, st, mem); err == nil {
		t.Error("restored 64 MiB of RAM as 128")
	}
	// A guest started with a CPU feature this host's KVM lacks (it came
	// from another host) is refused, naming the feature.
	var lacking string
	for _, f := range cpuid.Features {
		if !slices.Contains(m.CPUFeatures(), f.Name) {
			lacking = f.Name
			break
		}
	}
	if lacking == "" {
		t.Fatalf("this host's KVM offers every feature of the table (%v): no feature to test a refusal with", m.CPUFeatures())
	}
	cfg = m.cfg
	cfg.CPUFeatures = append(slices.Clone(m.CPUFeatures()), lacking)
	// Each Restore gets its own RAM: a failed one unmaps what it was given.
	if _, err := Restore(cfg, st, copyMemory(t, m.Memory())); err == nil || !strings.Contains(err.Error(), "lacks "+lacking) {
		t.Errorf("restored a guest that has %s on a host without it: %v", lacking, err)
	}
	cfg.CPUFeatures = m.CPUFeatures()
	r, err := Restore(cfg, st, copyMemory(t, m.Memory()))
	if err != nil {
		t.Fatalf("restore with the guest's own CPU features: %v", err)
	}
	r.Close()
}

// TestSnapshotFileRoundTrip snapshots a running guest to a folder while it
// runs on, then restores the folder into a new machine (memory mapped
// copy-on-write) that carries on from the snapshot's counter value.
func TestSnapshotFileRoundTrip(t *testing.T) {
	m := newFlat(t, 1, countingGuest(), nil)
	read := counter
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	waitCounter(t, m, 1000)
	dir := t.TempDir() + "/snap"
	if err := m.Snapshot(dir); err != nil {
		t.Fatal(err)
	}
	// The original runs on after the snapshot.
	after := read(m)
	time.Sleep(20 * time.Millisecond)
	if read(m) == after {
		t.Fatal("the snapshotted machine did not resume")
	}
	m.Stop(Exit{Reason: ExitHost})
	m.Wait()
	if err := m.Snapshot(dir); err == nil {
		t.Fatal("snapshot over an existing folder succeeded")
	}

	start := time.Now()
	r, err := RestoreSnapshot(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	saved := read(r)
	if saved == 0 || saved > after {
		t.Fatalf("restored counter %d, the snapshot was taken before %d", saved, after)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("restored and started in %v", time.Since(start))
	defer func() { r.Stop(Exit{Reason: ExitHost}); r.Wait() }()
	waitCounter(t, r, saved+1000)
	if _, err := RestoreSnapshot(t.TempDir(), nil); err == nil {
		t.Fatal("restored an empty folder")
	}
}
