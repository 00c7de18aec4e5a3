// Package pcitransport is the virtio PCI modern transport (virtio 1.2
// section 4.1): a PCI function whose one 64-bit memory BAR holds the
// common, ISR, notify and device configuration structures and the MSI-X
// table, and which drives a virtio.Device through its status protocol.
package pcitransport

import (
	"errors"
	"fmt"
	"io"
	"math/bits"
	"sync"
	"sync/atomic"

	"github.com/govisor/govisor/internal/iobus"
	"github.com/govisor/govisor/internal/pci"
	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/virtqueue"
)

// Platform is what the transport needs from the VMM.
type Platform interface {
	// MapMMIO routes guest accesses to [base, base+size) to dev; called
	// when the guest places the BAR (and decoding is on).
	MapMMIO(base, size uint64, dev iobus.Device) error
	// UnmapMMIO removes the mapping at base.
	UnmapMMIO(base uint64)
	// SignalMSI delivers an MSI message (KVM_SIGNAL_MSI).
	SignalMSI(addr uint64, data uint32) error
	// RegisterNotify binds a doorbell to guest writes of length bytes at
	// addr (datamatch nil: any value), e.g. with KVM_IOEVENTFD, so that
	// kicks do not exit to the VMM. The transport asks for 2-byte writes
	// (drivers write the 16-bit queue index, 4.1.4.4); writes of other
	// widths still reach the MMIO handler, which kicks too. Each Read of
	// the returned reader blocks until at least one kick and reads an
	// 8-byte counter; Close must make a blocked Read return (an eventfd
	// in non-blocking mode wrapped by os.NewFile does). An error makes the
	// transport take kicks through MMIO writes instead.
	RegisterNotify(addr uint64, length uint32, datamatch *uint64) (io.ReadCloser, error)
	// UnregisterNotify removes the doorbell at addr.
	UnregisterNotify(addr uint64)
}

// INTxPlatform is implemented by platforms that can also raise the
// function's legacy interrupt line, used while MSI-X is disabled (drivers
// without MSI support, e.g. Linux booted with pci=nomsi). The transport
// then reports interrupt pin INTA#; which GSI that is, is the platform's
// business.
type INTxPlatform interface {
	// SetINTx drives the function's INTx# line: true asserts it.
	SetINTx(level bool)
}

// PCI identity (4.1.2).
const (
	VendorID       = 0x1AF4
	DeviceIDBase   = 0x1040 // + virtio device ID (modern devices)
	SubsystemID    = 0x1100
	revisionModern = 1
)

// BAR layout: one 64-bit non-prefetchable memory BAR.
const (
	BARIndex      = 0
	BARSize       = 0x4000
	commonOffset  = 0x0000
	commonLength  = 0x38 // struct virtio_pci_common_cfg without notify_data/queue_reset
	isrOffset     = 0x1000
	deviceOffset  = 0x2000
	deviceLength  = 0x1000
	notifyOffset  = 0x3000
	notifyMult    = 4
	msixTableOff  = 0x3800
	msixPBAOff    = 0x3C00
	regionSize    = 0x1000
	MaxVectors    = 64
	MaxQueues     = MaxVectors - 1 // one vector per queue plus the config vector
	NoVector      = 0xFFFF         // VIRTIO_MSI_NO_VECTOR
	isrQueue      = 1
	isrConfig     = 2
	capVendor     = 0x09
	capMSIX       = 0x11
	cfgTypeCommon = 1
	cfgTypeNotify = 2
	cfgTypeISR    = 3
	cfgTypeDevice = 4
)

// ErrBadDevice reports a device the transport cannot present.
var ErrBadDevice = errors.New("pcitransport: unsupported device")

// queueConf is what the driver programmed for one queue (4.1.4.3).
type queueConf struct {
	size                 uint16
	enable               bool
	desc, driver, device uint64
}

// Transport is a virtio PCI function. It implements pci.Device.
type Transport struct {
	cfg      *pci.ConfigSpace
	dev      virtio.Device
	mem      virtio.Memory
	plat     Platform
	intx     INTxPlatform // nil if the platform has no INTx
	maxSizes []uint16
	offered  uint64
	msixCap  uint16
	// pciCfgCap is the VIRTIO_PCI_CAP_PCI_CFG capability's offset.
	pciCfgCap uint16
	kicks     []chan struct{}

	mu         sync.Mutex // common configuration and activation
	devFeatSel uint32
	drvFeatSel uint32
	drvFeat    uint64
	status     uint8
	configGen  uint8
	queueSel   uint16
	queues     []queueConf
	live       []*virtqueue.Queue // while active or quiesced
	active     bool
	quiesced   bool // active, but the workers are stopped until Unquiesce

	intxMu     sync.Mutex // orders INTx level changes
	needsReset atomic.Bool
	isr        atomic.Uint32
	lastErr    atomic.Pointer[error]
	msix       msix

	barMu     sync.Mutex // BAR mapping and doorbells
	barBase   uint64
	notifiers []io.Closer
}

