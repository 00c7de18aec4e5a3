// Package drs is the cluster's load balancer, as vSphere DRS: it plans
// live migrations from the hosts' measured loads (the pure planner,
// balance.Rebalance: the fewest moves that bring the ready hosts within
// the band, keeping every placement rule) and carries them out. The
// leader runs it every interval in automatic mode; `govisor cluster
// balance` shows (manual mode) or applies a plan on request.
package drs

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/balance"
	"github.com/govisor/govisor/internal/cluster/store"
	"github.com/govisor/govisor/internal/cluster/view"
)

// Every is how often automatic mode plans.
const Every = 30 * time.Second

// maxPerHost bounds the migrations a host takes part in within one plan.
const maxPerHost = 2

// Migrate live-migrates VM vm from host from to host to.
type Migrate func(ctx context.Context, vm, from, to string) error

// Balancer plans and applies load-balancing migrations.
type Balancer struct {
	St      *store.Store
	Migrate Migrate
	Log     *slog.Logger
	// Moved, if set, is called after each migration a plan carried out.
	Moved func(balance.Move)
	// Planned, if set, is called with each plan Run makes (every Every,
	// whatever the mode: the imbalance is worth watching in any).
	Planned func(balance.Plan)
	// Interval is how often Run plans (0: Every).
	Interval time.Duration
}

// Plan is the plan for the cluster as it is now, with the settings'
// threshold.
func (b *Balancer) Plan(ctx context.Context) (balance.Plan, error) {
	snap, err := b.St.Snapshot(ctx)
	if err != nil {
		return balance.Plan{}, err
	}
	cs, loads, pools := snap.Settings, snap.Loads, snap.Pools
	hosts := view.InMaintenance(snap.Hosts, snap.InMaintenance)
	var vms []view.VM
	status := map[string]*api.VMStatus{}
	migrating := map[string]bool{}
	for _, r := range snap.VMs {
		vms = append(vms, view.VM{Spec: r.Desired.Spec, Power: r.Desired.Power, Host: r.Desired.Host})
		status[r.Desired.Spec.Name] = r.Status
		// The record decides, not the status: see store.Record.Migration.
		migrating[r.Desired.Spec.Name] = r.Migration != nil
	}
	pc := view.Cluster(hosts, pools, vms, nil)
	c := balance.Cluster{Hosts: pc.Hosts, Pools: pc.Pools}
	for _, v := range pc.VMs {
		bv := balance.VM{VM: v, Mirror: view.LocalDisks(v, pools)}
		if l, ok := loads[v.Host].VMs[v.Name]; ok {
			bv.CPULoad, bv.MemoryUsedMiB = l.CPUBusy, l.MemoryMiB
		}
		if st := status[v.Name]; st == nil || st.State != api.StateRunning || st.Host != v.Host {
			bv.Pinned = "not running on its host now"
		} else if migrating[v.Name] {
			bv.Pinned = "being live-migrated"
		}
		c.VMs = append(c.VMs, bv)
	}
	return balance.Rebalance(c, balance.Options{Threshold: cs.BalanceThreshold, MaxPerHost: maxPerHost})
}

// Apply carries out a plan's migrations, those of one host one after
// another and different hosts' at once, and returns each one's error by VM
// (nil when all succeeded).
func (b *Balancer) Apply(ctx context.Context, p balance.Plan) map[string]error {
	var mu sync.Mutex
	errs := map[string]error{}
	bySource := map[string][]balance.Move{}
	for _, m := range p.Moves {
		bySource[m.From] = append(bySource[m.From], m)
	}
	var wg sync.WaitGroup
	for _, moves := range bySource {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, m := range moves {
				if b.Log != nil {
					b.Log.Info("balancing: live-migrating", "vm", m.VM, "from", m.From, "to", m.To, "reason", m.Reason)
				}
				err := b.Migrate(ctx, m.VM, m.From, m.To)
				if err == nil && b.Moved != nil {
					b.Moved(m)
				}
				if err != nil {
					mu.Lock()
					errs[m.VM] = err
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if len(errs) == 0 {
		return nil
	}
	return errs
}

// Run plans and applies every Every while the cluster's balance setting is
// automatic, until ctx ends (the leadership was lost).
func (b *Balancer) Run(ctx context.Context) {
	every := b.Interval
	if every <= 0 {
		every = Every
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p, err := b.Plan(ctx)
		if err != nil {
			if b.Log != nil && !errors.Is(err, context.Canceled) {
				b.Log.Warn("balancing: plan", "err", err)
			}
			continue
		}
		if b.Planned != nil {
			b.Planned(p)
		}
		cs, err := b.St.Settings(ctx)
		if err != nil || cs.Balance != api.BalanceAutomatic {
			continue
		}
		if len(p.Moves) > 0 {
			for vm, err := range b.Apply(ctx, p) {
				if b.Log != nil {
					b.Log.Warn("balancing: migration failed", "vm", vm, "err", err)
				}
			}
		}
	}
}

// ToAPI is p as the API shows it, with each move's error from Apply.
func ToAPI(p balance.Plan, errs map[string]error) api.BalancePlan {
	out := api.BalancePlan{Threshold: p.Threshold, Before: p.Before, After: p.After, Balanced: p.Balanced, Why: p.Why}
	for _, m := range p.Moves {
		am := api.BalanceMove{VM: m.VM, From: m.From, To: m.To, Reason: m.Reason, Mirror: m.Mirror}
		if err := errs[m.VM]; err != nil {
			am.Error = err.Error()
		}
		out.Moves = append(out.Moves, am)
	}
	for _, l := range p.Loads {
		out.Loads = append(out.Loads, api.BalanceLoad{Host: l.Host, Before: l.Before, After: l.After})
	}
	return out
}
