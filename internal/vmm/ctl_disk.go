package vmm

import (
	"errors"
	"fmt"

	"github.com/govisor/govisor/internal/vm"
	"github.com/govisor/govisor/internal/vmmapi"
)

// Disk hotplug through the VMM API: the machineCtl side (vmmapi.DiskController).

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
