package pcitest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/govisor/govisor/internal/pci"
	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/virtqueuetest"
)

// Errors of the fake driver.
var (
	ErrProbe    = errors.New("pcitest: device probe failed")
	ErrTimeout  = errors.New("pcitest: no used buffer within the deadline")
	ErrFeatures = errors.New("pcitest: device refused FEATURES_OK")
)

// Waiting is how long Wait waits for a used buffer before giving up.
var Waiting = 10 * time.Second

// Driver is a guest driver for one virtio PCI function.
type Driver struct {
	Dev  pci.Device
	Plat *Platform
	Mem  *virtqueuetest.Memory
	BAR  uint64
	// Regions maps a virtio_pci_cap cfg_type to its BAR offset.
	Regions    map[byte]uint64
	NotifyMult uint32
	MSIXCap    uint16
	// PCICfgCap is the VIRTIO_PCI_CAP_PCI_CFG capability's offset, 0 if
	// the device has none.
	PCICfgCap uint16
	Features  uint64
	Queues    []*virtqueuetest.Driver
}

func (d *Driver) cfgRead(off uint16, n int) uint64 {
	b := make([]byte, 8)
	d.Dev.ConfigRead(off, b[:n])
	return binary.LittleEndian.Uint64(b)
}

func (d *Driver) cfgWrite(off uint16, n int, v uint64) {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, v)
	d.Dev.ConfigWrite(off, b[:n])
}

// Probe places BAR 0 at bar, enables memory decoding, finds the virtio
// capabilities and enables MSI-X with vector i sending data i.
func Probe(dev pci.Device, plat *Platform, mem *virtqueuetest.Memory, bar uint64) (*Driver, error) {
	d := &Driver{Dev: dev, Plat: plat, Mem: mem, BAR: bar, Regions: map[byte]uint64{}}
	if v := d.cfgRead(pci.RegVendorID, 2); v != 0x1AF4 {
		return nil, fmt.Errorf("%w: vendor %#x", ErrProbe, v)
	}
	d.cfgWrite(pci.RegBAR0, 4, bar&0xFFFFFFFF)
	d.cfgWrite(pci.RegBAR0+4, 4, bar>>32)
	d.cfgWrite(pci.RegCommand, 2, pci.CommandMemory|pci.CommandBusMaster)
	for off, n := uint16(d.cfgRead(pci.RegCapPtr, 1)), 0; off != 0 && n < 48; n++ {
		switch d.cfgRead(off, 1) {
		case 0x09:
			typ := byte(d.cfgRead(off+3, 1))
			if typ == 5 {
				d.PCICfgCap = off // its offset field is the driver's to write
				break
			}
			d.Regions[typ] = d.cfgRead(off+8, 4)
			if typ == 2 {
				d.NotifyMult = uint32(d.cfgRead(off+16, 4))
			}
		case 0x11:
			d.MSIXCap = off
		}
		off = uint16(d.cfgRead(off+1, 1))
	}
	if len(d.Regions) < 4 || d.MSIXCap == 0 {
		return nil, fmt.Errorf("%w: capabilities %v, MSI-X at %#x", ErrProbe, d.Regions, d.MSIXCap)
	}
	ctl := d.cfgRead(d.MSIXCap+2, 2)
	table := d.cfgRead(d.MSIXCap+4, 4) &^ 7
	for v := range int(ctl&0x7FF) + 1 {
		e := bar + table + uint64(16*v)
		d.write(e, 4, MSIAddress)
		d.write(e+4, 4, 0)
		d.write(e+8, 4, uint64(v))
		d.write(e+12, 4, 0) // unmask
	}
	d.cfgWrite(d.MSIXCap+2, 2, ctl|0x8000)
	return d, nil
}

func (d *Driver) write(addr uint64, n int, v uint64) {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, v)
	d.Plat.Bus.Write(addr, b[:n])
}

func (d *Driver) read(addr uint64, n int) uint64 {
	b := make([]byte, 8)
	d.Plat.Bus.Read(addr, b[:n])
	return binary.LittleEndian.Uint64(b)
}

// Common reads a common configuration register.
func (d *Driver) Common(off uint64, n int) uint64 { return d.read(d.BAR+d.Regions[1]+off, n) }

// SetCommon writes a common configuration register.
func (d *Driver) SetCommon(off uint64, n int, v uint64) { d.write(d.BAR+d.Regions[1]+off, n, v) }

// Status reads device_status.
func (d *Driver) Status() uint8 { return uint8(d.Common(0x14, 1)) }

// SetStatus writes device_status.
func (d *Driver) SetStatus(s uint8) { d.SetCommon(0x14, 1, uint64(s)) }

// ISR reads (and so clears) the ISR status.
func (d *Driver) ISR() uint8 { return uint8(d.read(d.BAR+d.Regions[3], 1)) }

// DeviceConfig reads n bytes of device-specific configuration at off.
func (d *Driver) DeviceConfig(off uint64, n int) []byte {
	b := make([]byte, n)
	d.Plat.Bus.Read(d.BAR+d.Regions[4]+off, b)
	return b
}

