package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/client"
	"github.com/govisor/govisor/internal/cluster/store"
	"github.com/govisor/govisor/internal/disklease"
	"github.com/govisor/govisor/internal/node"
	"github.com/govisor/govisor/internal/vmmapi"
)

// peerMisses is how many progress rounds in a row the destination's agent
// may fail to answer before the source gives the migration up: a VM that
// went to a host whose agent is gone would have no one to run it.
const peerMisses = 3

// flight is one migration the migrator carries out.
type flight struct {
	m    store.Migration
	p    *node.Proc            // the VM's VMM here
	peer *client.Client        // the destination's agent (nil if unknown)
	ms   *api.MigrationStatus  // the progress shown in the VM's status
	res  *vmmapi.MigrateResult // set when the VMM completed the migration
	// why is set when the migrator itself cancelled the VMM's migration.
	why    string
	misses int
	// leaseNonce hands the VM's disk leases to the destination at the
	// handover (an HA VM on shared storage; 0: none).
	leaseNonce uint64
}

// run carries out migration m (phase requested): the destination's
// agent starts the receiving VMM (preparing), this host's VMM sends the
// VM (running), and the VM's host flips (done); see conclude.
func (g *migrator) run(m store.Migration) {
	a := g.a
	ctx, cancel := context.WithTimeout(migrationCtx(a.ctx, m), migrateTimeout)
	defer cancel()
	name := m.VM
	f := &flight{m: m, ms: &api.MigrationStatus{State: api.MigrationRunning, To: m.Destination, Started: time.Now().UTC()}}
	rec, err := a.st.GetVM(ctx, name)
	if err == nil && rec.Desired.Host != a.cfg.HostName {
		err = fmt.Errorf("VM %s runs on %s", name, rec.Desired.Host)
	}
	if err == nil {
		f.p, err = a.liveProc(rec, "migrate", api.StateRunning)
	}
	if err == nil && !f.p.BeginMigration() {
		err = fmt.Errorf("cannot migrate VM %s: it is being migrated or stopped", name)
	}
	if err != nil {
		f.p = nil // not ours to release
		g.conclude(f, err)
		return
	}
	a.setMigration(name, f.p.PID, f.ms)
	g.conclude(f, g.carryOut(ctx, f, rec.Desired.Spec))
}

// attempt prepares the destination and sends the VM there once.
func (g *migrator) attempt(ctx context.Context, f *flight, s api.VMSpec) error {
	if f.m.CancelRequested {
		return errors.New("cancelled on request")
	}
	err := g.advance(ctx, f, store.MigrationPreparing)
	if err == nil {
		err = g.prepare(ctx, f, s)
	}
	if err == nil {
		err = g.advance(ctx, f, store.MigrationRunning)
	}
	if err == nil && f.m.CancelRequested {
		err = errors.New("cancelled on request")
	}
	if err != nil {
		return err
	}
	g.a.log.Info("migrating VM", "vm", f.m.VM, "to", f.m.Destination, "addr", f.m.Addr)
	return g.send(ctx, f)
}

// advance records that migration f is in phase now.
func (g *migrator) advance(ctx context.Context, f *flight, now store.MigrationPhase) error {
	m := f.m
	m.Phase = now
	saved, err := g.save(ctx, m, nil)
	if err != nil {
		return err
	}
	f.m = saved
	return nil
}

