package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/store"
	"github.com/govisor/govisor/internal/node"
	"github.com/govisor/govisor/internal/vmmapi"
)

// migratedLine starts the VMM's last message when it handed its guest to
// the destination (govisor run, on vm.ExitMigrated); the VMM then exits.
const migratedLine = "govisor: migrated to "

// resume takes over migration m (preparing, running or switching-over)
// that no goroutine of this agent carries out: an earlier agent on this
// host began it and went away. The VMM here decides (node.Adopt held its
// exit until now):
//   - it still sends the VM: the migration is followed to its end, as if
//     this agent had begun it;
//   - it completed the migration (it says so, or it ended with the message
//     of a migrated VMM), or the record says switching-over: the guest runs
//     on the destination, and the migration is finished (the VM's host
//     flips);
//   - otherwise (it never began sending, failed, or died): the migration
//     fails, the destination VMM is removed, and the VM stays here, its
//     VMM's exit handled as any.
func (g *migrator) resume(m store.Migration) {
	a := g.a
	ctx, cancel := context.WithTimeout(migrationCtx(a.ctx, m), migrateTimeout)
	defer cancel()
	a.log.Info("resuming a migration an earlier agent left", "vm", m.VM, "to", m.Destination, "phase", m.Phase)
	f := &flight{m: m, ms: &api.MigrationStatus{State: api.MigrationRunning, To: m.Destination, Started: m.Created}}
	f.p = a.node.Proc(m.VM)
	if f.p == nil {
		g.orphan(ctx, f)
		return
	}
	if f.p.State().Migration == nil && !f.p.BeginMigration() {
		// Not held by Adopt (the record moved on after it looked) and
		// being stopped meanwhile: nothing left to migrate.
		f.p = nil
		g.conclude(f, errors.New("the VM was stopped while no agent carried out its migration"))
		return
	}
	if peer, err := a.peer(ctx, m.Destination); err == nil {
		f.peer = peer
	}
	if m.Phase == store.MigrationSwitchingOver {
		g.conclude(f, nil)
		return
	}
	g.conclude(f, g.follow(ctx, f))
}

// follow watches the VMM's migration until it ends: nil when the guest
// went to the destination.
func (g *migrator) follow(ctx context.Context, f *flight) error {
	for {
		if !f.p.Alive() {
			if ok, res := g.vmmMigrated(f.p); ok {
				if res != nil {
					f.res = res
				}
				return nil
			}
			return fmt.Errorf("the VMM ended during the migration (%s)", f.p.Exit)
		}
		pr := g.check(ctx, f)
		if pr.State == vmmapi.MigrateIdle || (pr.State != "" && pr.To != f.m.Addr) {
			// The VMM's latest migration is an earlier one, or none.
			return errors.New("the agent that began the migration went away before the VMM began sending")
		}
		switch pr.State {
		case vmmapi.MigrateCompleted:
			if pr.Result != nil {
				f.res = pr.Result
			}
			return nil
		case vmmapi.MigrateFailed, vmmapi.MigrateCancelled:
			return fmt.Errorf("the VMM's migration %s: %s", pr.State, pr.Error)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-f.p.Done():
		case <-time.After(progressEvery):
		}
	}
}

// vmmMigrated reports whether the VMM p, which has exited, handed its
// guest to the destination, with the migration's figures when it wrote
// them (vmmapi.MigratedFile, since the VMM started; else its log's last
// line says so, without figures).
func (g *migrator) vmmMigrated(p *node.Proc) (bool, *vmmapi.MigrateResult) {
	path := filepath.Join(g.a.vmDir(p.Name), vmmapi.MigratedFile)
	if fi, err := os.Stat(path); err == nil && !fi.ModTime().Before(p.Since) {
		// Written by the VMM, which a guest may have subverted: read a
		// bounded amount (the real file is a few hundred bytes).
		if b, err := readBounded(path, 64<<10); err == nil {
			var m vmmapi.Migrated
			if json.Unmarshal(b, &m) == nil {
				return true, m.Result
			}
		}
	}
	if p.State().Migrated {
		return true, nil
	}
	return strings.HasPrefix(node.LastLine(filepath.Join(g.a.vmDir(p.Name), "vmm.log")), migratedLine), nil
}

// orphan ends migration f whose VM has no VMM here: done if the VM's host
// is already the destination, else failed.
func (g *migrator) orphan(ctx context.Context, f *flight) {
	a := g.a
	rec, err := a.st.GetVM(ctx, f.m.VM)
	if errors.Is(err, store.ErrNotFound) {
		return // deleted, with its record
	}
	if err == nil && rec.Desired.Host == f.m.Destination {
		f.m.Phase = store.MigrationDone
		if _, err := g.save(ctx, f.m, nil); err != nil {
			a.log.Warn("record the finished migration", "vm", f.m.VM, "err", err)
		}
		return
	}
	if peer, perr := a.peer(ctx, f.m.Destination); perr == nil {
		f.peer = peer
	}
	if err == nil {
		err = fmt.Errorf("VM %s has no VMM on %s", f.m.VM, a.cfg.HostName)
	}
	g.conclude(f, err)
}

// readBounded reads at most max bytes of the file at path.
func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, max))
}
