package drs

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/balance"
	"github.com/govisor/govisor/internal/cluster/store"
)

// TestPlanAndApply: with a real (embedded) etcd, three hosts and every
// busy VM on the first (its published load says so), the plan moves some
// to the others until the loads are within the band, never an anti-affine
// pair together, and Apply carries the moves out.
func TestPlanAndApply(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := skewedCluster(t, ctx)
	var mu sync.Mutex
	moved := map[string]string{}
	b := &Balancer{St: st, Migrate: func(ctx context.Context, vm, from, to string) error {
		mu.Lock()
		moved[vm] = to
		mu.Unlock()
		_, err := st.UpdateVM(ctx, vm, func(d *store.Desired) error { d.Host = to; return nil })
		return err
	}}
	p, err := b.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Moves) == 0 || p.After >= p.Before {
		t.Fatalf("plan %+v: want moves that narrow the imbalance", p)
	}
	t.Logf("imbalance %.2f -> %.2f with %d moves", p.Before, p.After, len(p.Moves))
	if errs := b.Apply(ctx, p); errs != nil {
		t.Fatal(errs)
	}
	if len(moved) != len(p.Moves) {
		t.Errorf("applied %v for %d moves", moved, len(p.Moves))
	}
	on := map[string]string{}
	recs, _, _ := st.ListVMs(ctx)
	for _, r := range recs {
		on[r.Desired.Spec.Name] = r.Desired.Host
	}
	if on["busy0"] == on["busy1"] {
		t.Errorf("the anti-affine pair ended up together on %s", on["busy0"])
	}
	for vm, to := range moved {
		if on[vm] != to || to == "h1" {
			t.Errorf("%s moved to %s, runs on %s", vm, to, on[vm])
		}
	}
	api := ToAPI(p, nil)
	if len(api.Moves) != len(p.Moves) || api.Before != p.Before {
		t.Errorf("API form %+v", api)
	}
}

// skewedCluster is three hosts in a real (embedded) etcd with every busy
// VM on h1, as its published load says; two of them anti-affine.
func skewedCluster(t *testing.T, ctx context.Context) *store.Store {
	t.Helper()
	st, err := store.Open(ctx, store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	leases := map[string]*store.HostLease{}
	for _, h := range []string{"h1", "h2", "h3"} {
		if leases[h], err = st.RegisterHost(ctx, api.Host{Name: h, CPUs: 4, MemoryMiB: 8192}, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	load := api.HostLoad{Time: time.Now(), CPUBusy: 4, MemoryUsedMiB: 3000, VMs: map[string]api.VMLoad{}}
	for i := range 6 {
		name := fmt.Sprintf("busy%d", i)
		s := api.VMSpec{Name: name, CPUs: 1, Memory: "256M"}
		if i < 2 {
			s.AntiAffinity = []string{"pair"}
		}
		if err := st.CreateVM(ctx, store.Desired{Spec: s, Power: api.PowerRunning, Host: "h1"}); err != nil {
			t.Fatal(err)
		}
		if err := st.PutStatus(ctx, name, api.VMStatus{State: api.StateRunning, Host: "h1"}); err != nil {
			t.Fatal(err)
		}
		load.VMs[name] = api.VMLoad{CPUBusy: 0.6, MemoryMiB: 200}
	}
	if err := st.PutLoad(ctx, leases["h1"], load); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"h2", "h3"} {
		if err := st.PutLoad(ctx, leases[h], api.HostLoad{Time: time.Now(), CPUBusy: 0.1, MemoryUsedMiB: 500}); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// TestRunPlansInEveryMode: Run plans every interval whatever the mode (the
// imbalance is reported), and migrates only in automatic mode.
func TestRunPlansInEveryMode(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := skewedCluster(t, ctx)
	var mu sync.Mutex
	planned, migrated := 0, 0
	b := &Balancer{St: st, Interval: 20 * time.Millisecond,
		Planned: func(balance.Plan) { mu.Lock(); planned++; mu.Unlock() },
		Migrate: func(ctx context.Context, vm, from, to string) error {
			mu.Lock()
			migrated++
			mu.Unlock()
			_, err := st.UpdateVM(ctx, vm, func(d *store.Desired) error { d.Host = to; return nil })
			return err
		}}
	count := func() (int, int) { mu.Lock(); defer mu.Unlock(); return planned, migrated }
	go b.Run(ctx)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if p, _ := count(); p >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not plan in manual mode")
		}
	}
	if _, m := count(); m != 0 {
		t.Fatalf("Run migrated %d VMs with balancing off", m)
	}
	if err := st.PutSettings(ctx, api.ClusterSettings{Balance: api.BalanceAutomatic}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, m := count(); m > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run migrated nothing in automatic mode")
		}
	}
}
