// Package maintenance empties hosts that enter maintenance mode, as
// vSphere's maintenance mode and Nomad's drain do: the cluster's leader
// runs its Controller, which plans each evacuation with the pure planner
// (balance.Evacuate: placement picks every target, affinity groups move
// together) and live-migrates the VMs off, a few at a time per host. VMs
// that cannot move are recorded with the reason on the host's settings.
package maintenance

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/govisor/govisor/internal/cluster/balance"
	"github.com/govisor/govisor/internal/cluster/placement"
	"github.com/govisor/govisor/internal/cluster/store"
	"github.com/govisor/govisor/internal/cluster/view"
)

const (
	// resync bounds how long a missed change goes unnoticed.
	resync = 2 * time.Second
	// retryAfter is how long a VM whose migration failed waits before the
	// next try.
	retryAfter = 30 * time.Second
	// DefaultMaxPerHost is how many live migrations leave one host at once.
	DefaultMaxPerHost = 2
)

// Migrate live-migrates VM vm from host from to host to, returning once it
// runs there (or failed).
type Migrate func(ctx context.Context, vm, from, to string) error

// Controller evacuates hosts in maintenance. Run it on the leader only.
type Controller struct {
	St      *store.Store
	Migrate Migrate
	Log     *slog.Logger
	// MaxPerHost bounds the migrations leaving one host at once (default
	// DefaultMaxPerHost).
	MaxPerHost int
	// Moved, if set, is called after each VM an evacuation moved.
	Moved func(m balance.Move)

	mu       sync.Mutex
	inFlight map[string]string    // VM -> the host it leaves
	failed   map[string]time.Time // VM -> when its migration failed
	lastErr  map[string]string    // VM -> why
	wg       sync.WaitGroup
}

// Run evacuates until ctx ends (the leadership was lost); migrations under
// way are waited for.
func (c *Controller) Run(ctx context.Context) {
	c.init()
	defer c.wg.Wait()
	t := time.NewTicker(resync)
	defer t.Stop()
	for ctx.Err() == nil {
		if err := c.Pass(ctx); err != nil && ctx.Err() == nil {
			c.log().Warn("maintenance pass", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

func (c *Controller) init() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inFlight == nil {
		c.inFlight, c.failed, c.lastErr = map[string]string{}, map[string]time.Time{}, map[string]string{}
	}
}

func (c *Controller) log() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log
}

// Pass plans every host in maintenance once and starts the migrations it
// may.
func (c *Controller) Pass(ctx context.Context) error {
	c.init()
	snap, err := c.St.Snapshot(ctx)
	if err != nil {
		return err
	}
	confs := snap.Confs
	var draining []string
	for h, conf := range confs {
		if conf.Maintenance {
			draining = append(draining, h)
		}
	}
	if len(draining) == 0 {
		return nil
	}
	slices.Sort(draining)
	hosts, pools := view.InMaintenance(snap.Hosts, snap.InMaintenance), snap.Pools
	var vms []view.VM
	migrating := map[string]bool{}
	for _, r := range snap.VMs {
		vms = append(vms, view.VM{Spec: r.Desired.Spec, Power: r.Desired.Power, Host: r.Desired.Host})
		// Also one a previous leader started: its source agent carries it
		// out whoever asked. The record decides, not the status (its
		// last write may have been lost during an etcd election).
		migrating[r.Desired.Spec.Name] = r.Migration != nil
	}
	pc := view.Cluster(hosts, pools, vms, nil)
	bc := balance.Cluster{Hosts: pc.Hosts, Pools: pc.Pools}
	c.mu.Lock()
	for _, v := range pc.VMs {
		bv := balance.VM{VM: v, Mirror: view.LocalDisks(v, pools)}
		if _, moving := c.inFlight[v.Name]; moving || migrating[v.Name] {
			bv.Pinned = "being live-migrated"
		}
		bc.VMs = append(bc.VMs, bv)
	}
	c.mu.Unlock()
	for _, h := range draining {
		if err := c.evacuate(ctx, bc, h, confs[h]); err != nil {
			c.log().Warn("evacuate host", "host", h, "err", err)
		}
	}
	return nil
}

// evacuate starts the migrations off host that the plan and the limits
// allow, and records what is stuck.
func (c *Controller) evacuate(ctx context.Context, bc balance.Cluster, host string, conf store.HostConfig) error {
	if i := slices.IndexFunc(bc.Hosts, func(h placement.Host) bool { return h.Name == host }); i < 0 || bc.Hosts[i].State == placement.HostUnreachable {
		return nil // its agent is gone: nothing can be live-migrated off it
	}
	e, err := balance.Evacuate(bc, host, balance.Options{})
	if err != nil {
		return err
	}
	limit := c.MaxPerHost
	if limit <= 0 {
		limit = DefaultMaxPerHost
	}
	var stuck []string
	c.mu.Lock()
	n := 0
	for _, vm := range c.inFlight {
		if vm == host {
			n++
		}
	}
	for _, s := range e.Stuck {
		if s.Reason == "pinned: being live-migrated" {
			continue
		}
		stuck = append(stuck, s.VM+": "+s.Reason)
	}
	for _, m := range e.Moves {
		if t, ok := c.failed[m.VM]; ok && time.Since(t) < retryAfter {
			stuck = append(stuck, m.VM+": "+c.lastErr[m.VM]+" (trying again)")
			continue
		}
		if n >= limit {
			continue
		}
		n++
		c.inFlight[m.VM] = host
		c.wg.Add(1)
		go c.move(ctx, m)
	}
	c.mu.Unlock()
	slices.Sort(stuck)
	if !slices.Equal(stuck, conf.Stuck) {
		return c.St.SetStuck(ctx, host, stuck)
	}
	return nil
}

// move runs one migration of an evacuation.
func (c *Controller) move(ctx context.Context, m balance.Move) {
	defer c.wg.Done()
	c.log().Info("evacuating VM", "vm", m.VM, "from", m.From, "to", m.To)
	err := c.Migrate(ctx, m.VM, m.From, m.To)
	c.mu.Lock()
	delete(c.inFlight, m.VM)
	if err != nil {
		c.failed[m.VM], c.lastErr[m.VM] = time.Now(), fmt.Sprintf("migration to %s failed: %v", m.To, err)
	} else {
		delete(c.failed, m.VM)
		delete(c.lastErr, m.VM)
	}
	c.mu.Unlock()
	if err != nil {
		c.log().Warn("evacuation migration failed", "vm", m.VM, "to", m.To, "err", err)
		return
	}
	if c.Moved != nil {
		c.Moved(m)
	}
}
