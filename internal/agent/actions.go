package agent

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/store"
)

// maxWait bounds ?wait= on actions.
const maxWait = 10 * time.Minute

// handleAction serves POST /v1/vms/{name}/start|stop|force-stop|restart|
// reboot (and hands pause and resume to handlePauseResume). It
// changes the desired state (and signals the VMM for force-stop and
// restart); with ?wait=DURATION it answers once the VM got there (200) or
// the time is up (202), else at once (202).
func (a *Agent) handleAction(w http.ResponseWriter, r *http.Request) {
	name, action := r.PathValue("name"), r.PathValue("action")
	var power api.Power
	switch action {
	case "start", "restart", "reboot":
		power = api.PowerRunning
	case "stop", "force-stop":
		power = api.PowerStopped
	case "pause", "resume":
		a.handlePauseResume(w, r, action)
		return
	default:
		writeJSON(w, http.StatusNotFound, api.Error{Message: fmt.Sprintf("no such action %q: use start, stop, force-stop, restart, reboot, pause or resume", action)})
		return
	}
	var rebootProc *proc
	if action == "reboot" {
		rec, ok := a.localVM(w, r)
		if !ok {
			return
		}
		p, err := a.liveProc(rec, action, api.StateRunning, api.StatePaused)
		if err != nil {
			httpError(w, err)
			return
		}
		rebootProc = p
	}
	var wait time.Duration
	if q := r.URL.Query().Get("wait"); q != "" {
		d, err := time.ParseDuration(q)
		if err != nil || d < 0 || d > maxWait {
			httpError(w, &FieldError{"wait", fmt.Sprintf("%q: give a duration up to %v, such as 30s", q, maxWait)})
			return
		}
		wait = d
	}
	t0 := time.Now().UTC()
	if _, err := a.st.UpdateVM(r.Context(), name, func(d *store.Desired) error { d.Power = power; return nil }); err != nil {
		httpError(w, err)
		return
	}
	a.mu.Lock()
	p := a.procs[name]
	if action == "start" || action == "restart" {
		// A user's start overrides the restart back-off.
		delete(a.notBefore, name)
		delete(a.backoff, name)
	}
	a.mu.Unlock()
	switch {
	case action == "force-stop" && p != nil:
		p.kill()
	case action == "restart" && p != nil:
		p.requestRestart()
		p.stop()
	case action == "reboot" && p == rebootProc:
		// The reset button: no guest shutdown, a new VMM boots at once.
		p.requestRestart()
		p.kill()
	}
	a.poke()
	rec, reached, err := a.waitFor(r.Context(), name, action, t0, wait)
	if err != nil {
		httpError(w, err)
		return
	}
	code := http.StatusAccepted
	if reached {
		code = http.StatusOK
	}
	writeJSON(w, code, toAPI(rec))
}

// waitFor polls the VM until the action took effect or wait passed.
func (a *Agent) waitFor(ctx context.Context, name, action string, t0 time.Time, wait time.Duration) (store.Record, bool, error) {
	deadline := time.Now().Add(wait)
	for {
		rec, err := a.st.GetVM(ctx, name)
		if err != nil {
			return rec, false, err
		}
		if wait == 0 {
			return rec, false, nil
		}
		if a.reached(rec, action, t0) {
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

func (a *Agent) reached(rec store.Record, action string, t0 time.Time) bool {
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
		a.mu.Lock()
		_, live := a.procs[rec.Desired.Spec.Name]
		_, backingOff := a.notBefore[rec.Desired.Spec.Name]
		a.mu.Unlock()
		return ended && !live && !backingOff
	}
}
