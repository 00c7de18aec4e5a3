package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/agent/service"
	"github.com/govisor/govisor/internal/cluster/store"
)

// normalizePool checks a pool definition and fills in its defaults; host
// is the agent's host (a dir pool's default).
func normalizePool(p api.Pool, host string) (api.Pool, error) {
	p.CapacityBytes, p.FreeBytes = 0, 0
	if !nameRE.MatchString(p.Name) {
		return p, fieldErr("name", fmt.Sprintf("%q: use 1-63 lower-case letters, digits and '-' (a DNS label)", p.Name))
	}
	switch p.Kind {
	case "":
		p.Kind = api.PoolDir
	case api.PoolDir, api.PoolShared:
	default:
		return p, fieldErr("kind", fmt.Sprintf("%q: use dir or shared", p.Kind))
	}
	if p.Path == "" || !filepath.IsAbs(p.Path) {
		return p, fieldErr("path", fmt.Sprintf("%q: give the absolute path of a directory", p.Path))
	}
	p.Path = filepath.Clean(p.Path)
	if p.Path == "/" || strings.ContainsAny(p.Path, ",\n") {
		return p, fieldErr("path", fmt.Sprintf("%q cannot be a pool (the root, or a path with a comma or newline)", p.Path))
	}
	p.Shared = p.Kind == api.PoolShared
	switch {
	case p.Shared && p.Host != "":
		return p, fieldErr("host", "a shared pool is on every host; leave host out")
	case !p.Shared && p.Host == "":
		p.Host = host
	}
	return p, nil
}

// poolService implements service.Pools: the storage pools' definitions
// in etcd, and the volumes (files) of the pools this host has.
type poolService struct {
	st   *store.Store
	host string // this host's name in etcd
	log  *slog.Logger
	// making holds the volumes being converted, "pool/volume" to
	// *makingVolume (pools_making.go).
	making sync.Map
}

var _ service.Pools = (*poolService)(nil)

// poolOn reports whether p's files are on host.
func poolOn(p api.Pool, host string) bool { return p.Shared || p.Host == host }

// local reports whether p's files are on this agent's host.
func (ps *poolService) local(p api.Pool) bool { return poolOn(p, ps.host) }

// withCapacity fills in the file system figures of a pool on this host.
func (ps *poolService) withCapacity(p api.Pool) api.Pool {
	var st unix.Statfs_t
	if ps.local(p) && unix.Statfs(p.Path, &st) == nil {
		p.CapacityBytes = st.Blocks * uint64(st.Bsize)
		p.FreeBytes = st.Bavail * uint64(st.Bsize)
	}
	return p
}

// preparePool makes a dir pool's directory, or checks that a shared pool's
// is there (it is a mount that the host's administrator provides: making
// an empty local directory in its place would hide the missing mount).
func preparePool(p api.Pool) error {
	if !p.Shared {
		if err := os.MkdirAll(p.Path, 0o700); err != nil {
			return fieldErr("path", fmt.Sprintf("cannot make the directory: %v", err))
		}
	}
	fi, err := os.Stat(p.Path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fieldErr("path", fmt.Sprintf("%s: no such directory on this host (mount the shared file system there first)", p.Path))
	case err != nil:
		return fieldErr("path", err.Error())
	case !fi.IsDir():
		return fieldErr("path", fmt.Sprintf("%s is not a directory", p.Path))
	}
	return nil
}

// CreatePool defines a storage pool (made or checked on this host when
// its files are here).
func (ps *poolService) CreatePool(ctx context.Context, p api.Pool) (api.Pool, error) {
	p, err := normalizePool(p, ps.host)
	if err == nil {
		err = ps.checkNewPool(ctx, p)
	}
	if err == nil && ps.local(p) {
		err = preparePool(p)
	}
	if err == nil {
		err = ps.st.CreatePool(ctx, p)
	}
	if err != nil {
		return api.Pool{}, err
	}
	ps.log.Info("storage pool defined", "pool", p.Name, "kind", p.Kind, "path", p.Path, "host", p.Host)
	return ps.withCapacity(p), nil
}

// checkNewPool refuses a taken name, or a directory another pool of the
// same host (or any shared pool) already is.
func (ps *poolService) checkNewPool(ctx context.Context, p api.Pool) error {
	pools, err := ps.st.ListPools(ctx)
	if err != nil {
		return err
	}
	for _, o := range pools {
		switch {
		case o.Name == p.Name:
			return errf(store.ErrExists, "storage pool %s already exists", p.Name)
		case o.Path == p.Path && (o.Shared || p.Shared || o.Host == p.Host):
			return errf(store.ErrExists, "%s is already storage pool %s", p.Path, o.Name)
		}
	}
	return nil
}

// ListPools lists the storage pools with their capacity where known here.
func (ps *poolService) ListPools(ctx context.Context) (api.PoolList, error) {
	pools, err := ps.st.ListPools(ctx)
	if err != nil {
		return api.PoolList{}, err
	}
	out := api.PoolList{Items: []api.Pool{}}
	for _, p := range pools {
		out.Items = append(out.Items, ps.withCapacity(p))
	}
	return out, nil
}

// GetPool reads one storage pool.
func (ps *poolService) GetPool(ctx context.Context, name string) (api.Pool, error) {
	p, err := ps.st.GetPool(ctx, name)
	if err != nil {
		return api.Pool{}, err
	}
	return ps.withCapacity(p), nil
}

// DeletePool forgets a pool; its files stay where they are (deleting a
// user's disk images is what volume delete is for).
func (ps *poolService) DeletePool(ctx context.Context, name string) error {
	p, err := ps.st.GetPool(ctx, name)
	if err == nil {
		err = ps.st.DeletePool(ctx, name, func(recs []store.Record) error {
			vms := vmsUsing(recs, func(s api.VMSpec) bool {
				for _, d := range s.Disks {
					if d.Pool == name || (d.Pool == "" && filepath.Dir(filepath.Clean(d.Path)) == p.Path) {
						return true
					}
				}
				return false
			})
			if len(vms) > 0 {
				return errf(ErrBusy, "storage pool %s holds disks of VMs %s", name, strings.Join(vms, ", "))
			}
			return nil
		})
	}
	if err != nil {
		return err
	}
	ps.log.Info("storage pool deleted (its files stay)", "pool", name, "path", p.Path)
	return nil
}

// sharedStorage reports whether every disk of s lives in a shared pool
// (named as a volume of one, or a file under one's directory): every host
// then sees the same disk files, and a live migration need only move the
// guest's memory, not mirror its disks. A VM without disks qualifies.
func (ps *poolService) sharedStorage(ctx context.Context, s api.VMSpec) (bool, error) {
	if len(s.Disks) == 0 {
		return true, nil
	}
	pools, err := ps.st.ListPools(ctx)
	if err != nil {
		return false, err
	}
	for _, d := range s.Disks {
		if !slices.ContainsFunc(pools, func(p api.Pool) bool {
			if !p.Shared {
				return false
			}
			if d.Pool != "" {
				return d.Pool == p.Name
			}
			rel, err := filepath.Rel(p.Path, filepath.Clean(d.Path))
			return err == nil && rel != "." && !strings.HasPrefix(rel, "..")
		}) {
			return false, nil
		}
	}
	return true, nil
}
