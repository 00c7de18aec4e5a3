package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/govisor/govisor/api"
)

// eventPrefix holds the cluster's decisions and host changes, oldest
// first: /govisor/events/<unix nanoseconds, 20 digits>-<host>.
const eventPrefix = "/govisor/events/"

// KeepEvents is how many cluster events PruneEvents keeps.
const KeepEvents = 1000

// PutEvent records a cluster event (its Time is set if zero).
func (s *Store) PutEvent(ctx context.Context, host string, ev api.ClusterEvent) error {
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("store: encode event: %w", err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	k := fmt.Sprintf("%s%020d-%s", eventPrefix, ev.Time.UnixNano(), host)
	if _, err := s.cli.Put(ctx, k, string(b)); err != nil {
		return s.fail("record event", err)
	}
	return nil
}

// ClusterEvents returns the cluster events, oldest first, at most limit
// (the newest; 0: all kept).
func (s *Store) ClusterEvents(ctx context.Context, limit int) ([]api.ClusterEvent, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend)}
	if limit > 0 {
		opts = append(opts, clientv3.WithLimit(int64(limit)))
	}
	resp, err := s.cli.Get(ctx, eventPrefix, opts...)
	if err != nil {
		return nil, s.fail("read events", err)
	}
	out := make([]api.ClusterEvent, 0, len(resp.Kvs))
	for i := len(resp.Kvs) - 1; i >= 0; i-- {
		var ev api.ClusterEvent
		if err := json.Unmarshal(resp.Kvs[i].Value, &ev); err != nil {
			return nil, fmt.Errorf("store: decode %s: %w", resp.Kvs[i].Key, err)
		}
		out = append(out, ev)
	}
	return out, nil
}

// PruneEvents deletes all but the newest keep cluster events.
func (s *Store) PruneEvents(ctx context.Context, keep int) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, eventPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(int64(keep)+1))
	if err != nil {
		return s.fail("read events", err)
	}
	if len(resp.Kvs) <= keep {
		return nil
	}
	// Everything from the prefix up to and including the first key past
	// the newest keep.
	end := string(resp.Kvs[keep].Key) + "\x00"
	if _, err := s.cli.Delete(ctx, eventPrefix, clientv3.WithRange(end)); err != nil {
		return s.fail("prune events", err)
	}
	return nil
}

// WatchEvents streams the cluster events recorded after revision fromRev
// (0: from now) with their revisions, until ctx ends.
func (s *Store) WatchEvents(ctx context.Context, fromRev int64) <-chan RevEvent {
	out := make(chan RevEvent, 16)
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithFilterDelete()}
	if fromRev > 0 {
		opts = append(opts, clientv3.WithRev(fromRev+1))
	}
	wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), eventPrefix, opts...)
	go func() {
		defer close(out)
		for resp := range wch {
			if resp.Err() != nil {
				return
			}
			for _, e := range resp.Events {
				var ev api.ClusterEvent
				if json.Unmarshal(e.Kv.Value, &ev) != nil {
					continue
				}
				select {
				case out <- RevEvent{Event: ev, Revision: e.Kv.ModRevision}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// RevEvent is a cluster event with the etcd revision that recorded it.
type RevEvent struct {
	Event    api.ClusterEvent
	Revision int64
}
