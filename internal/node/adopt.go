package node

import (
	"context"
	"syscall"
	"time"

	"github.com/govisor/govisor/api"
)

// Adopt finds this agent's VMM processes that outlived a previous agent
// and supervises them again; VMs whose VMM died meanwhile are recorded as
// such (and restarted by policy through the usual exit handling).
func (n *Node) Adopt(ctx context.Context) error {
	recs, _, err := n.st.ListVMs(ctx)
	if err != nil {
		return err
	}
	found := FindVMMs(n.id)
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, r := range recs {
		name := r.Desired.Spec.Name
		if r.Desired.Host != n.cfg.HostName {
			continue
		}
		pids := found[name]
		delete(found, name)
		if len(pids) == 0 {
			if r.Status != nil && (r.Status.State == api.StateRunning || r.Status.State == api.StatePaused || r.Status.State == api.StateStopping) {
				// Died while no agent watched: an exit of unknown status.
				p := Exited(name, r.Status.PID, r.Status.Since, r.Status.Restarts, State{StopReq: r.Status.State == api.StateStopping})
				n.procs[name] = p
				n.supWG.Add(1)
				go n.supervise(p, false)
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
				n.log.Warn("duplicate VMM process; stopping it", "vm", name, "pid", q)
				syscall.Kill(q, syscall.SIGTERM)
			}
		}
		ticks, err := StartTicks(pid)
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
		p, err := AdoptProc(n.ctx, name, n.vmDir(name), pid, ticks, since)
		if err != nil {
			n.log.Warn("adopt VMM", "vm", name, "err", err)
			continue
		}
		p.Restarts = restarts
		p.Grace = n.stopGrace(r.Desired.Spec)
		p.HA = r.Desired.Spec.HA
		p.Update(func(s *State) { s.Paused = same && r.Status.State == api.StatePaused }) // not shared yet
		n.log.Info("adopted VM", "vm", name, "pid", pid)
		n.procs[name] = p
		n.supWG.Add(1)
		go n.supervise(p, !same || (r.Status.State != api.StateRunning && r.Status.State != api.StatePaused))
	}
	for name, pids := range found {
		// A marker of ours for a VM that is no longer defined here.
		for _, pid := range pids {
			n.log.Warn("VMM of an undefined VM; stopping it", "vm", name, "pid", pid)
			syscall.Kill(pid, syscall.SIGTERM)
		}
	}
	return nil
}
