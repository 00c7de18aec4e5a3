package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/node"
)

// pauseResume pauses or resumes the guest's vCPUs through the VMM API;
// the VMM stays.
func (vs *vmService) pauseResume(ctx context.Context, name, action string) (api.VM, error) {
	rec, err := vs.localVM(ctx, name)
	if err != nil {
		return api.VM{}, err
	}
	from, to := api.StateRunning, api.StatePaused
	if action == "resume" {
		from, to = api.StatePaused, api.StateRunning
	}
	p, err := vs.liveProc(rec, action, from)
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
	if err := vs.st.ReplaceStatus(ctx, rec.Desired.Spec.Name, st, rec.StatusRev); err != nil {
		return api.VM{}, err
	}
	rec.Status = &st
	return toAPI(rec), nil
}

// shortCtx bounds work that must finish even if the request goes away.
func shortCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}
