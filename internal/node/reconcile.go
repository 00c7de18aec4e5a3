package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/store"
	"github.com/govisor/govisor/internal/vmm/vmmconfig"
)

// Restart back-off: doubles from minBackoff to maxBackoff for a VM that
// keeps failing, and resets once it has run for stableRun.
const (
	minBackoff = time.Second
	maxBackoff = 30 * time.Second
	stableRun  = time.Minute
)

// Poke asks the reconciler for a pass soon.
func (n *Node) Poke() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// watchLoop pokes the reconciler on every change to a VM's definition.
func (n *Node) watchLoop() {
	defer n.loopWG.Done()
	for n.ctx.Err() == nil {
		for ev := range n.st.Watch(n.ctx, 0) {
			if ev.Kind == "spec" {
				n.Poke()
			}
		}
		select {
		case <-n.ctx.Done():
		case <-time.After(time.Second):
			n.Poke() // changes during the gap are caught by a full pass
		}
	}
}

// reconcileLoop runs a full pass on every poke and every ResyncEvery.
func (n *Node) reconcileLoop() {
	defer n.loopWG.Done()
	t := time.NewTicker(n.cfg.ResyncEvery)
	defer t.Stop()
	n.reconcile()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.kick:
		case <-t.C:
		}
		n.reconcile()
	}
}

