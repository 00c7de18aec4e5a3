package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/govisor/govisor/api"
)

// ErrHostLease is returned by ClaimStart when this host's lease is not the
// one its record is on (it expired, or none was confirmed yet): the host may
// already count as dead, and its HA VMs may be restarting elsewhere.
var ErrHostLease = errors.New("store: this host's lease is not current")

func hostKey(name string) string { return hostPrefix + name }

// ClaimStart records st as a VM's status before its host starts it, only if
// the VM's definition is still at specRev and the host's record is still on
// lease l. The HA controller moves a VM only once its host's record is gone
// (MoveVM), so of a claim and a move only one can win: a host never starts
// a VM that another host was told to restart, and the VMM it starts dies
// by its fence deadline before the claimed lease can expire.
func (s *Store) ClaimStart(ctx context.Context, name string, specRev int64, l *HostLease, st api.VMStatus) error {
	id := l.leaseID()
	if id == 0 {
		return fmt.Errorf("%w: %s has no lease now", ErrHostLease, l.h.Name)
	}
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("store: encode status of %s: %w", name, err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(specKey(name)), "=", specRev),
			clientv3.Compare(clientv3.LeaseValue(hostKey(l.h.Name)), "=", id)).
		Then(clientv3.OpPut(statusKey(name), string(b))).
		Else(clientv3.OpGet(hostKey(l.h.Name))).
		Commit()
	if err != nil {
		return s.fail("claim the start of "+name, err)
	}
	if resp.Succeeded {
		return nil
	}
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 0 || clientv3.LeaseID(kvs[0].Lease) != id {
		return fmt.Errorf("%w: %s", ErrHostLease, l.h.Name)
	}
	return fmt.Errorf("%w: %s changed", ErrConflict, name)
}

// MoveVM gives a VM to host to, with status st, only if its definition is
// still at specRev and host from has no record (its lease expired, so its
// self-fencing VMMs have stopped). ErrConflict when either changed.
func (s *Store) MoveVM(ctx context.Context, d Desired, specRev int64, from string, st api.VMStatus) error {
	name := d.Spec.Name
	spec, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("store: encode %s: %w", name, err)
	}
	status, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("store: encode status of %s: %w", name, err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(specKey(name)), "=", specRev),
			clientv3.Compare(clientv3.CreateRevision(hostKey(from)), "=", 0)).
		Then(clientv3.OpPut(specKey(name), string(spec)), clientv3.OpPut(statusKey(name), string(status))).
		Commit()
	if err != nil {
		return s.fail("move "+name+" to "+d.Host, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%w: %s or host %s changed", ErrConflict, name, from)
	}
	return nil
}

// PutStatusIfSpec records a VM's observed state only if its definition is
// still at specRev: a host whose VM was moved away meanwhile must not
// overwrite the new host's status. ErrConflict otherwise.
func (s *Store) PutStatusIfSpec(ctx context.Context, name string, st api.VMStatus, specRev int64) error {
	return s.putStatusIf(ctx, name, st, name+" changed", clientv3.Compare(clientv3.ModRevision(specKey(name)), "=", specRev))
}

// WatchHosts signals on the returned channel when a host record changes
// (a host registered, or its lease expired) until ctx ends; the channel
// closes when the watch ends. Signals coalesce: callers re-read Hosts.
func (s *Store) WatchHosts(ctx context.Context) <-chan struct{} {
	out := make(chan struct{}, 1)
	wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), hostPrefix, clientv3.WithPrefix())
	go func() {
		defer close(out)
		for resp := range wch {
			if resp.Err() != nil {
				return
			}
			select {
			case out <- struct{}{}:
			default:
			}
		}
	}()
	return out
}
