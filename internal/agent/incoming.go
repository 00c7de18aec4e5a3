package agent

import (
	"context"
	"fmt"
	"net"

	"github.com/govisor/govisor/api"
)

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
	// (They still count: a firmware VM boots its first disk.)
	s, err := normalizeDisksAt(req.Spec, a.hostMiB, len(req.MirrorDisks) == 0)
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
	return a.node.StartIncoming(ctx, s, req.From, req.LeaseNonce, func(dir string) (api.VMSpec, []string, error) {
		if len(req.MirrorDisks) > 0 {
			return mirrorTargets(dir, s, req.MirrorDisks)
		}
		return withoutDisks(s), nil, nil
	})
}

// IncomingState says whether a migration of VM name reached this host:
// asked by a source agent that lost sight of the handover.
func (a *Agent) IncomingState(ctx context.Context, name string) (api.Incoming, error) {
	if err := checkName(name); err != nil {
		return api.Incoming{}, err
	}
	return api.Incoming{State: a.node.IncomingState(name)}, nil
}

// CancelIncoming removes the destination VMM of a migration of VM name to
// this host: the source gave up.
func (a *Agent) CancelIncoming(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	a.node.CancelIncoming(name)
	return nil
}
