package cli

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/govisor/govisor/internal/vmmapi"
)

// Disk hotplug through the VMM API: the `govisor ctl disk-attach|disk-detach|disks`
// actions (internal/vmm serves them).

// ctlDisk runs `govisor ctl disk-attach SPEC`, `disk-detach NAME` or `disks`.
// SPEC is a --disk value: PATH[,readonly][,format=FMT].
func ctlDisk(ctx context.Context, c *vmmapi.Client, sock string, args []string) error {
	switch args[0] {
	case "disks":
		ds, err := c.Disks(ctx)
		if err != nil {
			return err
		}
		return printJSON(ds)
	case "disk-attach":
		if len(args) != 2 {
			return &ExitError{Code: 2, Err: fmt.Errorf("disk-attach needs an image: govisor ctl --api-sock %s disk-attach PATH[,readonly][,format=FMT]", sock)}
		}
		d, err := ParseDisk(args[1])
		if err != nil {
			return &ExitError{Code: 2, Err: err}
		}
		if d.Direct || d.Serial != "" || d.Queues != 0 {
			return &ExitError{Code: 2, Err: fmt.Errorf("disk-attach %q: only readonly and format=FMT can be given", args[1])}
		}
		abs, err := filepath.Abs(d.Path)
		if err != nil {
			return &ExitError{Code: 2, Err: fmt.Errorf("disk-attach %q: %w", args[1], err)}
		}
		disk, err := c.AttachDisk(ctx, vmmapi.DiskRequest{Path: abs, ReadOnly: d.ReadOnly, Format: d.Format})
		if err != nil {
			return err
		}
		return printJSON(disk)
	case "disk-detach":
		if len(args) != 2 {
			return &ExitError{Code: 2, Err: fmt.Errorf("disk-detach needs the disk's name: govisor ctl --api-sock %s disk-detach vdb (see ctl disks)", sock)}
		}
		if err := c.DetachDisk(ctx, args[1]); err != nil {
			return err
		}
		return printJSON(map[string]string{"name": args[1], "state": "detaching"})
	}
	return &ExitError{Code: 2, Err: fmt.Errorf("unknown disk action %q", args[0])}
}
