package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/store"
	"github.com/govisor/govisor/internal/fence"
)

// Self-fencing of HA VMs: each HA VM's VMM runs a watchdog (package fence)
// that stops the guest unless the agent moves its deadline on. The
// deadline is always fenceMargin before the moment etcd could expire this
// host's lease (HostLease.ConfirmedUntil), so by the time other hosts see
// this one as dead and restart its HA VMs, the VMMs here have stopped
// themselves, even if this agent hung or was cut off.
const (
	// fenceMargin covers the VMM's timer firing late and the clock rate
	// between this host and etcd's leader.
	fenceMargin = time.Second
	// minFenceTTL is the least time an HA VMM is started with: a host
	// whose lease is about to run out does not start HA VMs.
	minFenceTTL = time.Second
	// feedEvery is how often the agent moves its HA VMMs' deadlines on.
	feedEvery = 500 * time.Millisecond
)

// SetHostLease gives the node this host's etcd lease: HA VMs start only
// on it (store.ClaimStart) and their watchdogs are fed from it. Call it
// before Start; without it the node starts no HA VM.
func (n *Node) SetHostLease(l *store.HostLease) {
	n.mu.Lock()
	n.lease = l
	n.mu.Unlock()
}

// fenceTTL is how long an HA VMM may run from now without news from etcd:
// until fenceMargin before this host's lease could expire (<= 0: not at all).
func fenceTTL(l *store.HostLease) time.Duration {
	if l == nil {
		return 0
	}
	return time.Until(l.ConfirmedUntil()) - fenceMargin
}

// claimHAStart makes sure this host may start the HA VM of r now: its lease
// leaves the VMM at least minFenceTTL, and etcd records the start on that
// lease and on the definition r was read at (so that the HA controller,
// which moves VMs only off expired hosts, cannot have moved it). It returns
// the watchdog's deadline (CLOCK_MONOTONIC, see fence.MonoNow); n.mu is
// held.
func (n *Node) claimHAStart(r store.Record) (int64, error) {
	ttl := fenceTTL(n.lease)
	if ttl < minFenceTTL {
		return 0, fmt.Errorf("this host's etcd lease is not confirmed for long enough (%v left) to run an HA VM", ttl+fenceMargin)
	}
	st := api.VMStatus{State: api.StatePending, Host: n.cfg.HostName, Since: time.Now().UTC(), ExitReason: "starting"}
	if r.Status != nil {
		st.Restarts = r.Status.Restarts
	}
	ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
	defer cancel()
	if err := n.st.ClaimStart(ctx, r.Desired.Spec.Name, r.SpecRev, n.lease, st); err != nil {
		return 0, err
	}
	// The claim took time: the deadline counts from the lease, not the call.
	if ttl = fenceTTL(n.lease); ttl < minFenceTTL {
		return 0, errors.New("this host's etcd lease ran short while claiming the start")
	}
	return fence.MonoDeadline(ttl), nil
}

// feedCallTimeout bounds one feed of a VMM's watchdog: a VMM slow to
// answer (a loaded host) is fed on the next tick; the deadline keeps the
// margin either way.
const feedCallTimeout = 2 * time.Second

// feedLoop moves the deadline of every HA VMM on, from this host's lease,
// until the node stops. Each VMM is fed on its own (one call in flight per
// VMM), so a slow one delays no other. A VMM whose deadline is not moved
// (the lease not confirmed, this agent gone) stops its guest by itself.
func (n *Node) feedLoop() {
	defer n.loopWG.Done()
	t := time.NewTicker(feedEvery)
	defer t.Stop()
	var mu sync.Mutex
	feeding := map[*Proc]bool{}
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		n.mu.Lock()
		l := n.lease
		var ha []*Proc
		for _, p := range n.procs {
			if p.HA && p.Alive() {
				ha = append(ha, p)
			}
		}
		n.mu.Unlock()
		for _, p := range ha {
			mu.Lock()
			busy := feeding[p]
			feeding[p] = true
			mu.Unlock()
			if busy {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { mu.Lock(); delete(feeding, p); mu.Unlock() }()
				ttl := fenceTTL(l)
				if ttl <= 0 {
					return // not confirmed: let the watchdog run out
				}
				// An absolute deadline: however late the VMM reads it, it
				// is the moment the lease allows, never later.
				deadline := fence.MonoDeadline(ttl)
				ctx, cancel := context.WithTimeout(n.ctx, min(ttl, feedCallTimeout))
				defer cancel()
				if _, err := p.VMM.FenceUntil(ctx, deadline); err != nil && p.Alive() {
					n.log.Warn("feed the fence watchdog", "vm", p.Name, "pid", p.PID, "err", err)
				}
			}()
		}
	}
}
