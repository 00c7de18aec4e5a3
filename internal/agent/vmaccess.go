package agent

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/store"
	"github.com/govisor/govisor/internal/node"
)

// vmAccess is what the services acting on this host's VMs share: the
// store, this host's node (the VMM processes) and where the VMs' files
// are. The Agent embeds it too: the migration code calls these helpers
// on the Agent.
type vmAccess struct {
	st       *store.Store
	node     *node.Node
	host     string // this host's name in etcd
	stateDir string // the agent's state directory (per-VM folders)
}

// localVM reads VM name and requires that it is defined on this host
// (else ErrNotHere).
func (v vmAccess) localVM(ctx context.Context, name string) (store.Record, error) {
	if err := checkName(name); err != nil {
		return store.Record{}, err
	}
	rec, err := v.st.GetVM(ctx, name)
	if err != nil {
		return rec, err
	}
	if rec.Desired.Host != v.host {
		return rec, fmt.Errorf("%w: %s runs on %s; ask that host's agent", ErrNotHere, name, rec.Desired.Host)
	}
	return rec, nil
}

// liveProc returns the VMM process of rec if the VM is in one of states;
// otherwise an ErrBusy error that says why the action cannot be done.
func (v vmAccess) liveProc(rec store.Record, action string, states ...api.State) (*node.Proc, error) {
	name := rec.Desired.Spec.Name
	st := api.StatePending
	if rec.Status != nil {
		st = rec.Status.State
	}
	p := v.node.Proc(name)
	ok := false
	for _, s := range states {
		ok = ok || s == st
	}
	if !ok || p == nil || !p.Alive() || (rec.Status != nil && rec.Status.PID != p.PID) {
		want := make([]string, len(states))
		for i, s := range states {
			want[i] = string(s)
		}
		return nil, fmt.Errorf("%w: cannot %s VM %s: it is %s; it must be %s", ErrBusy, action, name, st, strings.Join(want, " or "))
	}
	if p.State().Migration != nil {
		return nil, fmt.Errorf("%w: cannot %s VM %s: it is being migrated", ErrBusy, action, name)
	}
	return p, nil
}

// waitFor polls the VM until the action took effect or wait passed.
func (v vmAccess) waitFor(ctx context.Context, name, action string, t0 time.Time, wait time.Duration) (store.Record, bool, error) {
	deadline := time.Now().Add(wait)
	for {
		rec, err := v.st.GetVM(ctx, name)
		if err != nil {
			return rec, false, err
		}
		if wait == 0 {
			return rec, false, nil
		}
		if v.reached(rec, action, t0) {
			return rec, true, nil
		}
		if time.Now().After(deadline) {
			return rec, false, nil
		}
		select {
		case <-ctx.Done():
			return rec, false, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (v vmAccess) reached(rec store.Record, action string, t0 time.Time) bool {
	st := rec.Status
	if st == nil {
		return false
	}
	ended := st.State == api.StateStopped || st.State == api.StateFailed
	switch action {
	case "start":
		// Running, or it already ran and ended after the request (a guest
		// that powers off at once).
		return st.State == api.StateRunning || (ended && !st.Since.Before(t0))
	case "restart", "reboot":
		return !st.Since.Before(t0) && (st.State == api.StateRunning || st.State == api.StateFailed)
	default:
		return ended && v.node.Settled(rec.Desired.Spec.Name)
	}
}

// current pokes the reconciler and returns the VM as it is now.
func (v vmAccess) current(ctx context.Context, name string) (api.VM, error) {
	v.poke()
	rec, err := v.st.GetVM(ctx, name)
	if err != nil {
		return api.VM{}, err
	}
	return toAPI(rec), nil
}

// vmDir is where a VM's logs live.
func (v vmAccess) vmDir(name string) string { return node.VMDir(v.stateDir, name) }

// poke asks the reconciler for a pass soon.
func (v vmAccess) poke() { v.node.Poke() }
