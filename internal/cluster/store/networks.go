package store

import (
	"context"

	"github.com/govisor/govisor/api"
)

// Networks and storage pools live beside the VMs, one JSON object per key:
//
//	/govisor/networks/<name>  api.Network (without usedBy)
//	/govisor/pools/<name>     api.Pool (without capacity figures)
const (
	netPrefix  = "/govisor/networks/"
	poolPrefix = "/govisor/pools/"
)

// CreateNetwork stores a new network; ErrExists when the name is taken.
func (s *Store) CreateNetwork(ctx context.Context, n api.Network) error {
	return s.createJSON(ctx, netPrefix+n.Name, "network "+n.Name, n)
}

// GetNetwork reads one network; ErrNotFound when there is none.
func (s *Store) GetNetwork(ctx context.Context, name string) (api.Network, error) {
	return getJSON[api.Network](ctx, s, netPrefix+name, "network "+name)
}

// ListNetworks reads every network, sorted by name.
func (s *Store) ListNetworks(ctx context.Context) ([]api.Network, error) {
	return listJSON[api.Network](ctx, s, netPrefix)
}

// DeleteNetwork deletes a network once inUse, run on the current VMs,
// accepts (its error aborts the delete), and only if no VM changed
// between that check and the delete; ErrNotFound when there is none.
func (s *Store) DeleteNetwork(ctx context.Context, name string, inUse func([]Record) error) error {
	return s.deleteUnused(ctx, netPrefix+name, "network "+name, inUse)
}

// CreatePool stores a new storage pool; ErrExists when the name is taken.
func (s *Store) CreatePool(ctx context.Context, p api.Pool) error {
	return s.createJSON(ctx, poolPrefix+p.Name, "storage pool "+p.Name, p)
}

// GetPool reads one storage pool; ErrNotFound when there is none.
func (s *Store) GetPool(ctx context.Context, name string) (api.Pool, error) {
	return getJSON[api.Pool](ctx, s, poolPrefix+name, "storage pool "+name)
}

// ListPools reads every storage pool, sorted by name.
func (s *Store) ListPools(ctx context.Context) ([]api.Pool, error) {
	return listJSON[api.Pool](ctx, s, poolPrefix)
}

// DeletePool deletes a storage pool (never its files) once inUse, run on
// the current VMs, accepts (its error aborts the delete), and only if no
// VM changed between that check and the delete; ErrNotFound when there is
// none.
func (s *Store) DeletePool(ctx context.Context, name string, inUse func([]Record) error) error {
	return s.deleteUnused(ctx, poolPrefix+name, "storage pool "+name, inUse)
}
