package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/balance"
	"github.com/govisor/govisor/internal/cluster/ha"
	"github.com/govisor/govisor/internal/cluster/maintenance"
	"github.com/govisor/govisor/internal/cluster/store"
)

// DefaultHostLeaseTTL is the host lease TTL without Config.HostLeaseTTL:
// with keep-alives every fifth of it, a dead host is seen within 4-5 s,
// which leaves an HA restart room to finish within 10 s of the failure.
const DefaultHostLeaseTTL = 5 * time.Second

// leaderLoop campaigns for the cluster's leadership and, while this agent
// leads, runs the cluster's controllers; it campaigns again when the
// leadership is lost, until the agent stops.
func (a *Agent) leaderLoop() {
	defer a.loopWG.Done()
	for a.ctx.Err() == nil {
		l, err := a.st.Campaign(a.ctx, a.cfg.HostName, a.cfg.HostLeaseTTL)
		if err != nil {
			if a.ctx.Err() == nil {
				a.log.Warn("campaign for the cluster's leadership", "err", err)
				select {
				case <-a.ctx.Done():
				case <-time.After(time.Second):
				}
			}
			continue
		}
		a.log.Info("leading the cluster", "host", a.cfg.HostName)
		a.leading.Set(1)
		ctx, cancel := context.WithCancel(a.ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			var wg sync.WaitGroup
			wg.Add(4)
			go func() {
				defer wg.Done()
				a.watchHostStates(ctx)
			}()
			go func() {
				defer wg.Done()
				a.balancer().Run(ctx)
			}()
			go func() {
				defer wg.Done()
				c := &ha.Controller{St: a.st, Log: a.log, Leases: a.leaseObs,
					Restarted: func(r ha.Restart) {
						a.haRestarts.WithLabelValues(r.From, r.To).Inc()
						a.event(api.ClusterEvent{Kind: api.EventHARestart, VM: r.VM, From: r.From, Host: r.To,
							Reason: fmt.Sprintf("host %s died; HA restarts VM %s on %s", r.From, r.VM, r.To)})
					},
					Waits: func(w ha.Waiting, why string) {
						a.event(api.ClusterEvent{Kind: api.EventHAWaiting, VM: w.VM, From: w.From, Reason: why})
					}}
				c.Run(ctx)
			}()
			go func() {
				defer wg.Done()
				c := &maintenance.Controller{St: a.st, Log: a.log, Migrate: a.migrateFor,
					Moved: func(m balance.Move) {
						a.migrations.WithLabelValues("maintenance").Inc()
						a.event(api.ClusterEvent{Kind: api.EventEvacuation, VM: m.VM, From: m.From, Host: m.To,
							Reason: fmt.Sprintf("host %s enters maintenance; VM %s live-migrated to %s", m.From, m.VM, m.To)})
					}}
				c.Run(ctx)
			}()
			wg.Wait()
		}()
		select {
		case <-a.ctx.Done():
		case <-l.Done():
			a.log.Warn("lost the cluster's leadership", "host", a.cfg.HostName)
		}
		cancel()
		<-done
		a.leading.Set(0)
		a.hostStates.Reset()
		a.imbalance.Set(0)
		// A stopping agent hands the leadership on at once, not after the
		// session's TTL.
		rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
		l.Resign(rctx)
		rcancel()
	}
}

// migrateFor live-migrates vm from host from to host to for a controller:
// it records the migration (see RequestMigration), which the source host's
// agent carries out, and waits for the record to end. A leader that goes
// away meanwhile leaves the migration to go on; the next one finds the VM
// moved, or the record still under way (store.ErrMigrating).
func (a *Agent) migrateFor(ctx context.Context, vm, from, to string) error {
	m, err := a.mig.request(ctx, vm, from, api.MigrateRequest{Host: to}, "leader "+a.cfg.HostName)
	if err != nil {
		return err
	}
	end, err := a.mig.wait(ctx, m)
	if err != nil {
		return err
	}
	if end.Phase != store.MigrationDone {
		return fmt.Errorf("%w: migration of %s from %s to %s %s: %s", ErrVMM, vm, from, to, end.Phase, end.Error)
	}
	return nil
}

// watchHostStates keeps the hosts-by-state gauge while this agent leads,
// from the host list the API shows (its states merge leases, maintenance
// and the hosts VMs name that are gone).
func (a *Agent) watchHostStates(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	var seen map[string]string // host -> state, as this leader last saw it
	for {
		if hl, err := a.Hosts(ctx); err == nil {
			n := map[string]int{}
			now := map[string]string{}
			for _, h := range hl.Items {
				n[h.State]++
				now[h.Name] = h.State
				// A new leader knows no earlier states: it reports changes
				// it sees itself, not what it finds.
				if was, ok := seen[h.Name]; seen != nil && was != h.State {
					why := fmt.Sprintf("host %s is %s", h.Name, h.State)
					if ok {
						why = fmt.Sprintf("host %s went from %s to %s", h.Name, was, h.State)
					}
					a.event(api.ClusterEvent{Kind: api.EventHostState, Host: h.Name, Reason: why})
				}
			}
			seen = now
			if err := a.st.PruneEvents(ctx, store.KeepEvents); err != nil && ctx.Err() == nil {
				a.log.Warn("prune cluster events", "err", err)
			}
			for _, s := range api.HostStates {
				a.hostStates.WithLabelValues(s).Set(float64(n[s]))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// event records a cluster event decided by this agent; a failure is only
// logged (the decision stands).
func (a *Agent) event(ev api.ClusterEvent) {
	ev.By = a.cfg.HostName
	ctx, cancel := context.WithTimeout(a.ctx, 5*time.Second)
	defer cancel()
	if err := a.st.PutEvent(ctx, a.cfg.HostName, ev); err != nil && a.ctx.Err() == nil {
		a.log.Warn("record cluster event", "kind", ev.Kind, "err", err)
	}
	a.log.Info("cluster event", "kind", ev.Kind, "vm", ev.VM, "host", ev.Host, "reason", ev.Reason)
}

// ClusterEvents returns the newest limit cluster events (service.Hosts).
func (a *Agent) ClusterEvents(ctx context.Context, limit int) ([]api.ClusterEvent, error) {
	return a.st.ClusterEvents(ctx, limit)
}
