package vm

import (
	"fmt"
	"net"
	"time"

	"github.com/govisor/govisor/internal/devmgr"
	"github.com/govisor/govisor/internal/diskimage"
	_ "github.com/govisor/govisor/internal/diskimage/all" // every disk format
	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/balloon"
	"github.com/govisor/govisor/internal/virtio/blk"
	"github.com/govisor/govisor/internal/virtio/netdev"
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

// Device IDs (devmgr) of the devices a machine has at most one of; disks
// are known by their names (diskName), network interfaces as net0, net1...
const (
	vsockID   = "vsock"
	rngID     = "rng"
	balloonID = "balloon"
)

// setupVirtio makes the boot devices' virtio-pci functions on bus 0 through
// the device manager, which places them in slot order and assigns their
// BARs in the 32-bit PCI window (devmgr.Manager.Add).
func (m *Machine) setupVirtio() error {
	m.devs = devmgr.New(m.pci, m.mem, platform{m}, pciHoleStart)
	add := func(id string, dev virtio.Device, what string, closers ...func() error) error {
		if _, err := m.devs.Add(id, dev, closers...); err != nil {
			return fmt.Errorf("vm: %s: %w", what, err)
		}
		return nil
	}
	for i, d := range m.cfg.Disks {
		img, err := diskimage.Open(d.Path, diskimage.OpenOptions{ReadOnly: d.ReadOnly, Direct: d.Direct, Format: d.Format})
		if err != nil {
			return fmt.Errorf("vm: disk %s: %w", d.Path, err)
		}
		img, dirty := track(img)
		serial := d.Serial
		if serial == "" {
			serial = fmt.Sprintf("vd%c", 'a'+i%26)
		}
		dev, err := blk.New(img, blk.Options{ReadOnly: d.ReadOnly, Serial: serial, NumQueues: d.Queues})
		if err != nil {
			img.Close()
			return fmt.Errorf("vm: disk %s: %w", d.Path, err)
		}
		if err := add(diskName(i), dev, "disk "+d.Path, img.Close); err != nil {
			return err
		}
		m.images = append(m.images, img)
		m.diskDirty = append(m.diskDirty, dirty)
	}
	for i, n := range m.cfg.Nets {
		tap, err := netdev.OpenTAP(n.TAP)
		if err != nil {
			return fmt.Errorf("vm: net on TAP %s: %w", n.TAP, err)
		}
		var opts netdev.Options
		if n.MAC != "" {
			if opts.MAC, err = net.ParseMAC(n.MAC); err != nil {
				tap.Close()
				return fmt.Errorf("vm: net mac %s: %w", n.MAC, err)
			}
		}
		dev, err := netdev.New(tap, opts)
		if err != nil {
			tap.Close()
			return fmt.Errorf("vm: net on TAP %s: %w", n.TAP, err)
		}
		if err := add(fmt.Sprintf("net%d", i), dev, "net "+tap.Name(), tap.Close); err != nil {
			return err
		}
	}
	if v := m.cfg.Vsock; v != nil {
		dev, err := vsock.New(vsock.Options{CID: v.CID, UDSPath: v.UDS})
		if err != nil {
			return fmt.Errorf("vm: vsock: %w", err)
		}
		if err := add(vsockID, dev, "vsock", dev.Close); err != nil {
			return err
		}
	}
	if m.cfg.RNG {
		if err := add(rngID, rng.New(), "virtio-rng"); err != nil {
			return err
		}
	}
	if m.cfg.Balloon {
		dev, err := balloon.New(balloon.Options{DeflateOnOOM: true, StatsInterval: 5 * time.Second})
		if err != nil {
			return fmt.Errorf("vm: balloon: %w", err)
		}
		m.balloon = dev
		if err := add(balloonID, dev, "balloon"); err != nil {
			return err
		}
	}
	return nil
}

// Balloon returns the memory balloon, or nil when the VM has none.
func (m *Machine) Balloon() *balloon.Device { return m.balloon }

// closeDevices stops every device, then closes their backends (images,
// TAPs, sockets).
func (m *Machine) closeDevices() {
	m.devs.Close()
	m.images, m.diskDirty = nil, nil
}
