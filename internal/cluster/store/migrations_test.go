package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
)

// runningVM defines VM name running on host.
func runningVM(t *testing.T, s *Store, name, host string) {
	t.Helper()
	ctx := context.Background()
	if err := s.CreateVM(ctx, Desired{Spec: api.VMSpec{Name: name, Kernel: "/k"}, Power: api.PowerRunning, Host: host}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutStatus(ctx, name, api.VMStatus{State: api.StateRunning, Host: host, PID: 7}); err != nil {
		t.Fatal(err)
	}
}

// TestMigrationRecord walks a migration through its phases: created once,
// refused twice, guarded by revision, finished with the VM's host flipped
// in the same transaction, and seen by the hosts' watches.
func TestMigrationRecord(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t, t.TempDir())
	defer s.Close()
	runningVM(t, s, "vm1", "h1")
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	dest := s.WatchMigrations(wctx, "h2", 0)
	other := s.WatchMigrations(wctx, "h3", 0)

	if _, err := s.GetMigration(ctx, "vm1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("migration before any: %v, want ErrNotFound", err)
	}
	if _, err := s.CreateMigration(ctx, Migration{VM: "vm1", Source: "h3", Destination: "h2"}); !errors.Is(err, ErrNotOnSource) {
		t.Fatalf("from the wrong host: %v, want ErrNotOnSource", err)
	}
	if _, err := s.CreateMigration(ctx, Migration{VM: "nope", Source: "h1", Destination: "h2"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("of a missing VM: %v, want ErrNotFound", err)
	}
	if _, err := s.CreateMigration(ctx, Migration{VM: "vm1", Source: "h1", Destination: "h1"}); err == nil {
		t.Fatal("a migration to its own host was accepted")
	}
	bw := true
	m, err := s.CreateMigration(ctx, Migration{VM: "vm1", Source: "h1", Destination: "h2", CreatedBy: "test",
		Options: MigrationOptions{Bandwidth: 1 << 20, MirrorDisks: &bw}})
	if err != nil {
		t.Fatal(err)
	}
	if m.Phase != MigrationRequested || m.Rev == 0 || m.Created.IsZero() {
		t.Fatalf("created %+v", m)
	}
	if _, err := s.CreateMigration(ctx, Migration{VM: "vm1", Source: "h1", Destination: "h3"}); !errors.Is(err, ErrMigrating) {
		t.Fatalf("second migration: %v, want ErrMigrating", err)
	}
	got, err := s.GetMigration(ctx, "vm1")
	if err != nil || got.Rev != m.Rev || got.CreatedBy != "test" || got.Options.MirrorDisks == nil || !*got.Options.MirrorDisks || got.Options.Bandwidth != 1<<20 {
		t.Fatalf("read back %+v, %v", got, err)
	}
	stale := m
	m.Phase, m.Addr, m.Disks = MigrationRunning, "10.0.0.2:4000", []string{"/d/vda.qcow2"}
	if m, err = s.UpdateMigration(ctx, m); err != nil {
		t.Fatal(err)
	}
	stale.Phase = MigrationFailed
	if _, err := s.UpdateMigration(ctx, stale); !errors.Is(err, ErrConflict) {
		t.Fatalf("update over an old revision: %v, want ErrConflict", err)
	}
	m.Result = &MigrationResult{Rounds: 2, BytesSent: 100}
	m, err = s.FinishMigration(ctx, m, func(d *Desired) { d.Spec.Kernel = "/k2" })
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.GetVM(ctx, "vm1")
	if err != nil || r.Desired.Host != "h2" || r.Desired.Spec.Kernel != "/k2" {
		t.Fatalf("after finishing: %+v, %v", r, err)
	}
	if got, _ := s.GetMigration(ctx, "vm1"); got.Phase != MigrationDone || got.Result == nil || got.Result.BytesSent != 100 {
		t.Fatalf("finished record %+v", got)
	}
	m.Phase = MigrationFailed
	if _, err := s.UpdateMigration(ctx, m); !errors.Is(err, ErrConflict) {
		t.Fatalf("leaving a final phase: %v, want ErrConflict", err)
	}

	// The destination saw every phase, in order; an unrelated host none.
	var phases []MigrationPhase
	for len(phases) < 3 {
		select {
		case m := <-dest:
			phases = append(phases, m.Phase)
		case <-time.After(10 * time.Second):
			t.Fatalf("watch saw %v", phases)
		}
	}
	if phases[0] != MigrationRequested || phases[1] != MigrationRunning || phases[2] != MigrationDone {
		t.Fatalf("watch saw %v", phases)
	}
	select {
	case m := <-other:
		t.Fatalf("host h3 saw %+v", m)
	default:
	}

	// Ended: the VM, now on h2, may move again; its status must say it
	// runs there first.
	if _, err := s.CreateMigration(ctx, Migration{VM: "vm1", Source: "h2", Destination: "h1"}); !errors.Is(err, ErrNotOnSource) {
		t.Fatalf("before h2 reports the VM: %v, want ErrNotOnSource", err)
	}
	if err := s.PutStatus(ctx, "vm1", api.VMStatus{State: api.StateRunning, Host: "h2", PID: 8}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateMigration(ctx, Migration{VM: "vm1", Source: "h2", Destination: "h1"}); err != nil {
		t.Fatal(err)
	}
	ms, _, err := s.ListMigrations(ctx)
	if err != nil || len(ms) != 1 || ms[0].Source != "h2" || ms[0].Phase != MigrationRequested {
		t.Fatalf("list: %+v, %v", ms, err)
	}
	// Deleting the VM deletes its migration.
	if err := s.DeleteVM(ctx, "vm1", func(Record) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetMigration(ctx, "vm1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("migration of a deleted VM: %v", err)
	}
}

// TestMigrationFinishRefusedWhenMoved: the host flip of a finishing
// migration does not happen over a VM that someone else moved.
func TestMigrationFinishRefusedWhenMoved(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t, t.TempDir())
	defer s.Close()
	runningVM(t, s, "vm2", "h1")
	m, err := s.CreateMigration(ctx, Migration{VM: "vm2", Source: "h1", Destination: "h2"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateVM(ctx, "vm2", func(d *Desired) error { d.Host = "h9"; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FinishMigration(ctx, m, nil); !errors.Is(err, ErrNotOnSource) {
		t.Fatalf("finish after a move: %v, want ErrNotOnSource", err)
	}
	if got, _ := s.GetMigration(ctx, "vm2"); got.Phase != MigrationRequested {
		t.Fatalf("record after a refused finish: %+v", got)
	}
	// Concurrent creations: exactly one wins.
	m.Phase = MigrationFailed
	if _, err := s.UpdateMigration(ctx, m); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateVM(ctx, "vm2", func(d *Desired) error { d.Host = "h1"; return nil }); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	for _, to := range []string{"h2", "h3", "h4", "h5"} {
		go func() {
			_, err := s.CreateMigration(ctx, Migration{VM: "vm2", Source: "h1", Destination: to})
			errs <- err
		}()
	}
	won := 0
	for range 4 {
		err := <-errs
		switch {
		case err == nil:
			won++
		case errors.Is(err, ErrMigrating), errors.Is(err, ErrConflict):
		default:
			t.Errorf("concurrent create: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d concurrent migrations of one VM were recorded", won)
	}
}
