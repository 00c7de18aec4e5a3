package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/govisor/govisor/api"
)

func poolPath(name string) string { return "/v1/pools/" + url.PathEscape(name) }

func volumePath(pool, vol string) string {
	return poolPath(pool) + "/volumes/" + url.PathEscape(vol)
}

// CreatePool defines a storage pool.
func (c *Client) CreatePool(ctx context.Context, p api.Pool) (api.Pool, error) {
	var out api.Pool
	_, err := c.Do(ctx, http.MethodPost, "/v1/pools", p, &out)
	return out, err
}

// ListPools lists the storage pools.
func (c *Client) ListPools(ctx context.Context) ([]api.Pool, error) {
	var l api.PoolList
	_, err := c.Do(ctx, http.MethodGet, "/v1/pools", nil, &l)
	return l.Items, err
}

// GetPool reads one storage pool.
func (c *Client) GetPool(ctx context.Context, name string) (api.Pool, error) {
	var p api.Pool
	_, err := c.Do(ctx, http.MethodGet, poolPath(name), nil, &p)
	return p, err
}

// DeletePool forgets a storage pool whose volumes no VM uses (its files stay).
func (c *Client) DeletePool(ctx context.Context, name string) error {
	_, err := c.Do(ctx, http.MethodDelete, poolPath(name), nil, nil)
	return err
}

// ListVolumes lists the volumes of a pool.
func (c *Client) ListVolumes(ctx context.Context, pool string) ([]api.Volume, error) {
	var l api.VolumeList
	_, err := c.Do(ctx, http.MethodGet, poolPath(pool)+"/volumes", nil, &l)
	return l.Items, err
}

// GetVolume reads one volume.
func (c *Client) GetVolume(ctx context.Context, pool, vol string) (api.Volume, error) {
	var v api.Volume
	_, err := c.Do(ctx, http.MethodGet, volumePath(pool, vol), nil, &v)
	return v, err
}

// CreateVolume creates a volume in pool: empty, or converted from an image.
func (c *Client) CreateVolume(ctx context.Context, pool string, req api.VolumeCreate) (api.Volume, error) {
	var v api.Volume
	_, err := c.Do(ctx, http.MethodPost, poolPath(pool)+"/volumes", req, &v)
	return v, err
}

// DeleteVolume deletes a volume no VM uses.
func (c *Client) DeleteVolume(ctx context.Context, pool, vol string) error {
	_, err := c.Do(ctx, http.MethodDelete, volumePath(pool, vol), nil, nil)
	return err
}

// ImportVM converts a VM of another hypervisor, whose configuration is a
// file on the agent's host, into volumes of pool.
func (c *Client) ImportVM(ctx context.Context, pool string, req api.ImportRequest) (api.ImportResult, error) {
	var res api.ImportResult
	_, err := c.Do(ctx, http.MethodPost, poolPath(pool)+"/imports", req, &res)
	return res, err
}
