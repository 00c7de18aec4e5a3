package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/store"
	"github.com/govisor/govisor/internal/node"
)

// migrateTimeout bounds one live migration.
const migrateTimeout = 30 * time.Minute

// progressEvery is how often a migration's progress is copied from the
// VMM into the VM's status.
const progressEvery = 500 * time.Millisecond

// Migrate moves VM name, running on this host, to req.Host live and
// answers when the migration ended. It records the migration in etcd (a
// store.Migration), which this agent's migrator carries out (see
// migrator.run): the destination's agent starts `govisor run --incoming`,
// this host's VMM sends the VM there (PUT /migrate of its API), and then
// the VM's host in etcd flips to the destination, with the record done, in
// one transaction. On failure the VM keeps running here and the
// destination VMM is removed: exactly one copy of the VM runs at any time.
func (a *Agent) Migrate(rctx context.Context, name string, req api.MigrateRequest) (api.VM, error) {
	rec, err := a.localVM(rctx, name)
	if err != nil {
		return api.VM{}, err
	}
	if err := checkMigrateRequest(name, rec.Desired.Host, req); err != nil {
		return api.VM{}, err
	}
	if err := a.checkMigrateCPU(rctx, rec, req.Host); err != nil {
		return api.VM{}, err
	}
	p, err := a.liveProc(rec, "migrate", api.StateRunning)
	if err != nil {
		return api.VM{}, err
	}
	if _, err := a.peer(rctx, req.Host); err != nil {
		return api.VM{}, err
	}
	if st := p.State(); st.Migration != nil || st.Stopping {
		return api.VM{}, fmt.Errorf("%w: cannot migrate VM %s: it is being migrated or stopped", ErrBusy, name)
	}
	m, err := a.mig.request(rctx, name, a.cfg.HostName, req, "api")
	if err != nil {
		return api.VM{}, err
	}
	// The migration goes on if the client hangs up: stopping half-way
	// would only waste it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(rctx), migrateTimeout)
	defer cancel()
	end, err := a.mig.wait(ctx, m)
	if err != nil {
		return api.VM{}, err
	}
	if end.Phase != store.MigrationDone {
		return api.VM{}, fmt.Errorf("%w: migration of %s to %s failed (it keeps running on %s): %s", ErrVMM, name, req.Host, a.cfg.HostName, end.Error)
	}
	// Answer with the VM as the destination reports it (running there),
	// with the migration's figures, which the migrator adds to that
	// status.
	deadline := time.Now().Add(30 * time.Second)
	for {
		cur, err := a.st.GetVM(ctx, name)
		if err != nil {
			return api.VM{}, err
		}
		if st := cur.Status; st != nil && st.Host == req.Host && st.State == api.StateRunning &&
			st.Migration != nil && st.Migration.State == api.MigrationCompleted || time.Now().After(deadline) {
			return toAPI(cur), nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// RequestMigration records a live migration of VM name to req.Host,
// which the agent of the VM's host carries out; it returns at once. by
// names the caller (a controller) in the record. The controllers of the
// cluster use it from any host; the record says how it went.
func (a *Agent) RequestMigration(ctx context.Context, name string, req api.MigrateRequest, by string) error {
	if err := checkName(name); err != nil {
		return err
	}
	rec, err := a.st.GetVM(ctx, name)
	if err != nil {
		return err
	}
	if err := checkMigrateRequest(name, rec.Desired.Host, req); err != nil {
		return err
	}
	if err := a.checkMigrateCPU(ctx, rec, req.Host); err != nil {
		return err
	}
	_, err = a.mig.request(ctx, name, rec.Desired.Host, req, by)
	return err
}

// checkMigrateRequest validates a migration of VM name from host from.
func checkMigrateRequest(name, from string, req api.MigrateRequest) error {
	switch {
	case req.Host == "":
		return fieldErr("host", "required: the destination host (see GET /v1/hosts)")
	case req.Host == from:
		return fieldErr("host", fmt.Sprintf("%q: VM %s already runs there", req.Host, name))
	case req.MaxDowntimeMS < 0:
		return fieldErr("maxDowntimeMS", "must not be negative")
	case req.Bandwidth < 0:
		return fieldErr("bandwidth", "must not be negative")
	}
	return nil
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
		// A VMM that ended (while no agent watched) has no migration to
		// cancel: the migrator decides from its record what became of it.
		running = st.Migration != nil && !st.Migrated && p.VMM != nil && p.Alive()
	}
	if !running {
		return api.VM{}, fmt.Errorf("%w: no migration of VM %s is running", ErrBusy, name)
	}
	// The record asks the migrator to give up; the VMM is told at once.
	phase := a.mig.requestCancel(name)
	ctx, cancel := context.WithTimeout(context.Background(), node.CallTimeout)
	defer cancel()
	if err := p.VMM.CancelMigrate(ctx); err != nil && phase != store.MigrationRequested && phase != store.MigrationPreparing {
		return api.VM{}, fmt.Errorf("%w: cancel the migration of %s: %v", ErrVMM, name, err)
	}
	a.log.Info("migration cancelled on request", "vm", name)
	return toAPI(rec), nil
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

// migrationError is the error of a request about a migration the store
// refused, in the agent's terms.
func migrationError(name string, err error) error {
	switch {
	case errors.Is(err, store.ErrMigrating):
		return fmt.Errorf("%w: cannot migrate VM %s: it is being migrated or stopped", ErrBusy, name)
	case errors.Is(err, store.ErrNotOnSource):
		return fmt.Errorf("%w: cannot migrate VM %s: %v", ErrBusy, name, err)
	}
	return err
}
