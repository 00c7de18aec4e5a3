package vm

import (
	"fmt"

	"github.com/govisor/govisor/internal/devmgr"
	"github.com/govisor/govisor/internal/pci"
	"github.com/govisor/govisor/internal/pcihotplug"
	"github.com/govisor/govisor/internal/virtio/blk"
)

// Snapshots and migrations of a machine with hot-plugged disks, the way
// QEMU and libvirt carry them: the saved state says which slot holds which
// disk (its image and settings, as attached) and holds the virtio-pci
// function's state; the restoring machine reopens each image, plugs it into
// the same slot without telling the guest, and loads the function's state,
// so the guest goes on using the disk as if nothing happened. The ACPI
// hotplug controller's registers travel too: an insertion or removal the
// guest has not yet handled is still pending after the restore.

// HotplugState is the ACPI PCI hotplug controller and the disks plugged
// into its slots at run time.
type HotplugState struct {
	Controller pcihotplug.State
	Disks      []HotDiskState // in attach order
}

// HotDiskState is one hot-plugged disk: its slot, its configuration and
// its virtio-pci function's state.
type HotDiskState struct {
	Slot      int
	Name      string // vdX, as Disks and DetachDisk know it
	Disk      Disk   // as attached: the image is reopened at Disk.Path
	Detaching bool   // the guest was asked to eject it
	Virtio    VirtioState
}

// saveHotplug captures the hotplug controller and the hot-plugged disks of
// a paused machine, flushing each disk's image so that it matches the
// state (a restore or the destination reopens it).
func (m *Machine) saveHotplug() (HotplugState, error) {
	var hs HotplugState
	if m.hp == nil {
		return hs, nil
	}
	m.hp.mu.Lock()
	defer m.hp.mu.Unlock()
	hs.Controller = m.hp.ctrl.SaveState()
	for _, hd := range m.hotDisks() {
		if err := hd.img.Flush(); err != nil {
			return hs, fmt.Errorf("vm: save hot-plugged disk %s: flush %s: %w", hd.info.Name, hd.info.Path, err)
		}
		vs, err := devmgr.Save(hd.fn)
		if err != nil {
			return hs, err
		}
		hs.Disks = append(hs.Disks, HotDiskState{Slot: hd.info.Slot, Name: hd.info.Name, Disk: hd.cfg,
			Detaching: hd.info.State == "detaching", Virtio: vs})
	}
	return hs, nil
}

// restoreHotplug plugs the saved hot-plugged disks into their slots of a
// machine being restored, loads their functions' state, then the hotplug
// controller's registers (which report the SCI level they hold). Disks
// are reopened at their saved paths, like the boot disks: the images must
// be there and unchanged since the state was saved.
func (m *Machine) restoreHotplug(hs *HotplugState) error {
	if m.hp == nil {
		if len(hs.Disks) > 0 {
			return fmt.Errorf("vm: the state has %d hot-plugged disks but the machine has no hotplug slots", len(hs.Disks))
		}
		return nil
	}
	m.hp.mu.Lock()
	defer m.hp.mu.Unlock()
	names := map[string]bool{}
	for i := range m.cfg.Disks {
		names[diskName(i)] = true
	}
	for i := range hs.Disks {
		sd := &hs.Disks[i]
		if err := m.restoreHotDisk(sd, names); err != nil {
			return fmt.Errorf("vm: hot-plugged disk %d (%s in slot %d): %w", i, sd.Name, sd.Slot, err)
		}
	}
	m.hp.ctrl.RestoreState(hs.Controller)
	return nil
}

// restoreHotDisk reopens one saved hot-plugged disk into its slot (hp.mu
// held). A disk in the slot is closed with the machine if a later step fails.
func (m *Machine) restoreHotDisk(sd *HotDiskState, names map[string]bool) error {
	switch {
	case !m.devs.IsHotSlot(sd.Slot):
		return fmt.Errorf("slot %d is not hot-pluggable in this machine (slots %#x): it must have the same boot devices as the saved one",
			sd.Slot, m.hp.ctrl.Slots())
	case m.hp.disks[sd.Slot] != nil:
		return fmt.Errorf("slot %d holds two disks", sd.Slot)
	case sd.Virtio.Device == nil || sd.Virtio.Device.StateKind() != blk.StateKind:
		return fmt.Errorf("the saved state of slot %d is not a disk's", sd.Slot)
	case sd.Name == "" || names[sd.Name]:
		return fmt.Errorf("disk name %q is empty or used twice", sd.Name)
	}
	names[sd.Name] = true
	if err := m.checkNotInUse(sd.Disk.Path); err != nil {
		return err
	}
	hd, err := m.plugHotDisk(sd.Disk, sd.Name, sd.Slot)
	if err != nil {
		return fmt.Errorf("reopen %s (the image must still be there): %w", sd.Disk.Path, err)
	}
	if sd.Detaching {
		hd.info.State = "detaching"
	}
	return devmgr.Restore(hd.fn, &sd.Virtio)
}

// maxHotDisks bounds the hot-plugged disks in a state: one per PCI slot.
const maxHotDisks = pci.NumSlots