// Init resets the device, negotiates want (masked by what the device
// offers), sets up nq queues at their maximum size (capped at maxSize if
// not zero) with MSI-X vector q+1 (config vector 0), and sets DRIVER_OK
// (3.1.1).
func (d *Driver) Init(want uint64, nq int, maxSize uint16) error {
	d.SetStatus(0)
	d.SetStatus(virtio.StatusAcknowledge)
	d.SetStatus(virtio.StatusAcknowledge | virtio.StatusDriver)
	d.SetCommon(0x00, 4, 0)
	offered := d.Common(0x04, 4)
	d.SetCommon(0x00, 4, 1)
	offered |= d.Common(0x04, 4) << 32
	d.Features = offered & want
	d.SetCommon(0x08, 4, 0)
	d.SetCommon(0x0C, 4, d.Features&0xFFFFFFFF)
	d.SetCommon(0x08, 4, 1)
	d.SetCommon(0x0C, 4, d.Features>>32)
	s := uint8(virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusFeaturesOK)
	d.SetStatus(s)
	if d.Status()&virtio.StatusFeaturesOK == 0 {
		return ErrFeatures
	}
	d.SetCommon(0x10, 2, 0)
	d.Queues = d.Queues[:0]
	for q := range nq {
		d.SetCommon(0x16, 2, uint64(q))
		size := uint16(d.Common(0x18, 2))
		if maxSize != 0 && size > maxSize {
			size = maxSize
		}
		vq, err := virtqueuetest.NewDriver(d.Mem, size)
		if err != nil {
			return err
		}
		d.SetCommon(0x18, 2, uint64(size))
		d.SetCommon(0x1A, 2, uint64(q+1))
		d.SetCommon(0x20, 8, vq.DescAddr)
		d.SetCommon(0x28, 4, vq.AvailAddr&0xFFFFFFFF) // two halves, as some drivers do
		d.SetCommon(0x2C, 4, vq.AvailAddr>>32)
		d.SetCommon(0x30, 8, vq.UsedAddr)
		d.SetCommon(0x1C, 2, 1)
		d.Queues = append(d.Queues, vq)
	}
	d.SetStatus(s | virtio.StatusDriverOK)
	if st := d.Status(); st&virtio.StatusDeviceNeedsReset != 0 || st&virtio.StatusDriverOK == 0 {
		return fmt.Errorf("%w: status %#x after DRIVER_OK", ErrProbe, st)
	}
	return nil
}

// Kick notifies queue q (4.1.4.4).
func (d *Driver) Kick(q int) {
	d.SetCommon(0x16, 2, uint64(q))
	off := d.Common(0x1E, 2)
	d.Plat.Write16(d.BAR+d.Regions[2]+off*uint64(d.NotifyMult), uint16(q))
}

// KickAddr is the doorbell address of queue q (offset q, as the
// transport assigns).
func (d *Driver) KickAddr(q int) uint64 {
	return d.BAR + d.Regions[2] + uint64(q)*uint64(d.NotifyMult)
}

// Wait returns the next used entry of queue q, waiting for its
// interrupt; it gives up after Waiting.
func (d *Driver) Wait(q int) (virtqueuetest.Used, error) {
	deadline := time.Now().Add(Waiting)
	for {
		if u, ok := d.Queues[q].GetUsed(); ok {
			return u, nil
		}
		if time.Now().After(deadline) {
			return virtqueuetest.Used{}, fmt.Errorf("%w: queue %d, status %#x", ErrTimeout, q, d.Status())
		}
		select {
		case <-d.Plat.Vector(q + 1):
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// WaitInterrupt returns the next used entry of queue q, blocking on its
// MSI-X vector without a deadline and without allocating (benchmarks).
func (d *Driver) WaitInterrupt(q int) virtqueuetest.Used {
	for {
		if u, ok := d.Queues[q].GetUsed(); ok {
			return u
		}
		<-d.Plat.Vector(q + 1)
	}
}

// WaitStatus waits until device_status has all of bits set; it gives up
// after Waiting.
func (d *Driver) WaitStatus(bits uint8) error {
	deadline := time.Now().Add(Waiting)
	for d.Status()&bits != bits {
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: status %#x, want bits %#x", ErrTimeout, d.Status(), bits)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// SelectWindow writes the VIRTIO_PCI_CAP_PCI_CFG capability's cap.bar,
// cap.offset and cap.length fields (virtio 1.2 4.1.4.9).
func (d *Driver) SelectWindow(bar uint8, off, length uint32) {
	d.cfgWrite(d.PCICfgCap+4, 1, uint64(bar))
	d.cfgWrite(d.PCICfgCap+8, 4, uint64(off))
	d.cfgWrite(d.PCICfgCap+12, 4, uint64(length))
}

// WindowRead reads pci_cfg_data with a configuration read of n bytes.
func (d *Driver) WindowRead(n int) uint64 { return d.cfgRead(d.PCICfgCap+16, n) }

// WindowWrite writes v to pci_cfg_data with a configuration write of n
// bytes.
func (d *Driver) WindowWrite(n int, v uint64) { d.cfgWrite(d.PCICfgCap+16, n, v) }

// CommonViaWindow reads a common configuration register of n bytes (1, 2
// or 4) through the configuration access window, as SeaBIOS does when
// the BAR lies above 4 GiB.
func (d *Driver) CommonViaWindow(off uint32, n int) uint64 {
	d.SelectWindow(0, uint32(d.Regions[1])+off, uint32(n))
	return d.WindowRead(n)
}
