package vm

import (
	"encoding/binary"
	"fmt"
	"net"
	"time"

	"github.com/govisor/govisor/internal/diskimage"
	_ "github.com/govisor/govisor/internal/diskimage/all" // every disk format
	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/balloon"
	"github.com/govisor/govisor/internal/virtio/blk"
	"github.com/govisor/govisor/internal/virtio/netdev"
	"github.com/govisor/govisor/internal/virtio/pcitransport"
	"github.com/govisor/govisor/internal/virtio/rng"
	"github.com/govisor/govisor/internal/virtio/vsock"
)

// Net is a virtio-net interface on a host TAP device.
type Net struct {
	TAP string // an existing TAP to attach to, or the name of one to create
	MAC string // empty: a random locally administered address
}

// Vsock is a virtio-vsock device with Firecracker's Unix-socket backend: host
// processes connect to UDS and send "CONNECT <port>\n"; guest connections to
// host port P reach the Unix socket "<UDS>_<P>".
type Vsock struct {
	CID uint64
	UDS string
}

// Disk is a virtio-blk disk backed by an image file of any supported format.
type Disk struct {
	Path     string
	ReadOnly bool
	Direct   bool   // O_DIRECT: bypass the host page cache (raw images)
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
		// Devices whose config changes on their own (link status, balloon
		// target) interrupt the guest through their transport.
		if n, ok := dev.(interface{ SetConfigNotifier(func()) }); ok {
			n.SetConfigNotifier(tr.ConfigChanged)
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
		img, err := diskimage.Open(d.Path, diskimage.OpenOptions{ReadOnly: d.ReadOnly, Direct: d.Direct, Format: d.Format})
		if err != nil {
			return fmt.Errorf("vm: disk %s: %w", d.Path, err)
		}
		img, dirty := track(img)
		m.images = append(m.images, img)
		m.diskDirty = append(m.diskDirty, dirty)
		serial := d.Serial
		if serial == "" {
			serial = fmt.Sprintf("vd%c", 'a'+i%26)
		}
		dev, err := blk.New(img, blk.Options{ReadOnly: d.ReadOnly, Serial: serial, NumQueues: d.Queues})
		if err != nil {
			return fmt.Errorf("vm: disk %s: %w", d.Path, err)
		}
		if err := add(dev, "disk "+d.Path); err != nil {
			return err
		}
	}
	for _, n := range m.cfg.Nets {
		tap, err := netdev.OpenTAP(n.TAP)
		if err != nil {
			return fmt.Errorf("vm: net on TAP %s: %w", n.TAP, err)
		}
		m.closers = append(m.closers, tap.Close)
		var opts netdev.Options
		if n.MAC != "" {
			if opts.MAC, err = net.ParseMAC(n.MAC); err != nil {
				return fmt.Errorf("vm: net mac %s: %w", n.MAC, err)
			}
		}
		dev, err := netdev.New(tap, opts)
		if err != nil {
			return fmt.Errorf("vm: net on TAP %s: %w", n.TAP, err)
		}
		if err := add(dev, "net "+tap.Name()); err != nil {
			return err
		}
	}
	if v := m.cfg.Vsock; v != nil {
		dev, err := vsock.New(vsock.Options{CID: v.CID, UDSPath: v.UDS})
		if err != nil {
			return fmt.Errorf("vm: vsock: %w", err)
		}
		m.closers = append(m.closers, dev.Close)
		if err := add(dev, "vsock"); err != nil {
			return err
		}
	}
	if m.cfg.RNG {
		if err := add(rng.New(), "virtio-rng"); err != nil {
			return err
		}
	}
	if m.cfg.Balloon {
		dev, err := balloon.New(balloon.Options{DeflateOnOOM: true, StatsInterval: 5 * time.Second})
		if err != nil {
			return fmt.Errorf("vm: balloon: %w", err)
		}
		m.balloon = dev
		if err := add(dev, "balloon"); err != nil {
			return err
		}
	}
	return nil
}

// Balloon returns the memory balloon, or nil when the VM has none.
func (m *Machine) Balloon() *balloon.Device { return m.balloon }

// closeVirtio stops the devices, then flushes and closes their images.
func (m *Machine) closeVirtio() {
	for _, t := range m.transports {
		t.Close()
	}
	m.transports = nil
	for _, img := range m.images {
		img.Close()
	}
	m.images, m.diskDirty = nil, nil
	for _, c := range m.closers {
		c()
	}
	m.closers = nil
}