// New presents dev on a PCI function; attach it with pci.Bus.AddDevice.
func New(dev virtio.Device, mem virtio.Memory, plat Platform) (*Transport, error) {
	sizes := dev.QueueMaxSizes()
	if len(sizes) == 0 || len(sizes) > MaxQueues {
		return nil, fmt.Errorf("%w: %d queues (1 to %d)", ErrBadDevice, len(sizes), MaxQueues)
	}
	for i, s := range sizes {
		if s == 0 || s > virtqueue.MaxSize || bits.OnesCount16(s) != 1 {
			return nil, fmt.Errorf("%w: queue %d size %d", ErrBadDevice, i, s)
		}
	}
	if dev.Features()&virtio.FeatureVersion1 == 0 {
		return nil, fmt.Errorf("%w: device does not offer VIRTIO_F_VERSION_1", ErrBadDevice)
	}
	id := dev.DeviceID()
	t := &Transport{
		dev: dev, mem: mem, plat: plat,
		maxSizes: append([]uint16(nil), sizes...),
		offered:  dev.Features() &^ (virtio.FeatureAccessPlatform | virtio.FeatureRingPacked),
		queues:   make([]queueConf, len(sizes)),
		kicks:    make([]chan struct{}, len(sizes)),
		barBase:  pci.Unmapped,
	}
	for i := range t.kicks {
		t.kicks[i] = make(chan struct{}, 1)
	}
	t.msix.init(len(sizes)+1, plat)
	var pin uint8
	if ip, ok := plat.(INTxPlatform); ok {
		t.intx, pin = ip, 1
	}
	t.cfg = pci.NewConfigSpace(pci.Header{
		VendorID: VendorID, DeviceID: DeviceIDBase + id, Revision: revisionModern,
		Class: classOf(id), SubsystemVendorID: VendorID, SubsystemID: SubsystemID,
		InterruptPin: pin,
	})
	if err := t.cfg.AddBAR(BARIndex, pci.BARMem64, BARSize, false); err != nil {
		return nil, fmt.Errorf("pcitransport: %w", err)
	}
	if err := t.addCapabilities(); err != nil {
		return nil, err
	}
	t.resetLocked()
	t.cfg.OnBARChange = t.barChanged
	return t, nil
}

// classOf is the PCI class code per device type, as Linux and QEMU use.
func classOf(id uint16) uint32 {
	switch id {
	case virtio.IDNet:
		return 0x020000 // network controller, Ethernet
	case virtio.IDBlock:
		return 0x010000 // mass storage, SCSI
	case virtio.IDConsole:
		return 0x078000 // communication controller, other
	}
	return 0xFF0000 // unclassified device
}

func (t *Transport) addCapabilities() error {
	caps := []struct {
		typ          byte
		offset, size uint32
	}{
		{cfgTypeCommon, commonOffset, commonLength},
		{cfgTypeNotify, notifyOffset, uint32(notifyMult * len(t.maxSizes))},
		{cfgTypeISR, isrOffset, 1},
		{cfgTypeDevice, deviceOffset, deviceLength},
	}
	for _, c := range caps {
		// struct virtio_pci_cap after cap_vndr and cap_next (4.1.4).
		body := []byte{16, c.typ, BARIndex, 0, 0, 0}
		body = le32(body, c.offset)
		body = le32(body, c.size)
		if c.typ == cfgTypeNotify {
			body[0] = 20
			body = le32(body, notifyMult) // notify_off_multiplier
		}
		if _, err := t.cfg.AddCapability(capVendor, body); err != nil {
			return fmt.Errorf("pcitransport: capability %d: %w", c.typ, err)
		}
	}
	// MSI-X capability (PCI 3.0 6.8.2): message control, table and PBA
	// offsets with the BAR indicator in the low bits.
	body := []byte{byte(t.msix.n - 1), byte((t.msix.n - 1) >> 8)}
	body = le32(body, msixTableOff|BARIndex)
	body = le32(body, msixPBAOff|BARIndex)
	off, err := t.cfg.AddCapability(capMSIX, body)
	if err != nil {
		return fmt.Errorf("pcitransport: MSI-X capability: %w", err)
	}
	t.msixCap = off
	t.cfg.SetWriteMask(off+2, []byte{0, msixEnable | msixFuncMask})
	if err := t.addPCICfgCapability(); err != nil {
		return fmt.Errorf("pcitransport: PCI configuration access capability: %w", err)
	}
	return nil
}

func le32(b []byte, v uint32) []byte {
	return append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}

// ConfigRead implements pci.Device; a read of pci_cfg_data first reads
// the BAR through the configuration access window (4.1.4.9).
func (t *Transport) ConfigRead(offset uint16, data []byte) {
	if t.touchesPCICfgData(offset, len(data)) {
		t.pciCfgRead()
	}
	t.cfg.ConfigRead(offset, data)
}

