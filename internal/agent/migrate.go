package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/store"
	"github.com/govisor/govisor/internal/node"
	"github.com/govisor/govisor/internal/vmmapi"
)

// migrateTimeout bounds one live migration.
const migrateTimeout = 30 * time.Minute

// progressEvery is how often a migration's progress is copied from the
// VMM into the VM's status.
const progressEvery = 500 * time.Millisecond

// Migrate moves VM name, running on this host, to req.Host live: the
// destination's agent starts `govisor run --incoming`, this host's VMM
// sends the VM there (PUT /migrate of its API), and then the VM's host in
// etcd flips to the destination in one compare-and-swap. On failure the VM
// keeps running here and the destination VMM is removed: exactly one copy
// of the VM runs at any time.
func (a *Agent) Migrate(rctx context.Context, name string, req api.MigrateRequest) (api.VM, error) {
	rec, err := a.localVM(rctx, name)
	if err != nil {
		return api.VM{}, err
	}
	switch {
	case req.Host == "":
		return api.VM{}, fieldErr("host", "required: the destination host (see GET /v1/hosts)")
	case req.Host == a.cfg.HostName:
		return api.VM{}, fieldErr("host", fmt.Sprintf("%q: VM %s already runs there", req.Host, name))
	case req.MaxDowntimeMS < 0:
		return api.VM{}, fieldErr("maxDowntimeMS", "must not be negative")
	case req.Bandwidth < 0:
		return api.VM{}, fieldErr("bandwidth", "must not be negative")
	}
	p, err := a.liveProc(rec, "migrate", api.StateRunning)
	if err != nil {
		return api.VM{}, err
	}
	peer, err := a.peer(rctx, req.Host)
	if err != nil {
		return api.VM{}, err
	}
	decided := make(chan struct{})
	var busy bool
	p.Update(func(s *node.State) {
		if busy = s.Migration != nil || s.Stopping; !busy {
			s.Migration = decided
		}
	})
	if busy {
		return api.VM{}, fmt.Errorf("%w: cannot migrate VM %s: it is being migrated or stopped", ErrBusy, name)
	}
	defer func() {
		p.Update(func(s *node.State) { s.Migration = nil })
		close(decided)
	}()
	// The migration goes on if the client hangs up: stopping half-way
	// would only waste it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(rctx), migrateTimeout)
	defer cancel()
	ms := &api.MigrationStatus{State: api.MigrationRunning, To: req.Host, Started: time.Now().UTC()}
	a.setMigration(name, p.PID, ms)
	fail := func(err error) (api.VM, error) {
		ms.State, ms.Error = api.MigrationFailed, err.Error()
		a.setMigration(name, p.PID, ms)
		a.log.Warn("migration failed; the VM keeps running here", "vm", name, "to", req.Host, "err", err)
		return api.VM{}, fmt.Errorf("%w: migration of %s to %s failed (it keeps running on %s): %v", ErrVMM, name, req.Host, a.cfg.HostName, err)
	}
	// Disks not on a shared pool travel with the VM.
	shared, err := a.sharedStorage(ctx, rec.Desired.Spec)
	if err != nil {
		return fail(err)
	}
	var sizes []int64
	if !shared {
		if sizes, err = diskSizes(rec.Desired.Spec); err != nil {
			return fail(err)
		}
	}
	in, err := peer.Incoming(ctx, name, api.IncomingRequest{Spec: rec.Desired.Spec, From: a.cfg.HostName, MirrorDisks: sizes})
	if err != nil {
		return fail(err)
	}
	if len(in.Disks) != len(sizes) {
		cctx, ccancel := shortCtx()
		peer.CancelIncoming(cctx, name)
		ccancel()
		return fail(fmt.Errorf("the destination made %d disk copies for %d disks", len(in.Disks), len(sizes)))
	}
	a.log.Info("migrating VM", "vm", name, "to", req.Host, "addr", in.Addr)
	stopPoll := a.pollProgress(name, p, ms)
	res, err := p.VMM.Migrate(ctx, vmmapi.MigrateRequest{To: in.Addr, MaxDowntimeMS: req.MaxDowntimeMS, Bandwidth: req.Bandwidth,
		MirrorDisks: len(sizes) > 0})
	stopPoll()
	if err != nil {
		cctx, ccancel := shortCtx()
		peer.CancelIncoming(cctx, name)
		ccancel()
		return fail(err)
	}
	// The guest now runs (paused or not) only on the destination.
	p.Update(func(s *node.State) { s.Migrated = true })
	if err := a.flipHost(name, req.Host, in.Disks); err != nil {
		// etcd is unreachable: the destination agent keeps its VMM waiting
		// until the flip is made (or the VMM is removed by hand).
		return api.VM{}, fmt.Errorf("agent: VM %s migrated to %s but its host in etcd could not be changed: %w", name, req.Host, err)
	}
	a.poke()
	a.log.Info("VM migrated", "vm", name, "to", req.Host, "downtime_ms", res.DowntimeMS, "total_ms", res.TotalMS)
	// Answer with the VM as the destination reports it (running there),
	// with the migration's figures added to that status.
	ms.State, ms.Round, ms.BytesSent, ms.DowntimeMS = api.MigrationCompleted, res.Rounds, res.BytesSent, res.DowntimeMS
	ms.RemainingPages, ms.ExpectedDowntimeMS, ms.DirtyRate = 0, 0, 0
	deadline := time.Now().Add(30 * time.Second)
	for {
		cur, err := a.st.GetVM(ctx, name)
		if err == nil && cur.Status != nil && cur.Status.Host == req.Host && cur.Status.State == api.StateRunning {
			st := *cur.Status
			m := *ms
			st.Migration = &m
			// Only over the destination's first report: anything newer wins.
			if a.st.ReplaceStatus(ctx, name, st, cur.StatusRev) == nil {
				cur.Status = &st
			}
			return toAPI(cur), nil
		}
		if err == nil && time.Now().After(deadline) {
			return toAPI(cur), nil
		}
		if err != nil {
			return api.VM{}, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// flipHost moves the VM's desired host from this host to dest in etcd,
// with its disks on the destination's copies when they were mirrored,
// retrying while etcd is briefly unavailable.
func (a *Agent) flipHost(name, dest string, mirrored []string) error {
	var err error
	for try := 0; try < 10; try++ {
		ctx, cancel := shortCtx()
		_, err = a.st.UpdateVM(ctx, name, func(d *store.Desired) error {
			if d.Host != a.cfg.HostName {
				return fmt.Errorf("%w: VM %s moved to %s meanwhile", ErrBusy, name, d.Host)
			}
			d.Host = dest
			if len(mirrored) > 0 {
				mirroredSpec(&d.Spec, mirrored)
			}
			return nil
		})
		cancel()
		if err == nil || errors.Is(err, ErrBusy) || errors.Is(err, store.ErrNotFound) {
			return err
		}
		time.Sleep(time.Second)
	}
	return err
}

// setMigration records ms in the VM's status, if that status is still the
// running VMM pid's.
func (a *Agent) setMigration(name string, pid int, ms *api.MigrationStatus) {
	ctx, cancel := shortCtx()
	defer cancel()
	rec, err := a.st.GetVM(ctx, name)
	if err != nil || rec.Status == nil || rec.Status.PID != pid || rec.Desired.Host != a.cfg.HostName {
		return
	}
	st := *rec.Status
	m := *ms
	st.Migration = &m
	a.st.ReplaceStatus(ctx, name, st, rec.StatusRev)
}

// pollProgress copies the VMM's GET /migrate progress into the VM's status
// until the returned function is called. A VMM without the endpoint shows
// only the migration's state.
func (a *Agent) pollProgress(name string, p *node.Proc, ms *api.MigrationStatus) func() {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			pr, err := node.QuickCall(p.VMM.MigrateProgress)
			if errors.Is(err, vmmapi.ErrNoEndpoint) {
				return
			}
			if err != nil || pr.State != vmmapi.MigrateRunning {
				continue
			}
			ms.Round, ms.BytesSent, ms.DirtyRate = pr.Round, pr.BytesSent, pr.DirtyRate
			ms.RemainingPages, ms.ExpectedDowntimeMS = pr.RemainingPages, pr.ExpectedDowntimeMS
			a.setMigration(name, p.PID, ms)
		}
	}()
	return func() { close(done); <-stopped }
}

// CancelMigrate stops the running migration of VM name: the VMM stops
// sending; the migration fails, so the VM keeps running here and the
// destination VMM is removed.
func (a *Agent) CancelMigrate(rctx context.Context, name string) (api.VM, error) {
	rec, err := a.localVM(rctx, name)
	if err != nil {
		return api.VM{}, err
	}
	p := a.node.Proc(name)
	var running bool
	if p != nil {
		st := p.State()
		running = st.Migration != nil && !st.Migrated
	}
	if !running {
		return api.VM{}, fmt.Errorf("%w: no migration of VM %s is running", ErrBusy, name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), node.CallTimeout)
	defer cancel()
	if err := p.VMM.CancelMigrate(ctx); err != nil {
		return api.VM{}, fmt.Errorf("%w: cancel the migration of %s: %v", ErrVMM, name, err)
	}
	a.log.Info("migration cancelled on request", "vm", name)
	return toAPI(rec), nil
}
