package store

import (
	"context"
	"encoding/json"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/govisor/govisor/api"
)

// Event is one change to a VM's keys.
type Event struct {
	VM       string
	Kind     string // "spec" or "status"
	Deleted  bool
	Revision int64
	Desired  *Desired      // for a put of the spec
	Status   *api.VMStatus // for a put of the status
}

// Watch streams changes to VM keys after revision fromRev (0: from now)
// until ctx ends. The channel closes when the watch ends; Err on the last
// event is not reported: callers re-list and watch again.
func (s *Store) Watch(ctx context.Context, fromRev int64) <-chan Event {
	out := make(chan Event, 64)
	opts := []clientv3.OpOption{clientv3.WithPrefix()}
	if fromRev > 0 {
		opts = append(opts, clientv3.WithRev(fromRev+1))
	}
	wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), vmPrefix, opts...)
	go func() {
		defer close(out)
		for resp := range wch {
			if resp.Err() != nil {
				return
			}
			for _, ev := range resp.Events {
				name, kind, ok := splitKey(string(ev.Kv.Key))
				if !ok {
					continue
				}
				e := Event{VM: name, Kind: kind, Deleted: ev.Type == clientv3.EventTypeDelete, Revision: ev.Kv.ModRevision}
				if !e.Deleted {
					switch kind {
					case "spec":
						var d Desired
						if json.Unmarshal(ev.Kv.Value, &d) == nil {
							e.Desired = &d
						}
					case "status":
						var st api.VMStatus
						if json.Unmarshal(ev.Kv.Value, &st) == nil {
							e.Status = &st
						}
					}
				}
				select {
				case out <- e:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// Hosts lists the registered (live) hosts.
func (s *Store) Hosts(ctx context.Context) ([]api.Host, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, hostPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, s.fail("list hosts", err)
	}
	var hs []api.Host
	for _, kv := range resp.Kvs {
		var h api.Host
		if err := json.Unmarshal(kv.Value, &h); err != nil {
			return nil, fmt.Errorf("store: decode %s: %w", kv.Key, err)
		}
		hs = append(hs, h)
	}
	return hs, nil
}
