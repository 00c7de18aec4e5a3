package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/govisor/govisor/api"
)

// HostLease is this host's record under /govisor/hosts/<name>, on an etcd
// lease that it keeps alive: a dead host's record expires with the lease.
type HostLease struct {
	s   *Store
	h   api.Host
	ttl time.Duration

	mu        sync.Mutex
	confirmed time.Time        // see ConfirmedUntil
	id        clientv3.LeaseID // the lease the record is on now (0: none)
}

// RegisterHost writes h with a lease of ttl and keeps it alive until ctx
// ends. A lease can also be lost while the host lives: its keep-alives
// reached no leader for ttl (they went to a member that lost power, or this
// host was cut off from the quorum). The host then registers again with a
// new lease, as soon as etcd answers.
func (s *Store) RegisterHost(ctx context.Context, h api.Host, ttl time.Duration) (*HostLease, error) {
	if ttl < 2*time.Second {
		return nil, fmt.Errorf("store: host lease TTL %v: give at least 2s", ttl)
	}
	l := &HostLease{s: s, h: h, ttl: ttl}
	id, err := l.register(ctx)
	if err != nil {
		return nil, err
	}
	go l.keep(ctx, id)
	return l, nil
}

// ConfirmedUntil is a time before which etcd cannot have expired this
// host's lease: the moment the last answered keep-alive (or the grant) was
// sent, plus the TTL etcd answered with. Until then no other host may see
// this one as dead; VMMs that must not outlive the lease (self-fencing)
// stop before it. The zero time when nothing was confirmed.
func (l *HostLease) ConfirmedUntil() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.confirmed
}

// TTL is the lease's time to live.
func (l *HostLease) TTL() time.Duration { return l.ttl }

// leaseID is the lease the host's record is on now (0 while it has none).
func (l *HostLease) leaseID() clientv3.LeaseID {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.id
}

func (l *HostLease) setLease(id clientv3.LeaseID) {
	l.mu.Lock()
	l.id = id
	l.mu.Unlock()
}

func (l *HostLease) confirm(sent time.Time, ttlSeconds int64) {
	until := sent.Add(time.Duration(ttlSeconds) * time.Second)
	l.mu.Lock()
	if until.After(l.confirmed) {
		l.confirmed = until
	}
	l.mu.Unlock()
}

// register writes the host's record on a new lease.
func (l *HostLease) register(ctx context.Context) (clientv3.LeaseID, error) {
	b, err := json.Marshal(l.h)
	if err != nil {
		return 0, fmt.Errorf("store: encode host %s: %w", l.h.Name, err)
	}
	rctx, cancel := l.s.bound(ctx)
	defer cancel()
	sent := time.Now()
	lease, err := l.s.cli.Grant(rctx, int64(l.ttl/time.Second))
	if err != nil {
		return 0, l.s.fail("lease for host "+l.h.Name, err)
	}
	if _, err := l.s.cli.Put(rctx, hostPrefix+l.h.Name, string(b), clientv3.WithLease(lease.ID)); err != nil {
		return 0, l.s.fail("register host "+l.h.Name, err)
	}
	l.confirm(sent, lease.TTL)
	l.setLease(lease.ID)
	return lease.ID, nil
}

// keep renews the lease every fifth of its TTL, one keep-alive at a time
// (so that each answer's send time is known), and registers again when
// etcd no longer knows the lease. After ctx ends the lease is left to
// expire, not revoked: an agent that restarts (its VMMs running on) must
// not look like a dead host to the others.
func (l *HostLease) keep(ctx context.Context, id clientv3.LeaseID) {
	every := max(l.ttl/5, 200*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.s.cli.Ctx().Done():
			return
		case <-t.C:
		}
		if id == 0 {
			id, _ = l.register(ctx)
			continue
		}
		kctx, cancel := context.WithTimeout(ctx, l.ttl/2)
		sent := time.Now()
		resp, err := l.s.cli.KeepAliveOnce(kctx, id)
		cancel()
		switch {
		case err == nil && resp.TTL > 0:
			l.confirm(sent, resp.TTL)
		case errors.Is(err, rpctypes.ErrLeaseNotFound) || (err == nil && resp.TTL <= 0):
			id = 0 // expired: register again at the next tick
			l.setLease(0)
		}
	}
}
