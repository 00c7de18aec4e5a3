package drs

import (
	"context"
	"fmt"
	"testing"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/store"
)

// TestPlanPinsOnlyLiveMigrations: a VM whose migration record is live is
// never in a plan; one whose record ended is, even when its status still
// says it is being migrated (that status's last write was lost).
func TestPlanPinsOnlyLiveMigrations(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := skewedCluster(t, ctx)
	stale := api.VMStatus{State: api.StateRunning, Host: "h1", Migration: &api.MigrationStatus{State: api.MigrationRunning, To: "h2"}}
	live := map[string]bool{}
	for i := range 6 {
		name := fmt.Sprintf("busy%d", i)
		if err := st.PutStatus(ctx, name, stale); err != nil {
			t.Fatal(err)
		}
		m, err := st.CreateMigration(ctx, store.Migration{VM: name, Source: "h1", Destination: "h2", CreatedBy: "test"})
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			live[name] = true
			continue
		}
		m.Phase, m.Error = store.MigrationFailed, "the destination went away"
		if _, err := st.UpdateMigration(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	b := &Balancer{St: st}
	p, err := b.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Moves) == 0 {
		t.Fatalf("plan %+v: want the VMs whose migrations ended moved", p)
	}
	for _, m := range p.Moves {
		if live[m.VM] {
			t.Errorf("plan moves %s, whose migration record is live", m.VM)
		}
	}
}
