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

// localVM reads VM name and requires that it is defined on this host
// (else ErrNotHere).
func (a *Agent) localVM(ctx context.Context, name string) (store.Record, error) {
	if err := checkName(name); err != nil {
		return store.Record{}, err
	}
	rec, err := a.st.GetVM(ctx, name)
	if err != nil {
		return rec, err
	}
	if rec.Desired.Host != a.cfg.HostName {
		return rec, fmt.Errorf("%w: %s runs on %s; ask that host's agent", ErrNotHere, name, rec.Desired.Host)
	}
	return rec, nil
}

// liveProc returns the VMM process of rec if the VM is in one of states;
// otherwise an ErrBusy error that says why the action cannot be done.
func (a *Agent) liveProc(rec store.Record, action string, states ...api.State) (*node.Proc, error) {
	name := rec.Desired.Spec.Name
	st := api.StatePending
	if rec.Status != nil {
		st = rec.Status.State
	}
	p := a.node.Proc(name)
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

// pauseResume pauses or resumes the guest's vCPUs through the VMM API;
// the VMM stays.
func (a *Agent) pauseResume(ctx context.Context, name, action string) (api.VM, error) {
	rec, err := a.localVM(ctx, name)
	if err != nil {
		return api.VM{}, err
	}
	from, to := api.StateRunning, api.StatePaused
	if action == "resume" {
		from, to = api.StatePaused, api.StateRunning
	}
	p, err := a.liveProc(rec, action, from)
	if err != nil {
		return api.VM{}, err
	}
	call := p.VMM.Pause
	if to == api.StateRunning {
		call = p.VMM.Resume
	}
	if _, err := node.QuickCall(call); err != nil {
		return api.VM{}, fmt.Errorf("%w: %s %s: %v", ErrVMM, action, rec.Desired.Spec.Name, err)
	}
	p.Update(func(s *node.State) { s.Paused = to == api.StatePaused })
	st := *rec.Status
	st.State, st.Since = to, time.Now().UTC()
	// Only over the status seen: an exit recorded meanwhile wins.
	if err := a.st.ReplaceStatus(ctx, rec.Desired.Spec.Name, st, rec.StatusRev); err != nil {
		return api.VM{}, err
	}
	rec.Status = &st
	return toAPI(rec), nil
}

// shortCtx bounds work that must finish even if the request goes away.
func shortCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}
