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
	mu     sync.Mutex
	state  string
	snaps  []string
	failOn string
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
	go Serve(ctx, sock, vm)
	c := NewClient(sock)
	var info Info
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; {
		if info, err = c.Info(); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil || info.State != "running" || info.CPUs != 2 {
		t.Fatalf("Info = %+v, %v", info, err)
	}
	if info, err = c.Pause(); err != nil || info.State != "paused" {
		t.Fatalf("Pause = %+v, %v", info, err)
	}
	if info, err = c.Resume(); err != nil || info.State != "running" {
		t.Fatalf("Resume = %+v, %v", info, err)
	}
	if _, err = c.Snapshot("/tmp/snap1"); err != nil || len(vm.snaps) != 1 || vm.snaps[0] != "/tmp/snap1" {
		t.Fatalf("Snapshot: %v %v", err, vm.snaps)
	}
	if _, err = c.Snapshot(""); err == nil || !strings.Contains(err.Error(), `"dir" is required`) {
		t.Fatalf("empty snapshot dir: %v", err)
	}
	if info, err = c.Shutdown(); err != nil || info.State != "shutting-down" {
		t.Fatalf("Shutdown = %+v, %v", info, err)
	}
	if info, err = c.SetBalloon(64); err != nil || info.State != "ballooned" {
		t.Fatalf("SetBalloon = %+v, %v", info, err)
	}
	if _, err = c.SetBalloon(4096); err == nil {
		t.Fatal("oversized balloon accepted")
	}
	if res, err := c.Migrate(MigrateRequest{To: "h:1"}); err != nil || res.Rounds != 2 {
		t.Fatalf("Migrate = %+v, %v", res, err)
	}
	if _, err := c.Migrate(MigrateRequest{To: "nowhere:1"}); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("failed migrate: %v", err)
	}
	if _, err := c.Migrate(MigrateRequest{}); err == nil {
		t.Fatal("migrate without a destination accepted")
	}
	vm.failOn = "paused"
	if _, err = c.Pause(); err == nil || !strings.Contains(err.Error(), "cannot paused") {
		t.Fatalf("failed pause: %v", err)
	}
}
