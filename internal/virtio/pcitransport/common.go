package pcitransport

import (
	"encoding/binary"
	"fmt"

	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/virtqueue"
)

// Common configuration structure layout (4.1.4.3).
const (
	regDeviceFeatureSelect = 0x00
	regDeviceFeature       = 0x04
	regDriverFeatureSelect = 0x08
	regDriverFeature       = 0x0C
	regConfigMSIXVector    = 0x10
	regNumQueues           = 0x12
	regDeviceStatus        = 0x14
	regConfigGeneration    = 0x15
	regQueueSelect         = 0x16
	regQueueSize           = 0x18
	regQueueMSIXVector     = 0x1A
	regQueueEnable         = 0x1C
	regQueueNotifyOff      = 0x1E
	regQueueDesc           = 0x20
	regQueueDriver         = 0x28
	regQueueDevice         = 0x30
)

// fields lists the registers by offset and width, for writes of a part
// of a register (e.g. 64-bit addresses written as two 32-bit halves).
var fields = []struct{ off, size uint64 }{
	{regDeviceFeatureSelect, 4}, {regDeviceFeature, 4}, {regDriverFeatureSelect, 4},
	{regDriverFeature, 4}, {regConfigMSIXVector, 2}, {regNumQueues, 2},
	{regDeviceStatus, 1}, {regConfigGeneration, 1}, {regQueueSelect, 2},
	{regQueueSize, 2}, {regQueueMSIXVector, 2}, {regQueueEnable, 2},
	{regQueueNotifyOff, 2}, {regQueueDesc, 8}, {regQueueDriver, 8}, {regQueueDevice, 8},
}

// readCommon serves reads of the common configuration structure.
func (t *Transport) readCommon(off uint64, data []byte) {
	var regs [commonLength]byte
	t.mu.Lock()
	t.encodeLocked(regs[:])
	t.mu.Unlock()
	for i := range data {
		data[i] = 0
		if o := off + uint64(i); o < commonLength {
			data[i] = regs[o]
		}
	}
}

func (t *Transport) encodeLocked(r []byte) {
	le := binary.LittleEndian
	if t.devFeatSel < 2 {
		le.PutUint32(r[regDeviceFeature:], uint32(t.offered>>(32*t.devFeatSel)))
	}
	le.PutUint32(r[regDeviceFeatureSelect:], t.devFeatSel)
	le.PutUint32(r[regDriverFeatureSelect:], t.drvFeatSel)
	if t.drvFeatSel < 2 {
		le.PutUint32(r[regDriverFeature:], uint32(t.drvFeat>>(32*t.drvFeatSel)))
	}
	le.PutUint16(r[regConfigMSIXVector:], t.msix.configVector())
	le.PutUint16(r[regNumQueues:], uint16(len(t.queues)))
	r[regDeviceStatus] = t.statusLocked()
	r[regConfigGeneration] = t.configGen
	le.PutUint16(r[regQueueSelect:], t.queueSel)
	le.PutUint16(r[regQueueMSIXVector:], NoVector)
	if q := int(t.queueSel); q < len(t.queues) {
		c := t.queues[q]
		le.PutUint16(r[regQueueSize:], c.size)
		le.PutUint16(r[regQueueMSIXVector:], t.msix.queueVector(q))
		if c.enable {
			le.PutUint16(r[regQueueEnable:], 1)
		}
		le.PutUint16(r[regQueueNotifyOff:], uint16(q))
		le.PutUint64(r[regQueueDesc:], c.desc)
		le.PutUint64(r[regQueueDriver:], c.driver)
		le.PutUint64(r[regQueueDevice:], c.device)
	}
}

func (t *Transport) statusLocked() uint8 {
	s := t.status
	if t.needsReset.Load() {
		s |= virtio.StatusDeviceNeedsReset
	}
	return s
}

