package ha

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/store"
	"github.com/govisor/govisor/internal/disklease"
)

// TestControllerRestartsOnDeadHost: with a real (embedded) etcd, an HA VM
// stays on its host while the host's lease lives, moves to the other host
// once the lease expired, and a non-HA VM stays where it was.
func TestControllerRestartsOnDeadHost(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := store.Open(ctx, store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h1ctx, h1stop := context.WithCancel(ctx)
	defer h1stop()
	if _, err := st.RegisterHost(h1ctx, host("h1", 4, 4096), 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := st.RegisterHost(ctx, host("h2", 4, 4096), 2*time.Second); err != nil {
		t.Fatal(err)
	}
	// a's disk lease: a record its (dead) holder on h1 left, copied from a
	// live lease, so that nothing renews it.
	shared := t.TempDir()
	if err := st.CreatePool(ctx, api.Pool{Name: "nfs", Kind: "shared", Path: shared, Shared: true}); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(shared, "a.raw")
	live := filepath.Join(t.TempDir(), "live.raw")
	l, err := disklease.Acquire(ctx, live, disklease.Owner{Host: "h1", VM: "a"}, disklease.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := os.ReadFile(disklease.Path(live))
	l.Release(ctx)
	if err := os.WriteFile(disklease.Path(disk), rec, 0o600); err != nil {
		t.Fatal(err)
	}
	va := vm("a", "h1", true, "high", "512M")
	va.Spec.Disks = []api.DiskSpec{{Path: disk, Pool: "nfs", Volume: "a.raw"}}
	for _, v := range []VM{va, vm("b", "h1", false, "", "512M")} {
		if err := st.CreateVM(ctx, store.Desired{Spec: v.Spec, Power: v.Power, Host: v.Host}); err != nil {
			t.Fatal(err)
		}
	}
	moved := make(chan Restart, 4)
	obs := &disklease.Observer{}
	go ObserveLeases(ctx, st, obs)
	c := &Controller{St: st, Restarted: func(r Restart) { moved <- r }, Leases: obs}
	go c.Run(ctx)
	select {
	case r := <-moved:
		t.Fatalf("moved %+v while its host lives", r)
	case <-time.After(3 * time.Second):
	}
	t0 := time.Now()
	h1stop() // h1's agent stops renewing its lease
	select {
	case r := <-moved:
		if r != (Restart{VM: "a", From: "h1", To: "h2"}) {
			t.Fatalf("moved %+v", r)
		}
		t.Logf("moved %.1f s after h1 stopped renewing a 2 s lease", time.Since(t0).Seconds())
	case <-time.After(15 * time.Second):
		t.Fatal("the HA VM was not moved 15 s after its host's lease stopped")
	}
	ra, err := st.GetVM(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if ra.Desired.Host != "h2" || ra.Status == nil || ra.Status.Host != "h2" || !strings.Contains(ra.Status.ExitReason, "h1 failed") {
		t.Errorf("a after the move: %+v %+v", ra.Desired, ra.Status)
	}
	// The controller watched a's silent lease all along: the restart says
	// for how long, so the new VMM need not watch it for its whole expiry.
	if seen, ok := ra.Desired.LeaseSeen[disk]; !ok || seen.ForMS < 3000 {
		t.Errorf("a's restart passed on %+v of its disk lease, want it seen unchanged for > 3 s", ra.Desired.LeaseSeen)
	}
	if rb, err := st.GetVM(ctx, "b"); err != nil || rb.Desired.Host != "h1" {
		t.Errorf("the non-HA VM: %+v %v", rb.Desired, err)
	}
	select {
	case r := <-moved:
		t.Errorf("a second move: %+v", r)
	case <-time.After(time.Second):
	}
}
