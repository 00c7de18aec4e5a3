package client

import (
	"context"
	"net/http"
	"strconv"

	"github.com/govisor/govisor/api"
)

// AttachDisk adds d to VM name's definition; a running VM gets it at once
// (PCI hotplug into the guest).
func (c *Client) AttachDisk(ctx context.Context, name string, d api.DiskSpec) (api.VM, error) {
	var v api.VM
	_, err := c.Do(ctx, http.MethodPost, vmPath(name)+"/disks", d, &v)
	return v, err
}

// DetachDisk removes disks[index] from VM name's definition; a running
// guest is asked to eject it.
func (c *Client) DetachDisk(ctx context.Context, name string, index int) (api.VM, error) {
	var v api.VM
	_, err := c.Do(ctx, http.MethodDelete, vmPath(name)+"/disks/"+strconv.Itoa(index), nil, &v)
	return v, err
}
