package maintenance

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/store"
)

// TestEvacuation: with a real (embedded) etcd and a migration that moves
// the VM's host in the store, entering maintenance empties the host two
// migrations at a time, over the other hosts; a VM whose rules keep it
// there and one whose migration fails are recorded as stuck with the
// reason; a host not in maintenance is left alone.
func TestEvacuation(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := store.Open(ctx, store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, h := range []api.Host{
		{Name: "h1", CPUs: 8, MemoryMiB: 8192, Labels: map[string]string{"zone": "x"}},
		{Name: "h2", CPUs: 8, MemoryMiB: 8192}, {Name: "h3", CPUs: 8, MemoryMiB: 8192},
	} {
		if _, err := st.RegisterHost(ctx, h, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	vm := func(name, host string, rules ...string) {
		s := api.VMSpec{Name: name, CPUs: 1, Memory: "512M", HostRules: rules}
		if err := st.CreateVM(ctx, store.Desired{Spec: s, Power: api.PowerRunning, Host: host}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"a", "b", "c", "broken"} {
		vm(n, "h1")
	}
	vm("zoned", "h1", "must zone=x")
	vm("other", "h2")

	var mu sync.Mutex
	running, most := 0, 0
	release := make(chan struct{})
	migrate := func(ctx context.Context, name, from, to string) error {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		defer func() { mu.Lock(); running--; mu.Unlock() }()
		<-release
		if name == "broken" {
			return errors.New("the destination refused")
		}
		_, err := st.UpdateVM(ctx, name, func(d *store.Desired) error {
			if d.Host != from {
				t.Errorf("%s migrated from %s but runs on %s", name, from, d.Host)
			}
			d.Host = to
			return nil
		})
		return err
	}
	c := &Controller{St: st, Migrate: migrate, MaxPerHost: 2}
	go c.Run(ctx)
	time.Sleep(3 * time.Second) // no host in maintenance: nothing moves
	mu.Lock()
	if running != 0 {
		t.Fatalf("%d migrations without maintenance", running)
	}
	mu.Unlock()
	if err := st.SetMaintenance(ctx, "h1", true); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	close(release)

	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		recs, _, err := st.ListVMs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		on := map[string]string{}
		for _, r := range recs {
			on[r.Desired.Spec.Name] = r.Desired.Host
		}
		confs, _ := st.HostConfigs(ctx)
		stuck := strings.Join(confs["h1"].Stuck, "\n")
		left := on["a"] != "h1" && on["b"] != "h1" && on["c"] != "h1"
		if left && strings.Contains(stuck, "zoned: ") && strings.Contains(stuck, "zone=x") &&
			strings.Contains(stuck, "broken: migration to") && strings.Contains(stuck, "refused") {
			if on["zoned"] != "h1" || on["broken"] != "h1" || on["other"] != "h2" {
				t.Errorf("hosts after the evacuation: %v", on)
			}
			if confs["h2"].Maintenance || len(confs["h2"].Stuck) > 0 {
				t.Errorf("h2's settings changed: %+v", confs["h2"])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30 s into the evacuation: VMs on %v, stuck:\n%s", on, stuck)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if most != 2 {
		t.Errorf("at most %d migrations ran at once; want the limit, 2", most)
	}
}

// TestEvacuationLeavesMigratingVMs: a VM whose live migration is under
// way (started by a previous leader; its status and its record say so) is
// neither moved again nor listed as stuck; once the record ended, a status
// still saying "running" (its last write lost) no longer pins it.
func TestEvacuationLeavesMigratingVMs(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := store.Open(ctx, store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, h := range []string{"h1", "h2"} {
		if _, err := st.RegisterHost(ctx, api.Host{Name: h, CPUs: 8, MemoryMiB: 8192}, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.CreateVM(ctx, store.Desired{Spec: api.VMSpec{Name: "m", Memory: "256M"}, Power: api.PowerRunning, Host: "h1"}); err != nil {
		t.Fatal(err)
	}
	if err := st.PutStatus(ctx, "m", api.VMStatus{State: api.StateRunning, Host: "h1", Migration: &api.MigrationStatus{State: api.MigrationRunning, To: "h2"}}); err != nil {
		t.Fatal(err)
	}
	rec, err := st.CreateMigration(ctx, store.Migration{VM: "m", Source: "h1", Destination: "h2", CreatedBy: "an earlier leader"})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetMaintenance(ctx, "h1", true); err != nil {
		t.Fatal(err)
	}
	calls := 0
	c := &Controller{St: st, Migrate: func(context.Context, string, string, string) error { calls++; return nil }}
	if err := c.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	c.wg.Wait()
	confs, _ := st.HostConfigs(ctx)
	if calls != 0 || len(confs["h1"].Stuck) != 0 {
		t.Errorf("%d migrations asked, stuck %v: want none of either", calls, confs["h1"].Stuck)
	}
	rec.Phase, rec.Error = store.MigrationFailed, "the destination's agent did not answer"
	if _, err := st.UpdateMigration(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := c.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	c.wg.Wait()
	if calls != 1 {
		t.Errorf("%d migrations asked after the record failed (its status still says running): want 1", calls)
	}
}