// prepare has the destination's agent start the VMM that receives the VM
// (with copies of its disks when they are not on shared storage) and
// notes its address and disks in f.m.
func (g *migrator) prepare(ctx context.Context, f *flight, s api.VMSpec) error {
	a := g.a
	var err error
	if f.peer, err = a.peer(ctx, f.m.Destination); err != nil {
		return err
	}
	mirror := f.m.Options.MirrorDisks != nil && *f.m.Options.MirrorDisks
	if f.m.Options.MirrorDisks == nil {
		// Disks not on a shared pool travel with the VM.
		shared, err := a.sharedStorage(ctx, s)
		if err != nil {
			return err
		}
		mirror = !shared
	}
	var sizes []int64
	if mirror {
		if sizes, err = diskSizes(s); err != nil {
			return err
		}
	}
	// A destination that dies while its agent starts the receiving VMM
	// never answers (no RST from a powered-off host): only its lease
	// says it is gone, and without this the record would stay live for
	// migrateTimeout, pinning the VM for every controller.
	ictx, stop := g.whileHostLives(ctx, f.m.Destination)
	if s.HA && !mirror {
		f.leaseNonce = disklease.NewNonce()
	}
	in, err := f.peer.Incoming(ictx, f.m.VM, api.IncomingRequest{Spec: s, From: a.cfg.HostName, MirrorDisks: sizes, LeaseNonce: f.leaseNonce})
	if gone := stop(); gone != nil {
		return gone
	}
	if err != nil {
		return err
	}
	f.m.Addr, f.m.Disks = in.Addr, in.Disks
	if len(in.Disks) != len(sizes) {
		return fmt.Errorf("the destination made %d disk copies for %d disks", len(in.Disks), len(sizes))
	}
	return nil
}

// send has the VMM send the VM to the destination VMM, watching it (see
// check) until it ends.
func (g *migrator) send(ctx context.Context, f *flight) error {
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
			g.check(ctx, f)
		}
	}()
	res, err := f.p.VMM.Migrate(ctx, vmmapi.MigrateRequest{To: f.m.Addr, MaxDowntimeMS: f.m.Options.MaxDowntimeMS,
		Bandwidth: f.m.Options.Bandwidth, AutoConverge: f.m.Options.AutoConverge, PostCopy: f.m.Options.PostCopy,
		MirrorDisks: len(f.m.Disks) > 0, LeaseTo: f.m.Destination + "/" + f.m.VM, LeaseNonce: f.leaseNonce})
	close(done)
	<-stopped
	if err != nil {
		return err
	}
	f.res = &res
	return nil
}

// check looks at a migration the VMM runs: it copies the VMM's progress
// into the VM's status and cancels the VMM's migration when the record
// asks for it or the destination's agent stopped answering. It returns
// the VMM's progress (State "" when the VMM did not answer).
func (g *migrator) check(ctx context.Context, f *flight) vmmapi.MigrateProgress {
	a := g.a
	pr, err := node.QuickCall(f.p.VMM.MigrateProgress)
	if err != nil {
		pr = vmmapi.MigrateProgress{}
	}
	if pr.State == vmmapi.MigrateRunning {
		ms := f.ms
		ms.Round, ms.BytesSent, ms.DirtyRate = pr.Round, pr.BytesSent, pr.DirtyRate
		ms.RemainingPages, ms.ExpectedDowntimeMS = pr.RemainingPages, pr.ExpectedDowntimeMS
		a.setMigration(f.m.VM, f.p.PID, ms)
	}
	if f.why != "" || pr.State != vmmapi.MigrateRunning || ctx.Err() != nil {
		return pr
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if cur, err := a.st.GetMigration(cctx, f.m.VM); err == nil && cur.CancelRequested && cur.Created.Equal(f.m.Created) {
		f.why = "cancelled on request"
	} else if f.peer != nil {
		if _, err := f.peer.Host(cctx); err != nil {
			if f.misses++; f.misses >= peerMisses {
				f.why = fmt.Sprintf("the agent of the destination %s stopped answering (%v)", f.m.Destination, err)
			}
		} else {
			f.misses = 0
		}
	}
	if f.why != "" {
		a.log.Warn("cancelling the migration", "vm", f.m.VM, "why", f.why)
		if err := f.p.VMM.CancelMigrate(cctx); err != nil {
			a.log.Warn("cancel the migration", "vm", f.m.VM, "err", err)
		}
	}
	return pr
}

// conclude ends migration f as err says: on failure the VM stays here,
// the destination VMM is removed and the record fails (or is cancelled);
// on success the record is done with the VM's host flipped (see finish).
// An agent that is going away leaves the record as it is, for the next
// agent to resume.
func (g *migrator) conclude(f *flight, err error) {
	a := g.a
	if a.ctx.Err() != nil {
		return
	}
	if err == nil || g.arrivedAnyway(f) {
		g.finish(f)
		return
	}
	if f.why != "" {
		err = fmt.Errorf("%s: %w", f.why, err)
	}
	if f.peer != nil {
		ctx, cancel := shortCtx()
		f.peer.CancelIncoming(ctx, f.m.VM)
		cancel()
	}
	if f.p != nil {
		f.p.EndMigration(false)
		f.ms.State, f.ms.Error = api.MigrationFailed, err.Error()
		a.setMigration(f.m.VM, f.p.PID, f.ms)
	}
	a.log.Warn("migration failed; the VM keeps running here", "vm", f.m.VM, "to", f.m.Destination, "err", err)
	g.recordFailure(f, err)
}

// recordFailure ends migration f's record failed (or cancelled), retried
// until etcd takes it: a record left live pins its VM for every
// controller (a host's evacuation waited for ever on one whose write was
// lost while the etcd leader died).
func (g *migrator) recordFailure(f *flight, why error) {
	a := g.a
	for {
		ctx, cancel := shortCtx()
		m := f.m
		cur, err := a.st.GetMigration(ctx, m.VM)
		if err == nil {
			if cur.Phase.Final() || !cur.Created.Equal(m.Created) {
				cancel()
				return // ended or replaced by someone else
			}
			m.Rev, m.CancelRequested = cur.Rev, cur.CancelRequested
			m.Phase, m.Error = store.MigrationFailed, why.Error()
			if m.CancelRequested {
				m.Phase = store.MigrationCancelled
			}
			_, err = g.save(ctx, m, nil)
		}
		cancel()
		if err == nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) {
			return
		}
		a.log.Warn("record the failed migration; retrying", "vm", f.m.VM, "err", err)
		select {
		case <-a.ctx.Done():
			return // the next agent ends it from the record (resume)
		case <-time.After(time.Second):
		}
	}
}

