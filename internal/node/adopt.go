package node

import (
	"context"
	"syscall"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/store"
)

// Adopt finds this agent's VMM processes that outlived a previous agent
// and supervises them again; VMs whose VMM died meanwhile are recorded as
// such (and restarted by policy through the usual exit handling).
func (n *Node) Adopt(ctx context.Context) error {
	recs, _, err := n.st.ListVMs(ctx)
	if err != nil {
		return err
	}
	outgoing, incoming, err := n.unfinishedMigrations(ctx)
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
		// A live migration of the VM away from here was under way: its
		// VMM's exit means nothing until the agent has found out whether
		// the guest went to the destination (see State.Migration).
		var hold chan struct{}
		if outgoing[name] {
			hold = make(chan struct{})
		}
		if len(pids) == 0 {
			if hold != nil || (r.Status != nil && (r.Status.State == api.StateRunning || r.Status.State == api.StatePaused || r.Status.State == api.StateStopping)) {
				// Died while no agent watched: an exit of unknown status.
				var pid, restarts int
				since := time.Now().UTC()
				if r.Status != nil {
					pid, since, restarts = r.Status.PID, r.Status.Since, r.Status.Restarts
				}
				p := Exited(name, pid, since, restarts, State{StopReq: r.Status != nil && r.Status.State == api.StateStopping, Migration: hold})
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
		p, err := AdoptProc(n.ctx, name, n.vmDir(name), n.jailID(name), pid, ticks, since)
		if err != nil {
			n.log.Warn("adopt VMM", "vm", name, "err", err)
			continue
		}
		p.Restarts = restarts
		p.Grace = n.stopGrace(r.Desired.Spec)
		p.HA = r.Desired.Spec.HA
		p.Update(func(s *State) { s.Paused, s.Migration = same && r.Status.State == api.StatePaused, hold }) // not shared yet
		n.log.Info("adopted VM", "vm", name, "pid", pid)
		n.procs[name] = p
		n.supWG.Add(1)
		go n.supervise(p, !same || (r.Status.State != api.StateRunning && r.Status.State != api.StatePaused))
	}
	for name, pids := range found {
		if m, ok := incoming[name]; ok && len(pids) == 1 && n.adoptIncoming(name, pids[0], m.Disks) {
			continue
		}
		// A marker of ours for a VM that is no longer defined here, or the
		// destination VMM of a migration that ended (or never was).
		for _, pid := range pids {
			n.log.Warn("VMM of an undefined VM; stopping it", "vm", name, "pid", pid)
			syscall.Kill(pid, syscall.SIGTERM)
		}
	}
	return nil
}

// unfinishedMigrations reads the migrations of this host that have not
// ended: the VMs leaving it (begun: preparing or later) and those coming
// to it.
func (n *Node) unfinishedMigrations(ctx context.Context) (outgoing map[string]bool, incoming map[string]store.Migration, err error) {
	migs, _, err := n.st.ListMigrations(ctx)
	if err != nil {
		return nil, nil, err
	}
	outgoing, incoming = map[string]bool{}, map[string]store.Migration{}
	for _, m := range migs {
		switch {
		case m.Phase.Final():
		case m.Source == n.cfg.HostName && m.Phase != store.MigrationRequested:
			outgoing[m.VM] = true
		case m.Destination == n.cfg.HostName:
			incoming[m.VM] = m
		}
	}
	return outgoing, incoming, nil
}

// adoptIncoming takes over the destination VMM (pid) of a migration to
// this host that has not ended, as StartIncoming had started it; n.mu is
// held. mirrored are its disk copies, removed if the VM does not come.
func (n *Node) adoptIncoming(name string, pid int, mirrored []string) bool {
	ticks, err := StartTicks(pid)
	if err != nil {
		return false
	}
	p, err := AdoptProc(n.ctx, name, n.vmDir(name), n.jailID(name), pid, ticks, time.Now().UTC())
	if err != nil {
		n.log.Warn("adopt destination VMM", "vm", name, "err", err)
		return false
	}
	p.Mirror = mirrored
	n.incoming[name] = p
	n.log.Info("adopted the destination VMM of a migration", "vm", name, "pid", pid)
	go n.reapIncoming(name, p)
	return true
}