// writeCommon serves writes of the common configuration structure; a
// write must stay inside one register.
func (t *Transport) writeCommon(off uint64, data []byte) {
	for _, f := range fields {
		if off < f.off || off+uint64(len(data)) > f.off+f.size {
			continue
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		var regs [commonLength]byte
		t.encodeLocked(regs[:])
		copy(regs[off:], data)
		v := regs[f.off : f.off+f.size]
		t.setLocked(f.off, v)
		return
	}
}

// setLocked stores a whole register value v (little-endian).
func (t *Transport) setLocked(reg uint64, v []byte) {
	le := binary.LittleEndian
	q := int(t.queueSel)
	// Queue configuration is frozen once the driver enabled the queue or
	// set DRIVER_OK (4.1.4.3.2).
	queueWritable := q < len(t.queues) && !t.queues[q].enable && t.status&virtio.StatusDriverOK == 0
	switch reg {
	case regDeviceFeatureSelect:
		t.devFeatSel = le.Uint32(v)
	case regDriverFeatureSelect:
		t.drvFeatSel = le.Uint32(v)
	case regDriverFeature:
		if t.drvFeatSel < 2 && t.status&virtio.StatusFeaturesOK == 0 {
			shift := 32 * t.drvFeatSel
			t.drvFeat = t.drvFeat&^(0xFFFFFFFF<<shift) | uint64(le.Uint32(v))<<shift
		}
	case regConfigMSIXVector:
		t.msix.mu.Lock()
		t.msix.cfgVec = t.msix.checkVector(le.Uint16(v))
		t.msix.mu.Unlock()
	case regDeviceStatus:
		t.writeStatusLocked(v[0])
	case regQueueSelect:
		t.queueSel = le.Uint16(v)
	case regQueueSize:
		if queueWritable {
			t.queues[q].size = le.Uint16(v)
		}
	case regQueueMSIXVector:
		if q < len(t.queues) {
			t.msix.mu.Lock()
			t.msix.queueVec[q] = t.msix.checkVector(le.Uint16(v))
			t.msix.mu.Unlock()
		}
	case regQueueEnable:
		if queueWritable && le.Uint16(v) == 1 {
			t.queues[q].enable = true
		}
	case regQueueDesc:
		if queueWritable {
			t.queues[q].desc = le.Uint64(v)
		}
	case regQueueDriver:
		if queueWritable {
			t.queues[q].driver = le.Uint64(v)
		}
	case regQueueDevice:
		if queueWritable {
			t.queues[q].device = le.Uint64(v)
		}
	}
}

// writeStatusLocked runs the device status protocol (2.1, 3.1.1).
func (t *Transport) writeStatusLocked(v uint8) {
	v &^= virtio.StatusDeviceNeedsReset // device-owned bit
	if v == 0 {
		t.resetLocked()
		return
	}
	old := t.status
	if v&virtio.StatusFeaturesOK != 0 && old&virtio.StatusFeaturesOK == 0 && !t.featuresAcceptable() {
		// The driver re-reads status and sees FEATURES_OK clear (3.1.1).
		v &^= virtio.StatusFeaturesOK
	}
	t.status = v
	if v&virtio.StatusDriverOK != 0 && old&virtio.StatusDriverOK == 0 && !t.active {
		if v&virtio.StatusFeaturesOK == 0 {
			t.fail(fmt.Errorf("pcitransport: DRIVER_OK without FEATURES_OK"))
			return
		}
		if err := t.activateLocked(nil); err != nil {
			t.fail(err)
		}
	}
}

// featuresAcceptable checks the driver's feature subset (6.1: a modern
// device refuses drivers that did not accept VERSION_1).
func (t *Transport) featuresAcceptable() bool {
	return t.drvFeat&^t.offered == 0 && t.drvFeat&virtio.FeatureVersion1 != 0
}

// activateLocked builds the enabled queues (or takes restored ones) and
// starts the device.
func (t *Transport) activateLocked(restored []*virtqueue.Queue) error {
	live := restored
	if live == nil {
		live = make([]*virtqueue.Queue, len(t.queues))
		for i, c := range t.queues {
			if !c.enable {
				continue
			}
			if c.size > t.maxSizes[i] {
				return fmt.Errorf("pcitransport: queue %d size %d above maximum %d", i, c.size, t.maxSizes[i])
			}
			q, err := virtqueue.New(t.mem, t.queueConfig(i))
			if err != nil {
				return fmt.Errorf("pcitransport: queue %d: %w", i, err)
			}
			live[i] = q
		}
	}
	notify := make([]<-chan struct{}, len(t.kicks))
	for i, k := range t.kicks {
		notify[i] = k
	}
	ctx := virtio.ActivateContext{
		Features:   t.drvFeat,
		Mem:        t.mem,
		Queues:     live,
		Notify:     notify,
		Interrupt:  t.interrupt,
		NeedsReset: t.fail,
	}
	if err := t.dev.Activate(ctx); err != nil {
		return fmt.Errorf("pcitransport: activate device: %w", err)
	}
	t.live, t.active = live, true
	return nil
}

func (t *Transport) queueConfig(i int) virtqueue.Config {
	c := t.queues[i]
	return virtqueue.Config{
		Size: c.size, Desc: c.desc, Avail: c.driver, Used: c.device,
		EventIdx: t.drvFeat&virtio.FeatureRingEventIdx != 0,
		Indirect: t.drvFeat&virtio.FeatureRingIndirectDesc != 0,
	}
}

// resetLocked returns the device to its initial state (2.4).
func (t *Transport) resetLocked() {
	if t.active {
		t.dev.Reset()
	}
	t.active, t.quiesced, t.live = false, false, nil
	t.status, t.devFeatSel, t.drvFeatSel, t.drvFeat, t.queueSel = 0, 0, 0, 0, 0
	for i := range t.queues {
		t.queues[i] = queueConf{size: t.maxSizes[i]}
	}
	t.needsReset.Store(false)
	t.isr.Store(0)
	t.updateINTx()
	t.msix.resetVectors()
	for _, k := range t.kicks {
		select {
		case <-k:
		default:
		}
	}
}

// Reset resets the device as if the driver wrote 0 to device_status
// (e.g. on a VM reset).
func (t *Transport) Reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.resetLocked()
}