// finish ends a migration whose guest now runs on the destination: the
// record becomes done and the VM's host the destination, in one
// transaction (with its disks on the destination's copies when they were
// mirrored), retried until etcd takes it. Until then the source VMM's
// exit means nothing (its hold stays), so nothing here starts the VM
// again.
func (g *migrator) finish(f *flight) {
	a := g.a
	if f.p != nil {
		f.p.Update(func(s *node.State) { s.Migrated = true })
	}
	if f.res != nil {
		f.m.Result = &store.MigrationResult{Rounds: f.res.Rounds, BytesSent: f.res.BytesSent, DowntimeMS: f.res.DowntimeMS, TotalMS: f.res.TotalMS}
	}
	for try := 0; ; try++ {
		ctx, cancel := shortCtx()
		var err error
		if f.m.Phase != store.MigrationSwitchingOver {
			err = g.advance(ctx, f, store.MigrationSwitchingOver)
		}
		if err == nil {
			_, err = g.save(ctx, f.m, func(d *store.Desired) {
				if len(f.m.Disks) > 0 {
					mirroredSpec(&d.Spec, f.m.Disks)
				}
			})
		}
		cancel()
		if err == nil {
			break
		}
		if errors.Is(err, store.ErrNotOnSource) || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) {
			// Deleted, moved or ended by someone else: the guest is gone
			// from here all the same.
			a.log.Error("migrated VM could not be recorded on its destination", "vm", f.m.VM, "to", f.m.Destination, "err", err)
			break
		}
		a.log.Warn("migrated VM: its host in etcd could not be changed yet; retrying", "vm", f.m.VM, "err", err)
		select {
		case <-a.ctx.Done():
			return // the next agent finishes it from the record
		case <-time.After(time.Second):
		}
	}
	if f.p != nil {
		f.p.EndMigration(true)
	}
	a.poke()
	ms := f.ms
	ms.State, ms.Error, ms.RemainingPages, ms.ExpectedDowntimeMS, ms.DirtyRate = api.MigrationCompleted, "", 0, 0, 0
	if r := f.m.Result; r != nil {
		ms.Round, ms.BytesSent, ms.DowntimeMS = r.Rounds, r.BytesSent, r.DowntimeMS
	}
	a.log.Info("VM migrated", "vm", f.m.VM, "to", f.m.Destination, "downtime_ms", ms.DowntimeMS)
	g.reportOnDestination(f.m.VM, f.m.Destination, ms)
}

