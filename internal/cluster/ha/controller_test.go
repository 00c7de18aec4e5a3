package ha

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/cluster/store"
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
	for _, v := range []VM{vm("a", "h1", true, "high", "512M"), vm("b", "h1", false, "", "512M")} {
		if err := st.CreateVM(ctx, store.Desired{Spec: v.Spec, Power: v.Power, Host: v.Host}); err != nil {
			t.Fatal(err)
		}
	}
	moved := make(chan Restart, 4)
	c := &Controller{St: st, Restarted: func(r Restart) { moved <- r }}
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
	if rb, err := st.GetVM(ctx, "b"); err != nil || rb.Desired.Host != "h1" {
		t.Errorf("the non-HA VM: %+v %v", rb.Desired, err)
	}
	select {
	case r := <-moved:
		t.Errorf("a second move: %+v", r)
	case <-time.After(time.Second):
	}
}
