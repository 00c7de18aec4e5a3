package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/store"
	"github.com/govisor/govisor/internal/node"
)

// Restart back-off: doubles from minBackoff to maxBackoff for a VM that
// keeps failing, and resets once it has run for stableRun.
const (
	minBackoff = time.Second
	maxBackoff = 30 * time.Second
	stableRun  = time.Minute
)

// poke asks the reconciler for a pass soon.
func (a *Agent) poke() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// watchLoop pokes the reconciler on every change to a VM's definition.
func (a *Agent) watchLoop() {
	defer a.loopWG.Done()
	for a.ctx.Err() == nil {
		for ev := range a.st.Watch(a.ctx, 0) {
			if ev.Kind == "spec" {
				a.poke()
			}
		}
		select {
		case <-a.ctx.Done():
		case <-time.After(time.Second):
			a.poke() // changes during the gap are caught by a full pass
		}
	}
}

// reconcileLoop runs a full pass on every poke and every ResyncEvery.
func (a *Agent) reconcileLoop() {
	defer a.loopWG.Done()
	t := time.NewTicker(a.cfg.ResyncEvery)
	defer t.Stop()
	a.reconcile()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-a.kick:
		case <-t.C:
		}
		a.reconcile()
	}
}

// reconcile makes this host's VMM processes match the desired state.
func (a *Agent) reconcile() {
	ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
	defer cancel()
	a.reconcileNetworks(ctx)
	// The snapshot is read under a.mu: a proc leaves a.procs only after its
	// exit is recorded, so "no proc" here means etcd already knows why.
	a.mu.Lock()
	if a.stopping {
		a.mu.Unlock()
		return
	}
	recs, _, err := a.st.ListVMs(ctx)
	if err != nil {
		a.mu.Unlock()
		a.log.Warn("reconcile: list VMs", "err", err)
		return
	}
	var idle []store.Record     // stopped VMs whose status still says otherwise
	var stopping []store.Record // VMs being stopped now
	mine := map[string]bool{}
	for _, r := range recs {
		if r.Desired.Host != a.cfg.HostName {
			continue
		}
		name := r.Desired.Spec.Name
		if !nameRE.MatchString(name) {
			// Only a foreign writer to etcd can put it there; its name
			// would become a path under the state directory.
			a.log.Warn("ignoring VM with an invalid name", "vm", name)
			continue
		}
		mine[name] = true
		p := a.procs[name]
		switch {
		case r.Desired.Power == api.PowerRunning && p == nil:
			restarts := 0
			if r.Status != nil {
				restarts = r.Status.Restarts
			}
			if a.promoteIncoming(name, restarts) {
				continue
			}
			if nb := a.notBefore[name]; time.Now().Before(nb) {
				time.AfterFunc(time.Until(nb), a.poke)
				continue
			}
			a.startLocked(r)
		case r.Desired.Power == api.PowerStopped && p != nil:
			if !p.State().StopReq {
				a.log.Info("stopping VM", "vm", name, "pid", p.PID)
				p.Stop()
				if r.Status != nil && (r.Status.State == api.StateRunning || r.Status.State == api.StatePaused) && r.Status.PID == p.PID {
					stopping = append(stopping, r)
				}
			}
		case r.Desired.Power == api.PowerStopped && p == nil:
			_, backingOff := a.notBefore[name]
			if backingOff {
				// Stopped while waiting to restart: the restart is off.
				delete(a.notBefore, name)
				delete(a.backoff, name)
			}
			if backingOff || r.Status == nil || (r.Status.State != api.StateStopped && r.Status.State != api.StateFailed) {
				idle = append(idle, r)
			}
		}
	}
	for name, p := range a.procs {
		if !mine[name] {
			// Deleted or moved away while running (delete refuses that, but
			// an external etcd can be written by anyone): stop it.
			a.log.Warn("VM no longer defined for this host; stopping its VMM", "vm", name, "pid", p.PID)
			p.Stop()
		}
	}
	a.gcTAPsLocked()
	a.mu.Unlock()
	for _, r := range stopping {
		st := *r.Status
		st.State, st.Since = api.StateStopping, time.Now().UTC()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		// Over the running status only: the exit may already be recorded.
		a.st.ReplaceStatus(ctx, r.Desired.Spec.Name, st, r.StatusRev)
		cancel()
	}
	for _, r := range idle {
		st := api.VMStatus{State: api.StateStopped, Host: a.cfg.HostName, Since: time.Now().UTC(), ExitReason: "not started"}
		if r.Status != nil {
			st.Restarts, st.ExitCode = r.Status.Restarts, r.Status.ExitCode
			st.ExitReason = "stopped on request"
			if r.Status.ExitReason != "" {
				st.ExitReason += " (last exit: " + r.Status.ExitReason + ")"
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		// Only over the status this decision saw: a start may have won meanwhile.
		a.st.ReplaceStatus(ctx, r.Desired.Spec.Name, st, r.StatusRev)
		cancel()
	}
}

// startLocked spawns the VMM of r; a.mu is held.
func (a *Agent) startLocked(r store.Record) {
	s := r.Desired.Spec
	dir := a.vmDir(s.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		a.log.Error("start VM", "vm", s.Name, "err", err)
		return
	}
	cfg, err := node.Config(s)
	if err != nil {
		a.startFailed(s.Name, err)
		return
	}
	snap, restoring := a.restoreNext[s.Name]
	if restoring {
		// Once: a later restart by policy boots the guest afresh.
		delete(a.restoreNext, s.Name)
		cfg = node.RestoreConfig(s, snap)
	}
	if err := a.setupNICs(s); err != nil {
		a.startFailed(s.Name, err)
		return
	}
	p, err := node.Spawn(a.cfg.Executable, node.Marker(a.id, s.Name), dir, s, cfg, a.ConsolePath(s.Name), filepath.Join(dir, "vmm.log"))
	if err != nil {
		a.log.Error("start VM", "vm", s.Name, "err", err)
		a.delayRestart(s.Name)
		go a.putStatus(s.Name, api.VMStatus{State: api.StateFailed, Host: a.cfg.HostName, Since: time.Now().UTC(), ExitReason: err.Error()})
		return
	}
	if r.Status != nil {
		p.Restarts = r.Status.Restarts
	}
	p.Grace = a.stopGrace(s)
	a.log.Info("started VM", "vm", s.Name, "pid", p.PID)
	a.procs[s.Name] = p
	a.supWG.Add(1)
	go a.supervise(p, true)
	if restoring {
		go a.syncRestoredDisks(p) // the snapshot's disks may differ from the definition's
	}
}

// delayRestart backs off the next start of name; a.mu is held.
func (a *Agent) delayRestart(name string) {
	d := a.backoff[name]
	d = min(max(2*d, minBackoff), maxBackoff)
	a.backoff[name] = d
	a.notBefore[name] = time.Now().Add(d)
}

// supervise records p as running (when report is set), waits for it to
// exit and records why, deciding on a restart by the VM's policy.
func (a *Agent) supervise(p *node.Proc, report bool) {
	defer a.supWG.Done()
	if report {
		err := a.putStatus(p.Name, api.VMStatus{State: api.StateRunning, Host: a.cfg.HostName, PID: p.PID,
			StartTicks: p.Ticks, Since: p.Since, Restarts: p.Restarts})
		if errors.Is(err, store.ErrNotFound) {
			p.Kill() // deleted meanwhile
		}
	}
	select {
	case <-p.Done():
	case <-a.ctx.Done():
		return // Close: the VMM keeps running for the next agent
	}
	a.handleExit(p)
}

// handleExit records a VMM's end and decides what happens next.
func (a *Agent) handleExit(p *node.Proc) {
	// A source VMM ends when its migration succeeds: wait for the
	// migration's outcome before deciding what the exit means.
	if mig := p.State().Migration; mig != nil {
		<-mig
	}
	ps := p.State()
	migrated, stopReq, restartReq := ps.Migrated, ps.StopReq, ps.RestartReq
	a.mu.Lock()
	detached, stopping := a.detached, a.stopping
	if time.Since(p.Since) > stableRun {
		delete(a.backoff, p.Name)
	}
	a.mu.Unlock()
	// p leaves a.procs only once its exit is recorded: until then the
	// reconciler must not start a second VMM on the old desired state.
	defer func() {
		if !detached {
			a.teardownNICs(p.Name) // made again at the next start
		}
		a.mu.Lock()
		if a.procs[p.Name] == p {
			delete(a.procs, p.Name)
		}
		a.mu.Unlock()
		a.poke()
	}()
	if detached || migrated {
		return // the VM now runs on another host, whose agent reports it
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := a.st.GetVM(ctx, p.Name)
	if err != nil {
		return // deleted, or the store is gone: nothing to record
	}
	reason := p.Exit.String()
	if line := node.LastLine(filepath.Join(a.vmDir(p.Name), "vmm.log")); line != "" && p.Exit.Failed() {
		reason += ": " + line
	}
	st := api.VMStatus{State: api.StateStopped, Host: a.cfg.HostName, Since: time.Now().UTC(), ExitCode: p.Exit.Code, Restarts: p.Restarts}
	switch {
	case stopping:
		st.ExitReason = "agent shut down (" + reason + ")"
	case restartReq:
		st.ExitReason = "restarted on request (" + reason + ")"
	case stopReq:
		st.ExitReason = "stopped on request (" + reason + ")"
	default:
		failed := p.Exit.Failed()
		if !failed {
			reason = "guest powered off"
		}
		st.ExitReason = reason
		if failed {
			st.State = api.StateFailed
		}
		pol := r.Desired.Spec.RestartPolicy
		if r.Desired.Power == api.PowerRunning && (pol == api.RestartAlways || (pol == api.RestartOnFailure && failed)) {
			st.Restarts++
			st.ExitReason += "; restarting (restartPolicy " + pol + ")"
			a.mu.Lock()
			a.delayRestart(p.Name)
			a.mu.Unlock()
		} else if r.Desired.Power == api.PowerRunning {
			// Not restarting: the desired state follows, so that etcd says
			// what will happen (nothing) until a user starts it.
			a.st.UpdateVM(ctx, p.Name, func(d *store.Desired) error { d.Power = api.PowerStopped; return nil })
		}
	}
	a.log.Info("VM stopped", "vm", p.Name, "pid", p.PID, "state", st.State, "reason", st.ExitReason)
	a.putStatus(p.Name, st)
}

func (a *Agent) putStatus(name string, st api.VMStatus) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := a.st.PutStatus(ctx, name, st)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		a.log.Warn("record VM status", "vm", name, "err", err)
	}
	return err
}

// adoptAll finds this agent's VMM processes that outlived a previous agent
// and supervises them again; VMs whose VMM died meanwhile are recorded as
// such (and restarted by policy through the usual exit handling).
func (a *Agent) adoptAll(ctx context.Context) error {
	recs, _, err := a.st.ListVMs(ctx)
	if err != nil {
		return err
	}
	found := node.FindVMMs(a.id)
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range recs {
		name := r.Desired.Spec.Name
		if r.Desired.Host != a.cfg.HostName {
			continue
		}
		pids := found[name]
		delete(found, name)
		if len(pids) == 0 {
			if r.Status != nil && (r.Status.State == api.StateRunning || r.Status.State == api.StatePaused || r.Status.State == api.StateStopping) {
				// Died while no agent watched: an exit of unknown status.
				p := node.Exited(name, r.Status.PID, r.Status.Since, r.Status.Restarts, node.State{StopReq: r.Status.State == api.StateStopping})
				a.procs[name] = p
				a.supWG.Add(1)
				go a.supervise(p, false)
			}
			continue
		}
		pid := pids[0]
		for _, q := range pids {
			if r.Status != nil && q == r.Status.PID {
				pid = q
			}
		}
		for _, q := range pids {
			if q != pid {
				a.log.Warn("duplicate VMM process; stopping it", "vm", name, "pid", q)
				syscall.Kill(q, syscall.SIGTERM)
			}
		}
		ticks, err := node.StartTicks(pid)
		if err != nil {
			continue
		}
		since, restarts := time.Now().UTC(), 0
		same := r.Status != nil && r.Status.PID == pid && r.Status.StartTicks == ticks
		if r.Status != nil {
			restarts = r.Status.Restarts
			if same {
				since = r.Status.Since
			}
		}
		p, err := node.Adopt(a.ctx, name, a.vmDir(name), pid, ticks, since)
		if err != nil {
			a.log.Warn("adopt VMM", "vm", name, "err", err)
			continue
		}
		p.Restarts = restarts
		p.Grace = a.stopGrace(r.Desired.Spec)
		p.Update(func(s *node.State) { s.Paused = same && r.Status.State == api.StatePaused }) // not shared yet
		a.log.Info("adopted VM", "vm", name, "pid", pid)
		a.procs[name] = p
		a.supWG.Add(1)
		go a.supervise(p, !same || (r.Status.State != api.StateRunning && r.Status.State != api.StatePaused))
	}
	for name, pids := range found {
		// A marker of ours for a VM that is no longer defined here.
		for _, pid := range pids {
			a.log.Warn("VMM of an undefined VM; stopping it", "vm", name, "pid", pid)
			syscall.Kill(pid, syscall.SIGTERM)
		}
	}
	return nil
}