// reportOnDestination adds the completed migration's figures to the VM's
// status once its destination reports it running.
func (g *migrator) reportOnDestination(name, dest string, ms *api.MigrationStatus) {
	a := g.a
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && a.ctx.Err() == nil; time.Sleep(50 * time.Millisecond) {
		ctx, cancel := shortCtx()
		cur, err := a.st.GetVM(ctx, name)
		if err == nil && cur.Status != nil && cur.Status.Host == dest && cur.Status.State == api.StateRunning {
			if cur.Status.Migration != nil && cur.Status.Migration.State == api.MigrationCompleted {
				cancel()
				return
			}
			st := *cur.Status
			m := *ms
			st.Migration = &m
			err = a.st.ReplaceStatus(ctx, name, st, cur.StatusRev)
			cancel()
			if err == nil {
				return
			}
			continue
		}
		cancel()
		if errors.Is(err, store.ErrNotFound) {
			return
		}
	}
}

// hostCheckEvery is how often whileHostLives looks for a host's lease.
const hostCheckEvery = time.Second

// whileHostLives returns a context that ends with ctx or once host's
// lease is gone from etcd, and a stop function that ends the watch and
// says (as an error) whether the host was gone.
func (g *migrator) whileHostLives(ctx context.Context, host string) (context.Context, func() error) {
	cctx, cancel := context.WithCancel(ctx)
	var gone error
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(hostCheckEvery)
		defer t.Stop()
		for {
			select {
			case <-cctx.Done():
				return
			case <-t.C:
			}
			qctx, qcancel := context.WithTimeout(cctx, 2*time.Second)
			hosts, err := g.a.st.Hosts(qctx)
			qcancel()
			if err != nil {
				continue // etcd unsure: no news is not death
			}
			if !slices.ContainsFunc(hosts, func(h api.Host) bool { return h.Name == host }) {
				gone = fmt.Errorf("the destination host %s went away (its lease in etcd ended)", host)
				cancel()
				return
			}
		}
	}()
	return cctx, func() error {
		cancel()
		<-done
		return gone
	}
}

// arrivedAnyway reports whether the guest of failed migration f runs on
// the destination all the same: the VMM here ended while it was sending
// (killed, crashed) and may have given the handover's GO before it did,
// without saying so. Only the destination knows: restarting the VM here
// or removing the destination's VMM on a guess could run two copies or
// none. While the destination's agent does not answer, its host's lease
// decides: once it ended, nothing of that host runs the VM any longer
// (an HA VM's VMMs fence themselves before it ends).
func (g *migrator) arrivedAnyway(f *flight) bool {
	if f.p == nil || f.peer == nil || f.m.Addr == "" || f.m.Phase != store.MigrationRunning {
		return false // the VMM was never told to send
	}
	select {
	case <-f.p.Done():
	case <-time.After(500 * time.Millisecond):
		return false // alive: it failed the migration itself and keeps the guest
	}
	if ok, _ := g.vmmMigrated(f.p); ok {
		return true
	}
	ctx, cancel := context.WithTimeout(g.a.ctx, 2*time.Minute)
	defer cancel()
	lctx, stop := g.whileHostLives(ctx, f.m.Destination)
	defer stop()
	for {
		qctx, qcancel := context.WithTimeout(lctx, 5*time.Second)
		in, err := f.peer.IncomingState(qctx, f.m.VM)
		qcancel()
		if err == nil {
			g.a.log.Warn("the VMM ended while sending the VM; the destination says", "vm", f.m.VM, "to", f.m.Destination, "state", in.State)
			return in.State == api.IncomingArrived
		}
		select {
		case <-lctx.Done():
			g.a.log.Warn("the VMM ended while sending the VM and the destination cannot say whether it arrived", "vm", f.m.VM, "to", f.m.Destination, "err", err)
			return false
		case <-time.After(time.Second):
		}
	}
}
