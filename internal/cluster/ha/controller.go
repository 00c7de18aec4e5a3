package ha

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/placement"
	"github.com/govisor/govisor/internal/cluster/store"
	"github.com/govisor/govisor/internal/cluster/view"
	"github.com/govisor/govisor/internal/disklease"
)

// resync is how often the controller looks at the whole cluster besides
// the host and VM changes it watches (a level-triggered reconciler, as
// Kubernetes controllers are: a missed event costs at most this long).
const resync = 2 * time.Second

// Controller restarts the HA VMs of dead hosts. Run it on the cluster's
// leader only.
type Controller struct {
	St        *store.Store
	Placement placement.Config
	Log       *slog.Logger
	// Restarted, if set, is called after each VM moved to a new host.
	Restarted func(r Restart)
	// Waits, if set, is called when an HA VM of a dead host starts
	// waiting for a host it fits on (once per reason), with the reason.
	Waits func(w Waiting, why string)
	// Leases, if set, is what ObserveLeases saw of the HA VMs' disk
	// leases, so that a restart passes on how long a dead holder's lease
	// has been silent (store.Desired.LeaseSeen). Every agent observes all
	// along, not only the leader: a leader that took over from a dead one
	// has the history too.
	Leases *disklease.Observer
}

// LeaseEvery is how often Run reads the HA VMs' disk leases: the holder
// renews every second, so a silent one is seen within about this long.
const LeaseEvery = time.Second

// Run acts on every change of the hosts or VMs, and every resync, until
// ctx ends (the leadership was lost, or the agent stops).
func (c *Controller) Run(ctx context.Context) {
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(ctx)
		hosts := c.St.WatchHosts(wctx)
		vms := c.St.Watch(wctx, 0)
		t := time.NewTicker(resync)
		for open, pass := true, true; open && ctx.Err() == nil; {
			if pass {
				if err := c.Pass(ctx); err != nil {
					log.Warn("HA pass", "err", err)
				}
			}
			select {
			case <-ctx.Done():
			case _, open = <-hosts:
				pass = true
			case ev, ok := <-vms:
				// Plan reads definitions only; statuses change far more often.
				open, pass = ok, ev.Kind == "spec"
			case <-t.C:
				pass = true
			}
		}
		t.Stop()
		cancel()
		select { // a watch ended (etcd unreachable): try again shortly
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// Pass reads the cluster once and restarts what Plan says. A VM whose
// definition or host changed meanwhile is left to the next pass.
func (c *Controller) Pass(ctx context.Context) error {
	cs, err := c.St.Snapshot(ctx)
	if err != nil {
		return err
	}
	snap := Snapshot{Hosts: view.InMaintenance(cs.Hosts, cs.InMaintenance), Pools: cs.Pools}
	byName := map[string]store.Record{}
	for _, r := range cs.VMs {
		snap.VMs = append(snap.VMs, VM{Spec: r.Desired.Spec, Power: r.Desired.Power, Host: r.Desired.Host})
		byName[r.Desired.Spec.Name] = r
	}
	d, err := Plan(snap, c.Placement)
	if err != nil {
		return err
	}
	var errs []error
	for _, rs := range d.Restarts {
		r := byName[rs.VM]
		nd := r.Desired
		nd.Host = rs.To
		nd.LeaseSeen = c.leaseSeen(nd.Spec)
		st := api.VMStatus{State: api.StatePending, Host: rs.To, Since: time.Now().UTC(),
			ExitReason: fmt.Sprintf("HA restart: host %s failed (its lease expired); starting on %s", rs.From, rs.To)}
		if r.Status != nil {
			st.Restarts = r.Status.Restarts + 1
		}
		err := c.St.MoveVM(ctx, nd, r.SpecRev, rs.From, st)
		switch {
		case err == nil:
			if c.Log != nil {
				c.Log.Info("HA restart", "vm", rs.VM, "from", rs.From, "to", rs.To)
			}
			if c.Restarted != nil {
				c.Restarted(rs)
			}
		case errors.Is(err, store.ErrConflict):
			// Changed meanwhile, or the host came back: the next pass decides.
		default:
			errs = append(errs, err)
		}
	}
	for _, w := range d.Waiting {
		r := byName[w.VM]
		why := fmt.Sprintf("HA restart waits: host %s failed and %s", w.From, w.Reason)
		if r.Status != nil && r.Status.ExitReason == why {
			continue // said already
		}
		st := api.VMStatus{State: api.StateFailed, Host: w.From, Since: time.Now().UTC(), ExitReason: why}
		if r.Status != nil {
			st.Restarts = r.Status.Restarts
		}
		err := c.St.PutStatusIfSpec(ctx, w.VM, st, r.SpecRev)
		if err != nil && !errors.Is(err, store.ErrConflict) {
			errs = append(errs, err)
		}
		if err == nil && c.Waits != nil {
			c.Waits(w, why)
		}
	}
	return errors.Join(errs...)
}

// ObserveLeases reads the disk leases of the HA VMs into o every
// LeaseEvery until ctx ends. Run it in a goroutine of its own: storage
// that hangs must not stall anything else.
func ObserveLeases(ctx context.Context, st *store.Store, o *disklease.Observer) {
	t := time.NewTicker(LeaseEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		recs, _, err := st.ListVMs(ctx)
		if err != nil {
			continue
		}
		want := map[string]bool{}
		for _, r := range recs {
			for _, p := range leasedDisks(r.Desired.Spec) {
				want[p] = true
				o.Observe(p) // a disk this host cannot read is just not seen
			}
		}
		o.Keep(func(p string) bool { return want[p] })
	}
}

// leaseSeen is what the observer saw of s's disk leases, by path.
func (c *Controller) leaseSeen(s api.VMSpec) map[string]store.LeaseSeen {
	if c.Leases == nil {
		return nil
	}
	var out map[string]store.LeaseSeen
	for _, p := range leasedDisks(s) {
		if seen, ok := c.Leases.Seen(p); ok {
			if out == nil {
				out = map[string]store.LeaseSeen{}
			}
			out[p] = store.LeaseSeen{Sum: seen.Sum, ForMS: seen.For.Milliseconds()}
		}
	}
	return out
}

// leasedDisks are the disks whose leases the VMM of s holds: those an HA
// VM's guest writes (node.leaseDisks).
func leasedDisks(s api.VMSpec) []string {
	if !s.HA {
		return nil
	}
	var out []string
	for _, d := range s.Disks {
		if !d.ReadOnly && d.Path != "" {
			out = append(out, d.Path)
		}
	}
	return out
}
