package vm

import (
	"fmt"

	"github.com/govisor/govisor/internal/pci"
	"github.com/govisor/govisor/internal/snapshot"
)

// The hotplug part of the machine state (StateVersion 3 and 4): the controller's
// registers (ACPI 6.5 section 4.8.4.1 GPE0_STS/GPE0_EN, and the UP/DOWN
// slot bits of internal/pcihotplug), then each hot-plugged disk: its slot,
// name, configuration and virtio-pci function (encodeVirtio).

// minHotDiskBytes is the least a hot-plugged disk's encoding takes: its
// slot, then at least a virtio function.
const minHotDiskBytes = 8 + minVirtioBytes

func encodeHotplug(e *snapshot.Encoder, h *HotplugState, version int) {
	h.Controller.Encode(e)
	e.Len(len(h.Disks))
	for i := range h.Disks {
		d := &h.Disks[i]
		e.Int(d.Slot)
		e.String(d.Name)
		encodeDiskConfig(e, &d.Disk)
		e.Bool(d.Detaching)
		encodeVirtio(e, &d.Virtio, version)
	}
}

func decodeHotplug(d *snapshot.Decoder, h *HotplugState, version int) error {
	if err := h.Controller.Decode(d); err != nil {
		return err
	}
	if n := d.Len("Hotplug.Disks", maxHotDisks, minHotDiskBytes); n > 0 {
		h.Disks = make([]HotDiskState, n)
		for i := range h.Disks {
			hd := &h.Disks[i]
			hd.Slot = d.Int("Hotplug.Slot", pci.NumSlots-1)
			hd.Name = d.String("Hotplug.Name", maxName)
			decodeDiskConfig(d, &hd.Disk)
			hd.Detaching = d.Bool()
			if err := d.Err(); err != nil {
				return fmt.Errorf("hot-plugged disk %d: %w", i, err)
			}
			if err := decodeVirtio(d, &hd.Virtio, version); err != nil {
				return fmt.Errorf("hot-plugged disk %d: %w", i, err)
			}
		}
	}
	return d.Err()
}

// encodeDiskConfig encodes a hot-plugged disk's Disk: every field, as the
// saved config's disks are.
func encodeDiskConfig(e *snapshot.Encoder, k *Disk) {
	e.String(k.Path)
	e.Bool(k.ReadOnly)
	e.Bool(k.Direct)
	e.String(k.Format)
	e.String(k.Serial)
	e.Int(k.Queues)
}

func decodeDiskConfig(d *snapshot.Decoder, k *Disk) {
	k.Path = d.String("Hotplug.Disk.Path", maxPath)
	k.ReadOnly = d.Bool()
	k.Direct = d.Bool()
	k.Format = d.String("Hotplug.Disk.Format", maxName)
	k.Serial = d.String("Hotplug.Disk.Serial", maxName)
	k.Queues = d.Int("Hotplug.Disk.Queues", maxQueueCount)
}
