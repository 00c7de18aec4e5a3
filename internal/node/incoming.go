package node

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/agent/service"
)

// incomingReady bounds how long a destination VMM may take to listen.
const incomingReady = 30 * time.Second

// freePort finds a TCP port on host that is free now (the VMM binds it a
// moment later; a lost race makes the migration fail cleanly).
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("agent: find a port on %s for a migration: %w", host, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// promoteIncoming makes the destination VMM of name this host's VMM of
// the VM, once etcd says the VM lives here; n.mu is held. It reports
// whether there was one.
func (n *Node) promoteIncoming(name string, restarts int, ha bool) bool {
	p := n.incoming[name]
	if p == nil {
		return false
	}
	delete(n.incoming, name)
	if !p.Alive() {
		return false
	}
	p.Since = time.Now().UTC()
	p.Restarts = restarts
	p.Mirror = nil // the mirrored disks are the VM's now
	p.HA = ha      // armed by the next feed
	n.log.Info("VM migrated here", "vm", name, "pid", p.PID)
	n.procs[name] = p
	n.supWG.Add(1)
	go n.supervise(p, true)
	return true
}

func RemoveFiles(paths []string) {
	for _, p := range paths {
		os.Remove(p)
	}
}

// StartIncoming starts the destination VMM of a live migration of s from
// host from (`govisor run --incoming`) and returns once that VMM listens.
// prepare makes the VM's disks for the VMM in the VM's folder dir (the
// mirrored copies, if any) and returns the VMM's spec and those files.
// leaseNonce (shared storage, HA VMs) is the number the source hands its
// disk leases over with at the handover (0: it holds none).
// The VMM is kept apart from this host's VMs until the VM's host in etcd
// names this host (see promoteIncoming).
func (n *Node) StartIncoming(ctx context.Context, s api.VMSpec, from string, leaseNonce uint64, prepare func(dir string) (api.VMSpec, []string, error)) (api.Incoming, error) {
	name := s.Name
	host := n.cfg.MigrationHost
	port, err := freePort(host)
	if err != nil {
		return api.Incoming{}, err
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	dir := n.vmDir(name)
	n.mu.Lock()
	if n.stopping {
		n.mu.Unlock()
		return api.Incoming{}, fmt.Errorf("%w: the agent on %s is shutting down", service.ErrBusy, n.cfg.HostName)
	}
	if n.procs[name] != nil || n.incoming[name] != nil {
		n.mu.Unlock()
		return api.Incoming{}, fmt.Errorf("%w: host %s already runs a VMM for %s", service.ErrBusy, n.cfg.HostName, name)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		n.mu.Unlock()
		return api.Incoming{}, fmt.Errorf("agent: VM folder: %w", err)
	}
	if err := n.setupNICs(s); err != nil {
		n.mu.Unlock()
		return api.Incoming{}, err
	}
	vmmSpec, targets, err := prepare(dir)
	if err != nil {
		n.mu.Unlock()
		return api.Incoming{}, err
	}
	cfg, err := IncomingConfig(vmmSpec, addr)
	n.jail(name, dir, &cfg)
	if cfg.Jail != nil && len(vmmSpec.Disks) == 0 {
		// Shared storage: the VMM opens the source's disks at the
		// handover, so its jail must hold them.
		for _, d := range s.Disks {
			cfg.Jail.Files = append(cfg.Jail.Files, d.Path)
		}
	}
	if err == nil {
		if len(vmmSpec.Disks) == 0 {
			err = n.adoptLeases(s, &cfg, leaseNonce)
		} else {
			err = n.leaseDisks(s, &cfg, nil) // the mirrored copies are this host's own
		}
	}
	var p *Proc
	if err == nil {
		p, err = Spawn(n.cfg.Executable, Marker(n.id, name), dir, s, cfg, n.ConsolePath(name), filepath.Join(dir, "vmm.log"))
	}
	if err != nil {
		n.mu.Unlock()
		RemoveFiles(targets)
		return api.Incoming{}, err
	}
	p.Grace = n.stopGrace(s)
	p.Mirror = targets
	n.incoming[name] = p
	n.mu.Unlock()
	n.log.Info("waiting for a migration", "vm", name, "from", from, "addr", addr, "pid", p.PID, "mirrored_disks", len(targets))
	go n.reapIncoming(name, p)
	deadline := time.Now().Add(incomingReady)
	for !ListensOn(p.PID, port) {
		if !p.Alive() || time.Now().After(deadline) || ctx.Err() != nil {
			p.Kill()
			msg := "did not listen in time"
			if !p.Alive() {
				msg = "exited: " + p.Exit.String()
				if line := LastLine(filepath.Join(dir, "vmm.log")); line != "" {
					msg += ": " + line
				}
			}
			return api.Incoming{}, fmt.Errorf("%w: destination VMM of %s on %s %s", service.ErrVMM, name, n.cfg.HostName, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return api.Incoming{Addr: addr, Disks: targets}, nil
}

// reapIncoming forgets the destination VMM p of VM name when it exits,
// and removes its disk copies if the VM did not come here.
func (n *Node) reapIncoming(name string, p *Proc) {
	<-p.Done()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.incoming[name] == p {
		delete(n.incoming, name) // died before the VM came here
	}
	n.removeLeftovers(p)
}

// removeLeftovers removes the disk copies of destination VMM p, which has
// exited, unless the VM came here (promotion clears them). n.mu is held:
// a retried migration's StartIncoming makes new copies at the same paths,
// never while this removes the old ones.
func (n *Node) removeLeftovers(p *Proc) {
	RemoveFiles(p.Mirror)
	p.Mirror = nil
}

// incomingExit is how long CancelIncoming waits for the destination VMM it
// killed to exit.
const incomingExit = 10 * time.Second

// killIncoming kills destination VMM p and waits (a while) for it to exit
// and its disk copies to be gone, so that a migration tried again at once
// finds the VM's folder free.
func (n *Node) killIncoming(p *Proc) {
	p.Kill()
	select {
	case <-p.Done():
	case <-time.After(incomingExit):
		n.log.Warn("the destination VMM did not exit after SIGKILL", "pid", p.PID)
		return
	}
	n.mu.Lock()
	n.removeLeftovers(p)
	n.mu.Unlock()
}

// CancelIncomingBefore removes the destination VMM of VM name if it was
// started before t: the migration it was for ended at t without the VM
// coming here (a later migration's VMM stays).
func (n *Node) CancelIncomingBefore(name string, t time.Time) {
	n.mu.Lock()
	p := n.incoming[name]
	if p != nil && p.Since.Before(t) {
		delete(n.incoming, name)
	} else {
		p = nil
	}
	n.mu.Unlock()
	if p != nil {
		n.log.Info("migration ended; removing its destination VMM", "vm", name, "pid", p.PID)
		n.killIncoming(p)
	}
}

// CancelIncoming removes the destination VMM of a migration of VM name to
// this host, if there is one: the source gave up.
func (n *Node) CancelIncoming(name string) {
	n.mu.Lock()
	p := n.incoming[name]
	delete(n.incoming, name)
	n.mu.Unlock()
	if p != nil {
		n.log.Info("migration cancelled; removing the destination VMM", "vm", name, "pid", p.PID)
		n.killIncoming(p)
	}
}

// IncomingState says where a live migration of VM name to this host
// stands (api.IncomingWaiting, IncomingArrived or IncomingNone). A VMM that
// does not answer counts as waiting: only one that shows a machine has the
// guest.
func (n *Node) IncomingState(name string) string {
	n.mu.Lock()
	p, promoted := n.incoming[name], false
	if p == nil {
		p, promoted = n.procs[name], true
	}
	n.mu.Unlock()
	if p == nil || !p.Alive() {
		return api.IncomingNone
	}
	if promoted {
		return api.IncomingArrived // its host in etcd names this host
	}
	// The VMM says "starting" until the handover gave it a machine.
	if info, err := QuickCall(p.VMM.Info); err == nil && (info.State == "running" || info.State == "paused") {
		return api.IncomingArrived
	}
	return api.IncomingWaiting
}
