package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/agent/service"
	"github.com/govisor/govisor/internal/cluster/admission"
	"github.com/govisor/govisor/internal/cluster/balance"
	"github.com/govisor/govisor/internal/cluster/drs"
	"github.com/govisor/govisor/internal/cluster/placement"
	"github.com/govisor/govisor/internal/cluster/view"
)

// snapshot is the cluster as placement sees it, without VM skip (which is
// about to be placed or started), and the pools.
func (a *Agent) snapshot(ctx context.Context, skip string) (*placement.State, []api.Pool, error) {
	snap, err := a.st.Snapshot(ctx)
	if err != nil {
		return nil, nil, err
	}
	hosts, pools := view.InMaintenance(snap.Hosts, snap.InMaintenance), snap.Pools
	var vms []view.VM
	for _, r := range snap.VMs {
		vms = append(vms, view.VM{Spec: r.Desired.Spec, Power: r.Desired.Power, Host: r.Desired.Host})
	}
	st, err := placement.New(view.Cluster(hosts, pools, vms, func(v view.VM) bool { return v.Spec.Name == skip }), placement.Config{})
	if err != nil {
		return nil, nil, fmt.Errorf("agent: cluster snapshot for placement: %w", err)
	}
	return st, pools, nil
}

// newVM is s as placement sees it when it is to run on host ("" for
// anywhere). Disks outside every pool must then be on the host that runs
// it, which placement cannot know: they are left out of its storage filter.
func newVM(s api.VMSpec, host string, pools []api.Pool) placement.VM {
	vm := view.PlacementVM(view.VM{Spec: s, Power: api.PowerRunning, Host: host}, pools)
	vm.Pools = knownPools(vm.Pools, pools)
	return vm
}

// placeNew picks the host of a new VM s: want is service.PlaceAuto (the
// host placement picks among the live hosts) or a host's name (checked by
// placement, so that a full or unsuitable host is refused with its
// reasons).
func (a *Agent) placeNew(ctx context.Context, s api.VMSpec, want string) (string, error) {
	st, pools, err := a.snapshot(ctx, s.Name)
	if err != nil {
		return "", err
	}
	vm := newVM(s, "", pools)
	if want == service.PlaceAuto {
		host, err := st.Choose(vm)
		if errors.Is(err, placement.ErrNoHost) {
			return "", fmt.Errorf("%w: %v", service.ErrNoHost, err)
		}
		return host, err
	}
	rej, err := st.Check(vm, want)
	if err != nil {
		return "", fmt.Errorf("%w: %v", service.ErrInvalid, err)
	}
	if rej != nil {
		return "", fmt.Errorf("%w: %s", service.ErrNoHost, rej)
	}
	return want, nil
}

// admit applies the cluster's HA admission control (ClusterSettings) to
// starting VM s on host: with policy refuse, a start that would leave too
// little capacity to restart the HA VMs of the largest host(s) elsewhere
// is refused with the reason; with warn it is logged and allowed.
func (a *Agent) admit(ctx context.Context, s api.VMSpec, host string) error {
	cs, err := a.st.Settings(ctx)
	if err != nil {
		return err
	}
	if cs.HAAdmission == "" || cs.HAAdmission == api.AdmissionOff {
		return nil
	}
	st, pools, err := a.snapshot(ctx, s.Name)
	if err != nil {
		return err
	}
	d, err := admission.Admit(st, newVM(s, host, pools), admission.Options{Policy: admission.Policy(cs.HAAdmission), HostFailures: cs.HostFailures})
	switch {
	case errors.Is(err, placement.ErrNoHost):
		return fmt.Errorf("%w: %v", service.ErrNoHost, err)
	case err != nil:
		return fmt.Errorf("%w: %v", service.ErrInvalid, err)
	case !d.Allowed:
		return fmt.Errorf("%w: HA admission control (policy refuse): %s", service.ErrNoHost, d.Reason)
	case d.Warning != "":
		a.log.Warn("HA admission control", "vm", s.Name, "host", host, "warning", d.Warning)
	}
	return nil
}

// knownPools keeps the names of real pools.
func knownPools(names []string, pools []api.Pool) []string {
	var out []string
	for _, n := range names {
		for _, p := range pools {
			if p.Name == n {
				out = append(out, n)
				break
			}
		}
	}
	return out
}

// Settings reads the cluster-wide settings.
func (a *Agent) Settings(ctx context.Context) (api.ClusterSettings, error) { return a.st.Settings(ctx) }

// PutSettings checks and replaces the cluster-wide settings.
func (a *Agent) PutSettings(ctx context.Context, cs api.ClusterSettings) (api.ClusterSettings, error) {
	switch cs.HAAdmission {
	case "", api.AdmissionOff, api.AdmissionWarn, api.AdmissionRefuse:
	default:
		return cs, fieldErr("haAdmission", fmt.Sprintf("%q: use off, warn or refuse", cs.HAAdmission))
	}
	if cs.HostFailures < 0 || cs.HostFailures > 16 {
		return cs, fieldErr("hostFailures", fmt.Sprintf("%d: give 0 (the default, 1) to 16", cs.HostFailures))
	}
	switch cs.Balance {
	case "", api.BalanceOff, api.BalanceManual, api.BalanceAutomatic:
	default:
		return cs, fieldErr("balance", fmt.Sprintf("%q: use off, manual or automatic", cs.Balance))
	}
	if !(cs.BalanceThreshold >= 0 && cs.BalanceThreshold <= 1) {
		return cs, fieldErr("balanceThreshold", fmt.Sprintf("%v: give a load difference from 0 (the default, 0.15) to 1", cs.BalanceThreshold))
	}
	return cs, a.st.PutSettings(ctx, cs)
}

// balancer is the cluster's load balancer as this agent runs it.
func (a *Agent) balancer() *drs.Balancer {
	return &drs.Balancer{St: a.st, Migrate: a.migrateFor, Log: a.log,
		Moved: func(m balance.Move) {
			a.migrations.WithLabelValues("balance").Inc()
			a.event(api.ClusterEvent{Kind: api.EventBalance, VM: m.VM, From: m.From, Host: m.To, Reason: m.Reason})
		},
		Planned: func(p balance.Plan) { a.imbalance.Set(p.Before) }}
}

// BalancePlan is the load balancer's plan for the cluster now.
func (a *Agent) BalancePlan(ctx context.Context) (api.BalancePlan, error) {
	p, err := a.balancer().Plan(ctx)
	if err != nil {
		return api.BalancePlan{}, fmt.Errorf("%w: %v", service.ErrInvalid, err)
	}
	return drs.ToAPI(p, nil), nil
}

// Balance plans and carries out the load balancer's migrations.
func (a *Agent) Balance(ctx context.Context) (api.BalancePlan, error) {
	b := a.balancer()
	p, err := b.Plan(ctx)
	if err != nil {
		return api.BalancePlan{}, fmt.Errorf("%w: %v", service.ErrInvalid, err)
	}
	return drs.ToAPI(p, b.Apply(ctx, p)), nil
}
