package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/store"
)

// migrator carries out the live migrations recorded in etcd (see
// store.Migration) whose source is this host, and removes the destination
// VMMs of migrations to this host that failed. A migration is carried out
// by one goroutine of this agent at a time; a record left half-way by an
// earlier agent (it crashed or was restarted) is resumed or aborted
// (resume), so that a crash of either agent never leaves two copies of a
// VM running, nor a destination VMM behind.
type migrator struct {
	a      *Agent
	mu     sync.Mutex
	active map[string]bool // VMs whose migration a goroutine here carries out
}

func newMigrator(a *Agent) *migrator { return &migrator{a: a, active: map[string]bool{}} }

// migrationResync is how often the migrator lists every record again
// besides following the watch: level-triggered, a record whose last
// event it missed or whose goroutine ended without ending it is taken up
// again (start skips those a goroutine carries out).
const migrationResync = 30 * time.Second

// loop lists the migration records and then follows them with a watch,
// handing each to handle, until the agent stops.
func (g *migrator) loop() {
	defer g.a.loopWG.Done()
	ctx := g.a.ctx
	for ctx.Err() == nil {
		ms, rev, err := g.a.st.ListMigrations(ctx)
		if err == nil {
			for _, m := range ms {
				g.handle(m)
			}
			g.watch(ctx, rev)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// watch hands the watched migration records from rev to handle until
// the watch ends or the next resync is due.
func (g *migrator) watch(ctx context.Context, rev int64) {
	wctx, cancel := context.WithTimeout(ctx, migrationResync)
	defer cancel()
	for m := range g.a.st.WatchMigrations(wctx, g.a.cfg.HostName, rev) {
		g.handle(m)
	}
}

// handle acts on one migration record of this host.
func (g *migrator) handle(m store.Migration) {
	host := g.a.cfg.HostName
	switch {
	case m.Source == host && !m.Phase.Final():
		g.start(m)
	case m.Destination == host && (m.Phase == store.MigrationFailed || m.Phase == store.MigrationCancelled):
		// The source removes the destination VMM itself; this covers a
		// source that could not reach this agent then.
		g.a.node.CancelIncomingBefore(m.VM, m.Updated)
	}
}

// request records a migration of VM name from host source as req asks
// and, when source is this host, begins it at once.
func (g *migrator) request(ctx context.Context, name, source string, req api.MigrateRequest, by string) (store.Migration, error) {
	m, err := g.a.st.CreateMigration(ctx, store.Migration{VM: name, Source: source, Destination: req.Host, CreatedBy: by,
		Caller:  callerValue(ctx),
		Options: store.MigrationOptions{MaxDowntimeMS: req.MaxDowntimeMS, Bandwidth: req.Bandwidth}})
	if err != nil {
		return store.Migration{}, migrationError(name, err)
	}
	g.a.log.Info("migration requested", "vm", name, "from", source, "to", req.Host, "by", by)
	if source == g.a.cfg.HostName {
		g.start(m)
	}
	return m, nil
}

// start carries out migration m in a goroutine of its own unless one
// does already: run for a new one, resume for one an earlier agent left.
func (g *migrator) start(m store.Migration) {
	g.mu.Lock()
	if g.active[m.VM] || g.a.ctx.Err() != nil {
		g.mu.Unlock()
		return
	}
	g.active[m.VM] = true
	g.a.loopWG.Add(1)
	g.mu.Unlock()
	go func() {
		defer g.a.loopWG.Done()
		defer func() {
			g.mu.Lock()
			delete(g.active, m.VM)
			g.mu.Unlock()
		}()
		// Events and lists can be older than the record: act on the
		// record as it is now, and only if no other goroutine ended it.
		ctx, cancel := shortCtx()
		cur, err := g.a.st.GetMigration(ctx, m.VM)
		cancel()
		if err != nil || cur.Phase.Final() || !cur.Created.Equal(m.Created) || cur.Source != g.a.cfg.HostName {
			return
		}
		if cur.Phase == store.MigrationRequested {
			g.run(cur)
		} else {
			g.resume(cur)
		}
	}()
}

// wait polls the record of migration m until it ends or ctx does.
func (g *migrator) wait(ctx context.Context, m store.Migration) (store.Migration, error) {
	for {
		cur, err := g.a.st.GetMigration(ctx, m.VM)
		switch {
		case err == nil && !cur.Created.Equal(m.Created):
			return cur, fmt.Errorf("%w: the migration of %s was replaced by another", ErrBusy, m.VM)
		case err == nil && cur.Phase.Final():
			return cur, nil
		case errors.Is(err, store.ErrNotFound):
			return cur, fmt.Errorf("%w: VM %s was deleted during its migration", store.ErrNotFound, m.VM)
		}
		select {
		case <-ctx.Done():
			return cur, fmt.Errorf("agent: waiting for the migration of %s: %w", m.VM, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// requestCancel asks, in the record, that the migration of VM name stop,
// and returns the phase it was in ("" when there is none).
func (g *migrator) requestCancel(name string) store.MigrationPhase {
	ctx, cancel := shortCtx()
	defer cancel()
	for range 5 {
		m, err := g.a.st.GetMigration(ctx, name)
		if err != nil || m.Phase.Final() {
			return ""
		}
		m.CancelRequested = true
		if _, err := g.a.st.UpdateMigration(ctx, m); err == nil || !errors.Is(err, store.ErrConflict) {
			return m.Phase
		}
	}
	return ""
}

// save writes the migrator's view of m (phase, error, addresses, result)
// over the record, keeping a cancel request written meanwhile; with
// finish, it ends the migration done and flips the VM's host (see
// store.FinishMigration). It fails when the record ended meanwhile.
func (g *migrator) save(ctx context.Context, m store.Migration, finish func(*store.Desired)) (store.Migration, error) {
	for range 5 {
		var out store.Migration
		var err error
		if finish != nil {
			out, err = g.a.st.FinishMigration(ctx, m, finish)
		} else {
			out, err = g.a.st.UpdateMigration(ctx, m)
		}
		if !errors.Is(err, store.ErrConflict) {
			return out, err
		}
		cur, gerr := g.a.st.GetMigration(ctx, m.VM)
		if gerr != nil {
			return m, gerr
		}
		if cur.Phase.Final() || !cur.Created.Equal(m.Created) {
			return cur, fmt.Errorf("%w: the migration of %s ended meanwhile (%s)", store.ErrConflict, m.VM, cur.Phase)
		}
		m.Rev, m.CancelRequested = cur.Rev, cur.CancelRequested
	}
	return m, fmt.Errorf("%w: the migration record of %s keeps changing", store.ErrConflict, m.VM)
}
