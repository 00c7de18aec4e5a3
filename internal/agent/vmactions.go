package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/store"
)

// ErrVMM is the sentinel of a VMM that refused or failed a request (502).
var ErrVMM = errors.New("agent: the VMM failed the request")

// localVM reads the VM of the request and requires that it is defined on
// this host; it answers the error itself when not.
func (a *Agent) localVM(w http.ResponseWriter, r *http.Request) (store.Record, bool) {
	name := r.PathValue("name")
	if !validName(w, name) {
		return store.Record{}, false
	}
	rec, err := a.st.GetVM(r.Context(), name)
	if err != nil {
		httpError(w, err)
		return rec, false
	}
	if rec.Desired.Host != a.cfg.HostName {
		httpError(w, fmt.Errorf("%w: %s runs on %s; ask that host's agent", ErrNotHere, name, rec.Desired.Host))
		return rec, false
	}
	return rec, true
}

// liveProc returns the VMM process of rec if the VM is in one of states;
// otherwise an ErrBusy error that says why the action cannot be done.
func (a *Agent) liveProc(rec store.Record, action string, states ...api.State) (*proc, error) {
	name := rec.Desired.Spec.Name
	st := api.StatePending
	if rec.Status != nil {
		st = rec.Status.State
	}
	a.mu.Lock()
	p := a.procs[name]
	a.mu.Unlock()
	ok := false
	for _, s := range states {
		ok = ok || s == st
	}
	if !ok || p == nil || !p.alive() || (rec.Status != nil && rec.Status.PID != p.pid) {
		want := make([]string, len(states))
		for i, s := range states {
			want[i] = string(s)
		}
		return nil, fmt.Errorf("%w: cannot %s VM %s: it is %s; it must be %s", ErrBusy, action, name, st, strings.Join(want, " or "))
	}
	if p.state().migration != nil {
		return nil, fmt.Errorf("%w: cannot %s VM %s: it is being migrated", ErrBusy, action, name)
	}
	return p, nil
}

// handlePauseResume serves POST /v1/vms/{name}/pause and .../resume: the
// guest's vCPUs stop (or carry on) through the VMM API; the VMM stays.
func (a *Agent) handlePauseResume(w http.ResponseWriter, r *http.Request, action string) {
	rec, ok := a.localVM(w, r)
	if !ok {
		return
	}
	from, to := api.StateRunning, api.StatePaused
	if action == "resume" {
		from, to = api.StatePaused, api.StateRunning
	}
	p, err := a.liveProc(rec, action, from)
	if err != nil {
		httpError(w, err)
		return
	}
	call := p.vmm.Pause
	if to == api.StateRunning {
		call = p.vmm.Resume
	}
	if _, err := quickCall(call); err != nil {
		httpError(w, fmt.Errorf("%w: %s %s: %v", ErrVMM, action, rec.Desired.Spec.Name, err))
		return
	}
	p.update(func(s *procState) { s.paused = to == api.StatePaused })
	st := *rec.Status
	st.State, st.Since = to, time.Now().UTC()
	// Only over the status seen: an exit recorded meanwhile wins.
	if err := a.st.ReplaceStatus(r.Context(), rec.Desired.Spec.Name, st, rec.StatusRev); err != nil {
		httpError(w, err)
		return
	}
	rec.Status = &st
	writeJSON(w, http.StatusOK, toAPI(rec))
}

// shortCtx bounds work that must finish even if the request goes away.
func shortCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}
