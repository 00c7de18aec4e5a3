package cli

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/govisor/govisor/internal/vm"
	"github.com/govisor/govisor/internal/vmmapi"
)

// Disk hotplug through the VMM API: the machineCtl side (vmmapi.DiskController)
// and the `govisor ctl disk-attach|disk-detach|disks` actions.

// machineCtl hot-plugs disks through the API.
var _ vmmapi.DiskController = (*machineCtl)(nil)

func diskFromVM(d vm.DiskInfo) vmmapi.Disk {
	return vmmapi.Disk{Name: d.Name, Path: d.Path, ReadOnly: d.ReadOnly, Format: d.Format, Slot: d.Slot, Hotplugged: d.Hotplugged, State: d.State}
}

// Disks lists the running VM's disks.
func (c *machineCtl) Disks() ([]vmmapi.Disk, error) {
	m, err := c.get()
	if err != nil {
		return nil, err
	}
	var out []vmmapi.Disk
	for _, d := range m.Disks() {
		out = append(out, diskFromVM(d))
	}
	return out, nil
}

// AttachDisk hot-plugs a disk into the running VM.
func (c *machineCtl) AttachDisk(req vmmapi.DiskRequest) (vmmapi.Disk, error) {
	m, err := c.get()
	if err != nil {
		return vmmapi.Disk{}, err
	}
	d, err := m.AttachDisk(vm.Disk{Path: req.Path, ReadOnly: req.ReadOnly, Format: req.Format})
	if err != nil {
		if !errors.Is(err, vm.ErrNoFreeSlot) && !errors.Is(err, vm.ErrStopped) && !errors.Is(err, vm.ErrDiskInUse) {
			// The image could not be opened: the request names a bad image.
			err = fmt.Errorf("%w: %w", vmmapi.ErrDiskBadRequest, err)
		}
		return vmmapi.Disk{}, err
	}
	return diskFromVM(d), nil
}

// DetachDisk asks the guest to release a hot-plugged disk.
func (c *machineCtl) DetachDisk(name string) error {
	m, err := c.get()
	if err != nil {
		return err
	}
	err = m.DetachDisk(name)
	switch {
	case errors.Is(err, vm.ErrNoDisk):
		return fmt.Errorf("%w: %w", vmmapi.ErrDiskNotFound, err)
	case errors.Is(err, vm.ErrNotHotplugged):
		return fmt.Errorf("%w: %w", vmmapi.ErrDiskBadRequest, err)
	}
	return err
}

// ctlDisk runs `govisor ctl disk-attach SPEC`, `disk-detach NAME` or `disks`.
// SPEC is a --disk value: PATH[,readonly][,format=FMT].
func ctlDisk(c *vmmapi.Client, sock string, args []string) error {
	switch args[0] {
	case "disks":
		ds, err := c.Disks()
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
		disk, err := c.AttachDisk(vmmapi.DiskRequest{Path: abs, ReadOnly: d.ReadOnly, Format: d.Format})
		if err != nil {
			return err
		}
		return printJSON(disk)
	case "disk-detach":
		if len(args) != 2 {
			return &ExitError{Code: 2, Err: fmt.Errorf("disk-detach needs the disk's name: govisor ctl --api-sock %s disk-detach vdb (see ctl disks)", sock)}
		}
		if err := c.DetachDisk(args[1]); err != nil {
			return err
		}
		return printJSON(map[string]string{"name": args[1], "state": "detaching"})
	}
	return &ExitError{Code: 2, Err: fmt.Errorf("unknown disk action %q", args[0])}
}
