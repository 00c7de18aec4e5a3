package pcitransport

import (
	"fmt"

	"github.com/govisor/govisor/internal/pci"
	"github.com/govisor/govisor/internal/virtio/virtqueue"
)

// QueueState is one queue's programmed configuration and, while the device
// runs, its ring position.
type QueueState struct {
	Size                 uint16
	Enable               bool
	Desc, Driver, Device uint64
	Vector               uint16
	// Ring is the live queue's state; nil unless the device is active
	// and the queue enabled.
	Ring *virtqueue.State
}

// MSIXState is the MSI-X table and pending bits.
type MSIXState struct {
	Table        []byte
	Pending      uint64
	ConfigVector uint16
}

// State is the transport's state for snapshots and live migration. The
// device's own state is saved separately by the device.
type State struct {
	Config           pci.ConfigState
	DeviceFeatureSel uint32
	DriverFeatureSel uint32
	DriverFeatures   uint64
	Status           uint8
	ConfigGeneration uint8
	QueueSelect      uint16
	ISR              uint32
	NeedsReset       bool
	Queues           []QueueState
	MSIX             MSIXState
}

// SaveState returns the transport's state. A running device is stopped
// (each worker finishes its current request) while the queue positions
// are read, then started again, so no request is half done in the state.
func (t *Transport) SaveState() State {
	t.mu.Lock()
	defer t.mu.Unlock()
	live, restart := t.live, t.active
	if t.active {
		t.dev.Reset()
		t.active = false
	}
	s := State{
		Config:           t.cfg.SaveState(),
		DeviceFeatureSel: t.devFeatSel,
		DriverFeatureSel: t.drvFeatSel,
		DriverFeatures:   t.drvFeat,
		Status:           t.status,
		ConfigGeneration: t.configGen,
		QueueSelect:      t.queueSel,
		ISR:              t.isr.Load(),
		NeedsReset:       t.needsReset.Load(),
	}
	t.msix.mu.Lock()
	s.MSIX = MSIXState{Table: append([]byte(nil), t.msix.table...), Pending: t.msix.pending, ConfigVector: t.msix.cfgVec}
	for i, c := range t.queues {
		qs := QueueState{Size: c.size, Enable: c.enable, Desc: c.desc, Driver: c.driver, Device: c.device, Vector: t.msix.queueVec[i]}
		if live != nil && live[i] != nil {
			rs := live[i].SaveState()
			qs.Ring = &rs
		}
		s.Queues = append(s.Queues, qs)
	}
	t.msix.mu.Unlock()
	if restart {
		if err := t.activateLocked(live); err != nil {
			t.fail(err)
		}
	}
	return s
}

// RestoreState loads s into a transport whose device has not been
// started, and starts the device if the snapshot had it running.
func (t *Transport) RestoreState(s State) error {
	if len(s.Queues) != len(t.queues) || len(s.MSIX.Table) != len(t.msix.table) {
		return fmt.Errorf("pcitransport: restore: state has %d queues and %d MSI-X bytes, device has %d and %d",
			len(s.Queues), len(s.MSIX.Table), len(t.queues), len(t.msix.table))
	}
	t.mu.Lock()
	t.resetLocked()
	t.devFeatSel, t.drvFeatSel, t.drvFeat = s.DeviceFeatureSel, s.DriverFeatureSel, s.DriverFeatures
	t.status, t.configGen, t.queueSel = s.Status, s.ConfigGeneration, s.QueueSelect
	t.isr.Store(s.ISR)
	t.needsReset.Store(s.NeedsReset)
	t.msix.mu.Lock()
	copy(t.msix.table, s.MSIX.Table)
	t.msix.pending = s.MSIX.Pending
	t.msix.cfgVec = t.msix.checkVector(s.MSIX.ConfigVector)
	var live []*virtqueue.Queue
	var err error
	for i, q := range s.Queues {
		t.queues[i] = queueConf{size: q.Size, enable: q.Enable, desc: q.Desc, driver: q.Driver, device: q.Device}
		t.msix.queueVec[i] = t.msix.checkVector(q.Vector)
		if q.Ring != nil && err == nil {
			if live == nil {
				live = make([]*virtqueue.Queue, len(t.queues))
			}
			live[i], err = virtqueue.Restore(t.mem, *q.Ring)
		}
	}
	t.msix.mu.Unlock()
	t.mu.Unlock()
	// The configuration space before the device starts: restoring it maps
	// the BAR and doorbells and enables MSI-X, which the device needs.
	t.cfg.RestoreState(s.Config)
	t.msix.setControl(t.cfg.U8(t.msixCap + 3))
	t.updateINTx()
	if err == nil && live != nil {
		t.mu.Lock()
		err = t.activateLocked(live)
		t.mu.Unlock()
	}
	if err != nil {
		return fmt.Errorf("pcitransport: restore: %w", err)
	}
	return nil
}

// Quiesce stops a running device's workers (each finishes its current
// request) and keeps them stopped until Unquiesce, so that neither guest
// memory nor the device's backend (a disk, a TAP) changes while the VM is
// paused: a snapshot or a migration handover then sees one consistent
// instant, as QEMU's vm_stop drains I/O before saving.
func (t *Transport) Quiesce() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.active {
		t.dev.Reset()
		t.active, t.quiesced = false, true
	}
}

// Unquiesce restarts the workers Quiesce stopped, on the same queues.
func (t *Transport) Unquiesce() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.quiesced {
		return
	}
	t.quiesced = false
	if err := t.activateLocked(t.live); err != nil {
		t.fail(err)
	}
}
