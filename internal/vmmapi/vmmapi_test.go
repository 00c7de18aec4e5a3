package vmmapi

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type fakeVM struct {
	mu      sync.Mutex
	state   string
	snaps   []string
	failOn  string
	mig     MigrateProgress
	cancelc chan struct{} // closed by CancelMigrate while a migration waits
}

func (f *fakeVM) set(s string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failOn == s {
		return errors.New("cannot " + s)
	}
	f.state = s
	return nil
}
func (f *fakeVM) Pause() error    { return f.set("paused") }
func (f *fakeVM) Resume() error   { return f.set("running") }
func (f *fakeVM) Stop() error     { return f.set("stopped") }
func (f *fakeVM) Shutdown() error { return f.set("shutting-down") }
func (f *fakeVM) Migrate(req MigrateRequest) (MigrateResult, error) {
	if req.To == "nowhere:1" {
		return MigrateResult{}, errors.New("connection refused")
	}
	if req.To == "wait:1" {
		// Runs until cancelled, as a migration that does not converge.
		f.mu.Lock()
		f.mig = MigrateProgress{State: MigrateRunning, To: req.To, Round: 3, BytesSent: 4096}
		f.cancelc = make(chan struct{})
		c := f.cancelc
		f.mu.Unlock()
		<-c
		f.mu.Lock()
		f.mig.State, f.mig.Error = MigrateCancelled, "cancelled"
		f.mu.Unlock()
		return MigrateResult{}, errors.New("migration cancelled")
	}
	return MigrateResult{Rounds: 2, BytesSent: 100}, f.set("migrated")
}
func (f *fakeVM) SetBalloon(mib uint64) error {
	if mib > 1024 {
		return errors.New("balloon larger than the VM")
	}
	return f.set("ballooned")
}
func (f *fakeVM) Snapshot(dir string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.snaps = append(f.snaps, dir)
	return nil
}
func (f *fakeVM) MigrateProgress() MigrateProgress {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mig.State == "" {
		return MigrateProgress{State: MigrateIdle}
	}
	return f.mig
}
func (f *fakeVM) CancelMigrate() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mig.State != MigrateRunning || f.cancelc == nil {
		return errors.New("no migration is running")
	}
	close(f.cancelc)
	f.cancelc = nil
	return nil
}
func (f *fakeVM) Stats() Stats {
	return Stats{Exits: map[string]uint64{"IO": 5, "HLT": 1}, ExitsTotal: 6,
		Disks: []DiskStats{{Name: "vda", ReadOps: 2, ReadBytes: 1024}}, NICs: []NICStats{{Name: "tap0", TxPackets: 3}}}
}
func (f *fakeVM) Info() Info {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Info{State: f.state, CPUs: 2}
}

func TestAPI(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "vmm.sock")
	vm := &fakeVM{state: "running"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	go ServeListener(ctx, l, vm)
	c := NewClient(sock)
	var info Info
	for deadline := time.Now().Add(5 * time.Second); ; {
		if info, err = c.Info(t.Context()); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil || info.State != "running" || info.CPUs != 2 {
		t.Fatalf("Info = %+v, %v", info, err)
	}
	if info, err = c.Pause(t.Context()); err != nil || info.State != "paused" {
		t.Fatalf("Pause = %+v, %v", info, err)
	}
	if info, err = c.Resume(t.Context()); err != nil || info.State != "running" {
		t.Fatalf("Resume = %+v, %v", info, err)
	}
	if _, err = c.Snapshot(t.Context(), "/tmp/snap1"); err != nil || len(vm.snaps) != 1 || vm.snaps[0] != "/tmp/snap1" {
		t.Fatalf("Snapshot: %v %v", err, vm.snaps)
	}
	if _, err = c.Snapshot(t.Context(), ""); err == nil || !strings.Contains(err.Error(), `"dir" is required`) {
		t.Fatalf("empty snapshot dir: %v", err)
	}
	if info, err = c.Shutdown(t.Context()); err != nil || info.State != "shutting-down" {
		t.Fatalf("Shutdown = %+v, %v", info, err)
	}
	if info, err = c.SetBalloon(t.Context(), 64); err != nil || info.State != "ballooned" {
		t.Fatalf("SetBalloon = %+v, %v", info, err)
	}
	if _, err = c.SetBalloon(t.Context(), 4096); err == nil {
		t.Fatal("oversized balloon accepted")
	}
	if res, err := c.Migrate(t.Context(), MigrateRequest{To: "h:1"}); err != nil || res.Rounds != 2 {
		t.Fatalf("Migrate = %+v, %v", res, err)
	}
	if _, err := c.Migrate(t.Context(), MigrateRequest{To: "nowhere:1"}); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("failed migrate: %v", err)
	}
	if _, err := c.Migrate(t.Context(), MigrateRequest{}); err == nil {
		t.Fatal("migrate without a destination accepted")
	}
	vm.failOn = "paused"
	if _, err = c.Pause(t.Context()); err == nil || !strings.Contains(err.Error(), "cannot paused") {
		t.Fatalf("failed pause: %v", err)
	}
}

// TestMigrateProgressAndCancel checks that GET and DELETE /migrate answer
// while PUT /migrate runs, and GET /stats.
func TestMigrateProgressAndCancel(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "vmm.sock")
	vm := &fakeVM{state: "running"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	go ServeListener(ctx, l, vm)
	c := NewClient(sock)
	if p, err := c.MigrateProgress(t.Context()); err != nil || p.State != MigrateIdle {
		t.Fatalf("progress before any migration: %+v, %v", p, err)
	}
	if err := c.CancelMigrate(t.Context()); err == nil || !strings.Contains(err.Error(), "no migration is running") {
		t.Fatalf("cancel with nothing running: %v", err)
	}
	st, err := c.Stats(t.Context())
	if err != nil || st.Exits["IO"] != 5 || st.ExitsTotal != 6 || len(st.Disks) != 1 || st.Disks[0].ReadBytes != 1024 ||
		len(st.NICs) != 1 || st.NICs[0].TxPackets != 3 {
		t.Fatalf("Stats = %+v, %v", st, err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Migrate(t.Context(), MigrateRequest{To: "wait:1"})
		done <- err
	}()
	var p MigrateProgress
	for deadline := time.Now().Add(10 * time.Second); ; {
		if p, err = c.MigrateProgress(t.Context()); err == nil && p.State == MigrateRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("progress never running: %+v, %v", p, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if p.Round != 3 || p.BytesSent != 4096 || p.To != "wait:1" {
		t.Fatalf("running progress %+v", p)
	}
	if err := c.CancelMigrate(t.Context()); err != nil {
		t.Fatalf("CancelMigrate: %v", err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "cancelled") {
			t.Fatalf("Migrate after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Migrate did not return after CancelMigrate")
	}
	if p, err := c.MigrateProgress(t.Context()); err != nil || p.State != MigrateCancelled || p.Error == "" {
		t.Fatalf("progress after cancel: %+v, %v", p, err)
	}
}
