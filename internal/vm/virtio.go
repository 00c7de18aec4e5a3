package vm

import (
	"encoding/binary"
	"fmt"

	"github.com/govisor/govisor/internal/diskimage"
	_ "github.com/govisor/govisor/internal/diskimage/all" // every disk format
	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/blk"
	"github.com/govisor/govisor/internal/virtio/pcitransport"
	"github.com/govisor/govisor/internal/virtio/rng"
)

// Disk is a virtio-blk disk backed by an image file of any supported format.
type Disk struct {
	Path     string
	ReadOnly bool
	Format   string // empty: probe
	Serial   string // GET_ID; default vdX
	Queues   int    // request queues (default 1)
}

// pciCommandMemory enables a function's memory BARs (PCI 3.0, 6.2.2).
const pciCommandMemory = 1 << 1

// setupVirtio creates the virtio-pci functions on bus 0 and, as PC firmware
// does, assigns their BARs in the 32-bit PCI window and enables decoding, so
// that the guest finds them ready.
func (m *Machine) setupVirtio() error {
	next := uint64(pciHoleStart)
	slot := 1
	add := func(dev virtio.Device, what string) error {
		tr, err := pcitransport.New(dev, m.mem, platform{m})
		if err != nil {
			return fmt.Errorf("vm: %s: %w", what, err)
		}
		if err := m.pci.AddDevice(slot, tr); err != nil {
			tr.Close()
			return fmt.Errorf("vm: %s at PCI slot %d: %w", what, slot, err)
		}
		m.transports = append(m.transports, tr)
		m.vdevs = append(m.vdevs, dev)
		addr := (next + pcitransport.BARSize - 1) &^ (pcitransport.BARSize - 1)
		next = addr + pcitransport.BARSize
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], uint32(addr))
		tr.ConfigWrite(uint16(0x10+4*pcitransport.BARIndex), b[:])
		binary.LittleEndian.PutUint32(b[:], uint32(addr>>32))
		tr.ConfigWrite(uint16(0x14+4*pcitransport.BARIndex), b[:])
		var cmd [2]byte
		tr.ConfigRead(0x04, cmd[:])
		binary.LittleEndian.PutUint16(cmd[:], binary.LittleEndian.Uint16(cmd[:])|pciCommandMemory)
		tr.ConfigWrite(0x04, cmd[:])
		slot++
		return nil
	}
	for i, d := range m.cfg.Disks {
		img, err := diskimage.Open(d.Path, diskimage.OpenOptions{ReadOnly: d.ReadOnly, Format: d.Format})
		if err != nil {
			return fmt.Errorf("vm: --disk %s: %w", d.Path, err)
		}
		m.images = append(m.images, img)
		serial := d.Serial
		if serial == "" {
			serial = fmt.Sprintf("vd%c", 'a'+i%26)
		}
		dev, err := blk.New(img, blk.Options{ReadOnly: d.ReadOnly, Serial: serial, NumQueues: d.Queues})
		if err != nil {
			return fmt.Errorf("vm: --disk %s: %w", d.Path, err)
		}
		if err := add(dev, "disk "+d.Path); err != nil {
			return err
		}
	}
	if m.cfg.RNG {
		if err := add(rng.New(), "virtio-rng"); err != nil {
			return err
		}
	}
	return nil
}

// closeVirtio stops the devices, then flushes and closes their images.
func (m *Machine) closeVirtio() {
	for _, t := range m.transports {
		t.Close()
	}
	m.transports = nil
	for _, img := range m.images {
		img.Close()
	}
	m.images = nil
}
