package agent

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/node"
)

// incomingReady bounds how long a destination VMM may take to listen.
const incomingReady = 30 * time.Second

// migrationHost is the address destination VMMs on this host listen on:
// Config.MigrationHost, else the host of Config.Listen when it names one,
// else the loopback (agents sharing one machine).
func (a *Agent) migrationHost() string {
	if a.cfg.MigrationHost != "" {
		return a.cfg.MigrationHost
	}
	if h, _, err := net.SplitHostPort(a.cfg.Listen); err == nil && h != "" {
		if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
			return h
		}
	}
	return "127.0.0.1"
}

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

// Incoming serves POST /v1/vms/{name}/incoming, sent by the agent of the
// VM's host: it starts `govisor run --incoming` for the VM here and
// answers once that VMM listens. The VMM is kept apart from this host's
// VMs until the VM's host in etcd names this host (see promoteIncoming).
func (a *Agent) Incoming(ctx context.Context, name string, req api.IncomingRequest) (api.Incoming, error) {
	if err := checkName(name); err != nil {
		return api.Incoming{}, err
	}
	if req.Spec.Name != name {
		return api.Incoming{}, fieldErr("spec.name", fmt.Sprintf("%q differs from %q in the URL", req.Spec.Name, name))
	}
	// Mirrored disks do not exist here yet: they are checked on the source.
	want := req.Spec
	if len(req.MirrorDisks) > 0 {
		want.Disks = nil
	}
	s, err := normalize(want, a.hostMiB)
	if len(req.MirrorDisks) > 0 {
		s.Disks = req.Spec.Disks
	}
	if err != nil {
		if fe, ok := err.(*FieldError); ok {
			fe.Field = "spec." + fe.Field
		}
		return api.Incoming{}, err
	}
	rec, err := a.st.GetVM(ctx, name)
	if err != nil {
		return api.Incoming{}, err
	}
	if rec.Desired.Host != req.From || req.From == a.cfg.HostName {
		return api.Incoming{}, fmt.Errorf("%w: VM %s is on host %s, not on %q", ErrBusy, name, rec.Desired.Host, req.From)
	}
	host := a.migrationHost()
	port, err := freePort(host)
	if err != nil {
		return api.Incoming{}, err
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	dir := a.vmDir(name)
	a.mu.Lock()
	if a.stopping {
		a.mu.Unlock()
		return api.Incoming{}, fmt.Errorf("%w: the agent on %s is shutting down", ErrBusy, a.cfg.HostName)
	}
	if a.procs[name] != nil || a.incoming[name] != nil {
		a.mu.Unlock()
		return api.Incoming{}, fmt.Errorf("%w: host %s already runs a VMM for %s", ErrBusy, a.cfg.HostName, name)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		a.mu.Unlock()
		return api.Incoming{}, fmt.Errorf("agent: VM folder: %w", err)
	}
	if err := a.setupNICs(s); err != nil {
		a.mu.Unlock()
		return api.Incoming{}, err
	}
	vmmSpec, targets := withoutDisks(s), []string(nil)
	if len(req.MirrorDisks) > 0 {
		if vmmSpec, targets, err = mirrorTargets(dir, s, req.MirrorDisks); err != nil {
			a.mu.Unlock()
			return api.Incoming{}, err
		}
	}
	cfg, err := node.IncomingConfig(vmmSpec, addr)
	var p *node.Proc
	if err == nil {
		p, err = node.Spawn(a.cfg.Executable, node.Marker(a.id, name), dir, s, cfg, a.ConsolePath(name), filepath.Join(dir, "vmm.log"))
	}
	if err != nil {
		a.mu.Unlock()
		removeFiles(targets)
		return api.Incoming{}, err
	}
	p.Grace = a.stopGrace(s)
	p.Mirror = targets
	a.incoming[name] = p
	a.mu.Unlock()
	a.log.Info("waiting for a migration", "vm", name, "from", req.From, "addr", addr, "pid", p.PID, "mirrored_disks", len(targets))
	go func() {
		<-p.Done()
		a.mu.Lock()
		if a.incoming[name] == p {
			delete(a.incoming, name) // died before the VM came here
		}
		leftover := p.Mirror // cleared when the VM came here
		p.Mirror = nil
		a.mu.Unlock()
		removeFiles(leftover)
	}()
	deadline := time.Now().Add(incomingReady)
	for !node.ListensOn(p.PID, port) {
		if !p.Alive() || time.Now().After(deadline) || ctx.Err() != nil {
			p.Kill()
			msg := "did not listen in time"
			if !p.Alive() {
				msg = "exited: " + p.Exit.String()
				if line := node.LastLine(filepath.Join(dir, "vmm.log")); line != "" {
					msg += ": " + line
				}
			}
			return api.Incoming{}, fmt.Errorf("%w: destination VMM of %s on %s %s", ErrVMM, name, a.cfg.HostName, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return api.Incoming{Addr: addr, Disks: targets}, nil
}

// CancelIncoming removes the destination VMM of a migration of VM name to
// this host: the source gave up.
func (a *Agent) CancelIncoming(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	a.mu.Lock()
	p := a.incoming[name]
	delete(a.incoming, name)
	a.mu.Unlock()
	if p != nil {
		a.log.Info("migration cancelled; removing the destination VMM", "vm", name, "pid", p.PID)
		p.Kill()
	}
	return nil
}

// promoteIncoming makes the destination VMM of name this host's VMM of
// the VM, once etcd says the VM lives here; a.mu is held. It reports
// whether there was one.
func (a *Agent) promoteIncoming(name string, restarts int) bool {
	p := a.incoming[name]
	if p == nil {
		return false
	}
	delete(a.incoming, name)
	if !p.Alive() {
		return false
	}
	p.Since = time.Now().UTC()
	p.Restarts = restarts
	p.Mirror = nil // the mirrored disks are the VM's now
	a.log.Info("VM migrated here", "vm", name, "pid", p.PID)
	a.procs[name] = p
	a.supWG.Add(1)
	go a.supervise(p, true)
	return true
}
