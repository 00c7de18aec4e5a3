package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
)

// TestClaimAndMove: a host claims a start only on its current lease and
// the definition it read; the HA controller moves a VM only off a host
// whose record is gone, and then the old host's claim and status writes
// on the old definition fail, also once h1 is back with a new lease.
func TestClaimAndMove(t *testing.T) {
	s := openTemp(t, t.TempDir())
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := Desired{Spec: api.VMSpec{Name: "vm1", HA: true}, Power: api.PowerRunning, Host: "h1"}
	if err := s.CreateVM(ctx, d); err != nil {
		t.Fatal(err)
	}
	r, err := s.GetVM(ctx, "vm1")
	if err != nil {
		t.Fatal(err)
	}
	hctx, hcancel := context.WithCancel(ctx)
	hl, err := s.RegisterHost(hctx, api.Host{Name: "h1"}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	starting := api.VMStatus{State: api.StatePending, Host: "h1"}
	if err := s.ClaimStart(ctx, "vm1", r.SpecRev, hl, starting); err != nil {
		t.Fatalf("claim on a live lease: %v", err)
	}
	if err := s.ClaimStart(ctx, "vm1", r.SpecRev-1, hl, starting); !errors.Is(err, ErrConflict) {
		t.Errorf("claim on an old definition: %v, want ErrConflict", err)
	}
	moved := d
	moved.Host = "h2"
	st2 := api.VMStatus{State: api.StatePending, Host: "h2", ExitReason: "restarting: host h1 failed"}
	if err := s.MoveVM(ctx, moved, r.SpecRev, "h1", st2); !errors.Is(err, ErrConflict) {
		t.Fatalf("move off a live host: %v, want ErrConflict", err)
	}

	// h1's agent stops renewing (as a hung or cut-off host): once its
	// lease expires the move goes through, and h1 can no longer claim.
	hcancel()
	deadline := time.Now().Add(10 * time.Second)
	for {
		hs, err := s.Hosts(ctx)
		if err == nil && len(hs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("h1's record outlived its lease: %v %v", hs, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := s.ClaimStart(ctx, "vm1", r.SpecRev, hl, starting); !errors.Is(err, ErrHostLease) {
		t.Errorf("claim after the lease expired: %v, want ErrHostLease", err)
	}
	if err := s.MoveVM(ctx, moved, r.SpecRev, "h1", st2); err != nil {
		t.Fatalf("move off a dead host: %v", err)
	}
	if err := s.MoveVM(ctx, moved, r.SpecRev, "h1", st2); !errors.Is(err, ErrConflict) {
		t.Errorf("a second move on the same definition: %v, want ErrConflict", err)
	}
	if err := s.PutStatusIfSpec(ctx, "vm1", api.VMStatus{State: api.StateFailed, Host: "h1"}, r.SpecRev); !errors.Is(err, ErrConflict) {
		t.Errorf("the old host's status write after the move: %v, want ErrConflict", err)
	}
	r2, err := s.GetVM(ctx, "vm1")
	if err != nil {
		t.Fatal(err)
	}
	if r2.Desired.Host != "h2" || r2.Status == nil || r2.Status.Host != "h2" || r2.Status.State != api.StatePending {
		t.Errorf("after the move: %+v %+v", r2.Desired, r2.Status)
	}
	if err := s.PutStatusIfSpec(ctx, "vm1", api.VMStatus{State: api.StateRunning, Host: "h2"}, r2.SpecRev); err != nil {
		t.Errorf("the new host's status write: %v", err)
	}
	// h1 heals and registers again: its first reconcile may still act on
	// the definition it read before the move, and must not start the VM.
	hl2, err := s.RegisterHost(ctx, api.Host{Name: "h1"}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ClaimStart(ctx, "vm1", r.SpecRev, hl2, starting); !errors.Is(err, ErrConflict) {
		t.Errorf("a healed host's claim on the definition it read before the move: %v, want ErrConflict", err)
	}
}

// TestWatchHosts signals when a host registers.
func TestWatchHosts(t *testing.T) {
	s := openTemp(t, t.TempDir())
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := s.WatchHosts(ctx)
	time.Sleep(100 * time.Millisecond) // the watch is set up
	if _, err := s.RegisterHost(ctx, api.Host{Name: "h1"}, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no signal for a new host")
	}
}

// TestMaintenanceSetting: a host's maintenance flag and stuck list are
// kept per host, and leaving maintenance clears the list.
func TestMaintenanceSetting(t *testing.T) {
	s := openTemp(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	if err := s.SetMaintenance(ctx, "h1", true); err != nil {
		t.Fatal(err)
	}
	if err := s.SetStuck(ctx, "h1", []string{"a: pinned"}); err != nil {
		t.Fatal(err)
	}
	cs, err := s.HostConfigs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c := cs["h1"]; !c.Maintenance || c.MaintenanceSince.IsZero() || len(c.Stuck) != 1 || len(cs) != 1 {
		t.Errorf("after enter: %+v", cs)
	}
	if err := s.SetMaintenance(ctx, "h1", false); err != nil {
		t.Fatal(err)
	}
	if cs, _ = s.HostConfigs(ctx); cs["h1"].Maintenance || cs["h1"].Stuck != nil {
		t.Errorf("after exit: %+v", cs)
	}
}
