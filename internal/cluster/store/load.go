package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/govisor/govisor/api"
)

// loadPrefix holds each host's measured load, on the host's lease (a dead
// host's load goes with it): /govisor/load/<host> (api.HostLoad).
const loadPrefix = "/govisor/load/"

// PutLoad publishes this host's load on its current lease; nothing is
// written while the host has no lease (it will have one again shortly).
func (s *Store) PutLoad(ctx context.Context, l *HostLease, load api.HostLoad) error {
	id := l.leaseID()
	if id == 0 {
		return nil
	}
	b, err := json.Marshal(load)
	if err != nil {
		return fmt.Errorf("store: encode the load of %s: %w", l.h.Name, err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if _, err := s.cli.Put(ctx, loadPrefix+l.h.Name, string(b), clientv3.WithLease(id)); err != nil {
		return s.fail("publish the load of "+l.h.Name, err)
	}
	return nil
}

// Loads reads every live host's published load, by host name.
func (s *Store) Loads(ctx context.Context) (map[string]api.HostLoad, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, loadPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, s.fail("read the hosts' loads", err)
	}
	out := map[string]api.HostLoad{}
	for _, kv := range resp.Kvs {
		var l api.HostLoad
		if err := json.Unmarshal(kv.Value, &l); err != nil {
			return nil, fmt.Errorf("store: decode %s: %w", kv.Key, err)
		}
		out[strings.TrimPrefix(string(kv.Key), loadPrefix)] = l
	}
	return out, nil
}
