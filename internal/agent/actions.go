package agent

import (
	"context"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/agent/service"
	"github.com/govisor/govisor/internal/cluster/store"
	"github.com/govisor/govisor/internal/node"
)

// maxWait bounds ?wait= on actions.
const maxWait = 10 * time.Minute

// Act changes a VM's power state: start, stop, force-stop, restart,
// reboot, pause or resume. It changes the desired state (and signals the
// VMM for force-stop, restart and reboot); with a wait it returns once the
// VM got there (reached) or the time is up, else at once. Pause and resume
// act on the VMM directly and are reached when they return.
func (vs *vmService) Act(ctx context.Context, req service.Action) (api.VM, bool, error) {
	name, action := req.Name, req.Action
	var power api.Power
	switch action {
	case "start", "restart", "reboot":
		power = api.PowerRunning
	case "stop", "force-stop":
		power = api.PowerStopped
	case "pause", "resume":
		v, err := vs.pauseResume(ctx, name, action)
		return v, true, err
	default:
		return api.VM{}, false, errf(store.ErrNotFound, "no such action %q: use start, stop, force-stop, restart, reboot, pause or resume", action)
	}
	var rebootProc *node.Proc
	if action == "reboot" {
		rec, err := vs.localVM(ctx, name)
		if err != nil {
			return api.VM{}, false, err
		}
		p, err := vs.liveProc(rec, action, api.StateRunning, api.StatePaused)
		if err != nil {
			return api.VM{}, false, err
		}
		rebootProc = p
	}
	wait, err := parseWait(req.Wait)
	if err != nil {
		return api.VM{}, false, err
	}
	t0 := time.Now().UTC()
	if action == "start" {
		rec, err := vs.st.GetVM(ctx, name)
		if err != nil {
			return api.VM{}, false, err
		}
		if rec.Desired.Power != api.PowerRunning {
			if err := vs.place.admit(ctx, rec.Desired.Spec, rec.Desired.Host); err != nil {
				return api.VM{}, false, err
			}
		}
	}
	if _, err := vs.st.UpdateVM(ctx, name, func(d *store.Desired) error { d.Power = power; return nil }); err != nil {
		return api.VM{}, false, err
	}
	p := vs.node.Proc(name)
	if action == "start" || action == "restart" {
		vs.node.ClearBackoff(name) // a user's start overrides the restart back-off
	}
	switch {
	case action == "force-stop" && p != nil:
		p.Kill()
	case action == "restart" && p != nil:
		p.RequestRestart()
		p.Stop()
	case action == "reboot" && p == rebootProc:
		// The reset button: no guest shutdown, a new VMM boots at once.
		p.RequestRestart()
		p.Kill()
	}
	vs.poke()
	rec, reached, err := vs.waitFor(ctx, name, action, t0, wait)
	if err != nil {
		return api.VM{}, false, err
	}
	return toAPI(rec), reached, nil
}
