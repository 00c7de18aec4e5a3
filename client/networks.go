package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/govisor/govisor/api"
)

func networkPath(name string) string { return "/v1/networks/" + url.PathEscape(name) }

// CreateNetwork defines a network; every agent makes its bridge.
func (c *Client) CreateNetwork(ctx context.Context, n api.Network) (api.Network, error) {
	var out api.Network
	_, err := c.Do(ctx, http.MethodPost, "/v1/networks", n, &out)
	return out, err
}

// ListNetworks lists the defined networks.
func (c *Client) ListNetworks(ctx context.Context) ([]api.Network, error) {
	var l api.NetworkList
	_, err := c.Do(ctx, http.MethodGet, "/v1/networks", nil, &l)
	return l.Items, err
}

// GetNetwork reads one network.
func (c *Client) GetNetwork(ctx context.Context, name string) (api.Network, error) {
	var n api.Network
	_, err := c.Do(ctx, http.MethodGet, networkPath(name), nil, &n)
	return n, err
}

// DeleteNetwork removes a network no VM uses.
func (c *Client) DeleteNetwork(ctx context.Context, name string) error {
	_, err := c.Do(ctx, http.MethodDelete, networkPath(name), nil, nil)
	return err
}
