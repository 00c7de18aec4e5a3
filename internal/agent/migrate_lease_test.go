package agent

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/disklease"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

// TestMigrateHandsOverDiskLeases: an HA VM's VMM holds the lease of the
// disk its guest writes (one path both hosts reach: shared storage); a
// live migration hands the lease to the destination's VMM at the handover,
// which renews it from then on, and a stop releases it.
func TestMigrateHandsOverDiskLeases(t *testing.T) {
	kvmtest.Require(t)
	ctx := context.Background()
	dirA, dirB, dirC, shared := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	ta, tb, _ := threeHosts(t, dirA, dirB, dirC)
	if _, err := ta.cli.CreatePool(ctx, api.Pool{Name: "nfs", Kind: "shared", Path: shared}); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(shared, "data.raw")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	s := spec("leased", writeGuest(t, dirA, "idle.elf", idleGuest("UP\n")), api.RestartOnFailure)
	s.HA, s.StopTimeout = true, "0s"
	s.Disks = []api.DiskSpec{{Path: img, Format: "raw"}}
	if _, err := ta.cli.CreateVM(ctx, s, true); err != nil {
		t.Fatal(err)
	}
	waitVM(t, ta.cli, "leased", "running", func(v api.VM) bool { return v.Status.State == api.StateRunning })
	waitVMMAPI(t, ta, "leased")
	held := func(host string) disklease.Record {
		t.Helper()
		var r disklease.Record
		var err error
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			r, err = disklease.Inspect(img)
			if err == nil && r.Owner == (disklease.Owner{Host: host, VM: "leased"}) && !r.Released {
				return r
			}
			if time.Now().After(deadline) {
				t.Fatalf("the disk lease is %+v (%v), want held by %s", r, err, host)
			}
		}
	}
	held("testhost")

	got, err := ta.cli.Migrate(ctx, "leased", api.MigrateRequest{Host: "hostb"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Host != "hostb" || got.Status.State != api.StateRunning {
		t.Fatalf("after the migration: host %s, status %+v", got.Host, got.Status)
	}
	r := held("hostb")
	// The destination renews it (a lease nobody renews is dead to others).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		now := held("hostb")
		if now.Gen > r.Gen {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the destination does not renew the lease: %+v", now)
		}
	}

	if _, err := tb.cli.Action(ctx, "leased", "stop", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if r, err := disklease.Inspect(img); err != nil || !r.Released {
		t.Errorf("after a stop the lease is %+v (%v), want released", r, err)
	}
}