// reconcile makes this host's VMM processes match the desired state.
func (n *Node) reconcile() {
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	n.reconcileNetworks(ctx)
	// The snapshot is read under n.mu: a proc leaves n.procs only after its
	// exit is recorded, so "no proc" here means etcd already knows why.
	n.mu.Lock()
	if n.stopping {
		n.mu.Unlock()
		return
	}
	recs, _, err := n.st.ListVMs(ctx)
	if err != nil {
		n.mu.Unlock()
		n.log.Warn("reconcile: list VMs", "err", err)
		return
	}
	var idle []store.Record     // stopped VMs whose status still says otherwise
	var stopping []store.Record // VMs being stopped now
	mine := map[string]bool{}
	for _, r := range recs {
		if r.Desired.Host != n.cfg.HostName {
			continue
		}
		name := r.Desired.Spec.Name
		if !NameRE.MatchString(name) {
			// Only a foreign writer to etcd can put it there; its name
			// would become a path under the state directory.
			n.log.Warn("ignoring VM with an invalid name", "vm", name)
			continue
		}
		mine[name] = true
		p := n.procs[name]
		switch {
		case r.Desired.Power == api.PowerRunning && p == nil:
			restarts := 0
			if r.Status != nil {
				restarts = r.Status.Restarts
			}
			if n.promoteIncoming(name, restarts, r.Desired.Spec.HA) {
				continue
			}
			if nb := n.notBefore[name]; time.Now().Before(nb) {
				time.AfterFunc(time.Until(nb), n.Poke)
				continue
			}
			n.startLocked(r)
		case r.Desired.Power == api.PowerStopped && p != nil:
			if !p.State().StopReq {
				n.log.Info("stopping VM", "vm", name, "pid", p.PID)
				p.Stop()
				if r.Status != nil && (r.Status.State == api.StateRunning || r.Status.State == api.StatePaused) && r.Status.PID == p.PID {
					stopping = append(stopping, r)
				}
			}
		case r.Desired.Power == api.PowerStopped && p == nil:
			_, backingOff := n.notBefore[name]
			if backingOff {
				// Stopped while waiting to restart: the restart is off.
				delete(n.notBefore, name)
				delete(n.backoff, name)
			}
			if backingOff || r.Status == nil || (r.Status.State != api.StateStopped && r.Status.State != api.StateFailed) {
				idle = append(idle, r)
			}
		}
	}
	for name, p := range n.procs {
		if !mine[name] {
			// Deleted or moved away while running (delete refuses that, but
			// an external etcd can be written by anyone): stop it.
			n.log.Warn("VM no longer defined for this host; stopping its VMM", "vm", name, "pid", p.PID)
			p.Stop()
		}
	}
	n.gcTAPsLocked()
	n.mu.Unlock()
	for _, r := range stopping {
		st := *r.Status
		st.State, st.Since = api.StateStopping, time.Now().UTC()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		// Over the running status only: the exit may already be recorded.
		n.st.ReplaceStatus(ctx, r.Desired.Spec.Name, st, r.StatusRev)
		cancel()
	}
	for _, r := range idle {
		st := api.VMStatus{State: api.StateStopped, Host: n.cfg.HostName, Since: time.Now().UTC(), ExitReason: "not started"}
		if r.Status != nil {
			st.Restarts, st.ExitCode = r.Status.Restarts, r.Status.ExitCode
			st.ExitReason = "stopped on request"
			if r.Status.ExitReason != "" {
				st.ExitReason += " (last exit: " + r.Status.ExitReason + ")"
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		// Only over the status this decision saw: a start may have won meanwhile.
		n.st.ReplaceStatus(ctx, r.Desired.Spec.Name, st, r.StatusRev)
		cancel()
	}
}

// startLocked spawns the VMM of r; n.mu is held.
func (n *Node) startLocked(r store.Record) {
	s := r.Desired.Spec
	dir := n.vmDir(s.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		n.log.Error("start VM", "vm", s.Name, "err", err)
		return
	}
	cfg, err := VMMConfig(s)
	if err != nil {
		n.startFailed(s.Name, err)
		return
	}
	snap, restoring := n.restoreNext[s.Name]
	var feats []string
	if restoring {
		// Once: a later restart by policy boots the guest afresh.
		delete(n.restoreNext, s.Name)
		cfg = RestoreConfig(s, snap)
		if r.Status != nil {
			feats = r.Status.CPUFeatures // the snapshot's guest keeps its CPU
		}
	} else {
		if cfg.CPUFeatures, feats, err = n.cpuFeatures(s); err != nil {
			n.startFailed(s.Name, err)
			return
		}
	}
	if s.HA {
		deadline, err := n.claimHAStart(r)
		if err != nil {
			// Level-triggered: the next pass reads the VM and the lease again.
			n.log.Warn("HA VM not started here now", "vm", s.Name, "err", err)
			time.AfterFunc(time.Second, n.Poke)
			return
		}
		cfg.FenceDeadlineMonoNS = deadline
	}
	n.jail(s.Name, dir, &cfg)
	if err := n.leaseDisks(s, &cfg, r.Desired.LeaseSeen); err != nil {
		n.startFailed(s.Name, err)
		return
	}
	if err := n.setupNICs(s); err != nil {
		n.startFailed(s.Name, err)
		return
	}
	p, err := Spawn(n.cfg.Executable, Marker(n.id, s.Name), dir, s, cfg, n.ConsolePath(s.Name), filepath.Join(dir, "vmm.log"))
	if err != nil {
		n.log.Error("start VM", "vm", s.Name, "err", err)
		n.delayRestart(s.Name)
		go n.putStatus(s.Name, api.VMStatus{State: api.StateFailed, Host: n.cfg.HostName, Since: time.Now().UTC(), ExitReason: err.Error()})
		return
	}
	if r.Status != nil {
		p.Restarts = r.Status.Restarts
	}
	p.Grace = n.stopGrace(s)
	p.HA = s.HA
	p.CPUFeatures = feats
	n.log.Info("started VM", "vm", s.Name, "pid", p.PID, "ha", s.HA)
	n.procs[s.Name] = p
	n.supWG.Add(1)
	go n.supervise(p, true)
	if restoring {
		go n.syncRestoredDisks(p) // the snapshot's disks may differ from the definition's
	}
}

// delayRestart backs off the next start of name; n.mu is held.
func (n *Node) delayRestart(name string) {
	d := n.backoff[name]
	d = min(max(2*d, minBackoff), maxBackoff)
	n.backoff[name] = d
	n.notBefore[name] = time.Now().Add(d)
}

// supervise records p as running (when report is set), waits for it to
// exit and records why, deciding on a restart by the VM's policy.
func (n *Node) supervise(p *Proc, report bool) {
	defer n.supWG.Done()
	if report {
		err := n.putStatus(p.Name, api.VMStatus{State: api.StateRunning, Host: n.cfg.HostName, PID: p.PID,
			StartTicks: p.Ticks, Since: p.Since, Restarts: p.Restarts, CPUFeatures: p.CPUFeatures})
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, errMoved) {
			p.Kill() // deleted or moved to another host meanwhile
		}
	}
	select {
	case <-p.Done():
	case <-n.ctx.Done():
		return // Close: the VMM keeps running for the next agent
	}
	n.handleExit(p)
}

// handleExit records a VMM's end and decides what happens next.
func (n *Node) handleExit(p *Proc) {
	// A source VMM ends when its migration succeeds: wait for the
	// migration's outcome before deciding what the exit means.
	if mig := p.State().Migration; mig != nil {
		<-mig
	}
	ps := p.State()
	migrated, stopReq, restartReq := ps.Migrated, ps.StopReq, ps.RestartReq
	n.mu.Lock()
	detached, stopping := n.detached, n.stopping
	if time.Since(p.Since) > stableRun {
		delete(n.backoff, p.Name)
	}
	n.mu.Unlock()
	// p leaves n.procs only once its exit is recorded: until then the
	// reconciler must not start a second VMM on the old desired state.
	defer func() {
		if !detached {
			n.teardownNICs(p.Name) // made again at the next start
		}
		n.mu.Lock()
		if n.procs[p.Name] == p {
			delete(n.procs, p.Name)
		}
		n.mu.Unlock()
		n.Poke()
	}()
	if detached || migrated {
		return // the VM now runs on another host, whose agent reports it
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := n.st.GetVM(ctx, p.Name)
	if err != nil {
		return // deleted, or the store is gone: nothing to record
	}
	if r.Desired.Host != n.cfg.HostName {
		return // moved to another host (HA): its status is that host's
	}
	reason := p.Exit.String()
	// A seccomp report ends with the Go runtime's register dump: its
	// reason says it all.
	if line := LastLine(filepath.Join(n.vmDir(p.Name), "vmm.log")); line != "" && p.Exit.Failed() && p.Exit.Seccomp == "" {
		reason += ": " + line
	}
	st := api.VMStatus{State: api.StateStopped, Host: n.cfg.HostName, Since: time.Now().UTC(), ExitCode: p.Exit.Code, Restarts: p.Restarts}
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
		// An HA VM whose VMM fenced itself (this host's lease was not
		// confirmed in time) runs again here if the VM is still this host's
		// once the lease is back, whatever its policy: the fence was the
		// host's failure, not the guest's.
		fenced := r.Desired.Spec.HA && p.Exit.Code != nil && *p.Exit.Code == vmmconfig.ExitFenced
		if fenced {
			// The VMM's last line says which guard fired (its watchdog: this
			// host's etcd lease was not confirmed in time; or a disk lease).
			st.ExitReason = "fenced: this host's etcd lease was not confirmed in time"
			if line := LastLine(filepath.Join(n.vmDir(p.Name), "vmm.log")); strings.Contains(line, "fenced: ") && strings.Contains(line, "disklease") {
				st.ExitReason = line[strings.Index(line, "fenced: "):]
			}
		}
		if r.Desired.Power == api.PowerRunning && (fenced || pol == api.RestartAlways || (pol == api.RestartOnFailure && failed)) {
			st.Restarts++
			st.ExitReason += "; restarting (restartPolicy " + pol + ")"
			n.mu.Lock()
			n.delayRestart(p.Name)
			n.mu.Unlock()
		} else if r.Desired.Power == api.PowerRunning {
			// Not restarting: the desired state follows, so that etcd says
			// what will happen (nothing) until a user starts it.
			n.st.UpdateVM(ctx, p.Name, func(d *store.Desired) error { d.Power = api.PowerStopped; return nil })
		}
	}
	n.log.Info("VM stopped", "vm", p.Name, "pid", p.PID, "state", st.State, "reason", st.ExitReason)
	n.putStatus(p.Name, st)
}

// errMoved: a status write found the VM given to another host.
var errMoved = errors.New("the VM was moved to another host")

// putStatus records st as the status of VM name while the VM is this
// host's: once the HA controller moved it (this host was cut off and its
// VMM fenced) the new host's status must not be overwritten. ErrNotFound
// when the VM is gone.
func (n *Node) putStatus(name string, st api.VMStatus) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var err error
	for range 5 {
		var r store.Record
		if r, err = n.st.GetVM(ctx, name); err != nil {
			break
		}
		if r.Desired.Host != n.cfg.HostName {
			return errMoved
		}
		if st.CPUFeatures == nil && r.Status != nil && live(st.State) && live(r.Status.State) {
			// The same guest runs on (adopted, or come by migration): it
			// keeps the CPU it was started with.
			st.CPUFeatures = r.Status.CPUFeatures
		}
		if err = n.st.PutStatusIfSpec(ctx, name, st, r.SpecRev); !errors.Is(err, store.ErrConflict) {
			break
		}
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		n.log.Warn("record VM status", "vm", name, "err", err)
	}
	return err
}

// live reports whether a VM in state s has a guest (its CPU features count).
func live(s api.State) bool {
	return s == api.StatePending || s == api.StateRunning || s == api.StatePaused || s == api.StateStopping
}