// ConfigWrite implements pci.Device; it also tracks the MSI-X enable and
// function mask bits, and forwards writes of pci_cfg_data to the BAR
// (4.1.4.9).
func (t *Transport) ConfigWrite(offset uint16, data []byte) {
	t.cfg.ConfigWrite(offset, data)
	if t.touchesPCICfgData(offset, len(data)) {
		t.pciCfgWrite()
	}
	ctl := t.msixCap + 3
	if int(offset) <= int(ctl) && int(ctl) < int(offset)+len(data) {
		t.msix.setControl(t.cfg.U8(ctl))
		t.updateINTx()
	}
	if int(offset) <= pci.RegCommand+1 && pci.RegCommand+1 < int(offset)+len(data) {
		t.updateINTx() // INTx disable bit
	}
}

// Config returns the PCI configuration space (for tests and the VMM).
func (t *Transport) Config() *pci.ConfigSpace { return t.cfg }

// Err returns the last error that made the device need a reset, or nil.
func (t *Transport) Err() error {
	if p := t.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// barChanged moves the MMIO mapping and the doorbells with BAR 0.
func (t *Transport) barChanged(bar int, old, new uint64) {
	if bar != BARIndex {
		return
	}
	t.barMu.Lock()
	defer t.barMu.Unlock()
	if t.barBase != pci.Unmapped {
		for i, n := range t.notifiers {
			if n != nil {
				t.plat.UnregisterNotify(t.barBase + notifyOffset + uint64(notifyMult*i))
				n.Close()
			}
		}
		t.notifiers = nil
		t.plat.UnmapMMIO(t.barBase)
		t.barBase = pci.Unmapped
	}
	if new == pci.Unmapped {
		return
	}
	if err := t.plat.MapMMIO(new, BARSize, barDevice{t}); err != nil {
		t.fail(fmt.Errorf("pcitransport: map BAR at %#x: %w", new, err))
		return
	}
	t.barBase = new
	t.notifiers = make([]io.Closer, len(t.kicks))
	for i := range t.kicks {
		r, err := t.plat.RegisterNotify(new+notifyOffset+uint64(notifyMult*i), 2, nil)
		if err != nil {
			continue // kicks arrive as MMIO writes instead
		}
		t.notifiers[i] = r
		go t.doorbell(r, t.kicks[i])
	}
}

// doorbell forwards kicks from an ioeventfd to the queue's channel until
// the reader is closed.
func (t *Transport) doorbell(r io.Reader, kick chan struct{}) {
	var buf [8]byte
	for {
		if _, err := r.Read(buf[:]); err != nil {
			return
		}
		select {
		case kick <- struct{}{}:
		default:
		}
	}
}

func (t *Transport) kick(q int) {
	if q >= 0 && q < len(t.kicks) {
		select {
		case t.kicks[q] <- struct{}{}:
		default:
		}
	}
}

// fail marks the device as needing reset and tells the driver (2.1.2).
func (t *Transport) fail(err error) {
	t.lastErr.Store(&err)
	if t.needsReset.Swap(true) {
		return
	}
	t.configInterrupt()
}

// ConfigChanged tells the driver that device configuration changed
// (e.g. a resized disk): bumps config_generation and interrupts (4.1.4.3).
func (t *Transport) ConfigChanged() {
	t.mu.Lock()
	t.configGen++
	t.mu.Unlock()
	t.configInterrupt()
}

func (t *Transport) configInterrupt() {
	t.isr.Or(isrConfig)
	if !t.msix.isEnabled() {
		t.updateINTx()
		return
	}
	t.msix.signal(t.msix.configVector())
}

// interrupt signals used buffers on queue q.
func (t *Transport) interrupt(q int) {
	if !t.msix.isEnabled() {
		t.isr.Or(isrQueue)
		t.updateINTx()
		return
	}
	t.msix.signal(t.msix.queueVector(q))
}

// updateINTx drives INTx# from the ISR status while MSI-X is off: the
// line is asserted while ISR is non-zero and the command register does
// not disable INTx (4.1.4.5, PCI 3.0 6.2.2).
func (t *Transport) updateINTx() {
	if t.intx == nil {
		return
	}
	t.intxMu.Lock()
	defer t.intxMu.Unlock()
	level := t.isr.Load() != 0 && !t.msix.isEnabled() && t.cfg.Command()&pci.CommandIntxDisable == 0
	t.cfg.SetInterruptStatus(level)
	t.intx.SetINTx(level)
}

// Close stops the device and removes its MMIO mapping and doorbells (VM
// shutdown). The transport must not be used afterwards.
func (t *Transport) Close() {
	t.Reset()
	t.barChanged(BARIndex, t.cfg.BARAddress(BARIndex), pci.Unmapped)
}
