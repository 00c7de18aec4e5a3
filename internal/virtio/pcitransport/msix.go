package pcitransport

import (
	"encoding/binary"
	"sync"
)

// MSI-X message control bits, in the control word's high byte (PCI 3.0
// 6.8.2.3).
const (
	msixEnable   = 0x80
	msixFuncMask = 0x40
	msixEntry    = 16 // address low, address high, data, vector control
	msixMasked   = 1  // vector control: mask bit
)

// msix is the MSI-X table, pending bits and the virtio vector mapping
// (4.1.5.1.2). It has its own lock because device goroutines raise
// interrupts while vCPUs program the table.
type msix struct {
	mu       sync.Mutex
	n        int
	plat     Platform
	table    []byte
	pending  uint64
	enabled  bool
	funcMask bool
	cfgVec   uint16
	queueVec []uint16
}

func (m *msix) init(n int, plat Platform) {
	m.n, m.plat = n, plat
	m.table = make([]byte, n*msixEntry)
	for i := range n {
		m.table[i*msixEntry+12] = msixMasked // vectors start masked
	}
	m.queueVec = make([]uint16, n-1)
	m.resetVectors()
}

// resetVectors unmaps all virtio interrupts (device reset, 4.1.5.1.2).
func (m *msix) resetVectors() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cfgVec = NoVector
	for i := range m.queueVec {
		m.queueVec[i] = NoVector
	}
}

// checkVector returns v, or NoVector if the table has no such entry
// (the driver reads it back to detect the failure, 4.1.5.1.2.1).
func (m *msix) checkVector(v uint16) uint16 {
	if int(v) >= m.n {
		return NoVector
	}
	return v
}

func (m *msix) configVector() uint16 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cfgVec
}

func (m *msix) queueVector(q int) uint16 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if q < 0 || q >= len(m.queueVec) {
		return NoVector
	}
	return m.queueVec[q]
}

func (m *msix) isEnabled() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.enabled
}

// signal sends vector v, or records it pending while masked.
func (m *msix) signal(v uint16) {
	m.mu.Lock()
	if !m.enabled || int(v) >= m.n {
		m.mu.Unlock()
		return
	}
	e := m.table[int(v)*msixEntry:]
	if m.funcMask || e[12]&msixMasked != 0 {
		m.pending |= 1 << v
		m.mu.Unlock()
		return
	}
	addr := binary.LittleEndian.Uint64(e)
	data := binary.LittleEndian.Uint32(e[8:])
	m.mu.Unlock()
	// A failed delivery cannot be reported to the guest; the driver
	// times out as on real hardware that lost the message.
	_ = m.plat.SignalMSI(addr, data)
}

// flushPending delivers pending vectors that are no longer masked
// (PCI 3.0 6.8.2.9). Called with m.mu held; returns the messages.
func (m *msix) flushPendingLocked() (msgs [][2]uint64) {
	if !m.enabled || m.funcMask {
		return nil
	}
	for v := 0; v < m.n; v++ {
		e := m.table[v*msixEntry:]
		if m.pending&(1<<v) != 0 && e[12]&msixMasked == 0 {
			m.pending &^= 1 << v
			msgs = append(msgs, [2]uint64{binary.LittleEndian.Uint64(e), uint64(binary.LittleEndian.Uint32(e[8:]))})
		}
	}
	return msgs
}

func (m *msix) deliver(msgs [][2]uint64) {
	for _, msg := range msgs {
		_ = m.plat.SignalMSI(msg[0], uint32(msg[1]))
	}
}

// setControl applies the message control word's high byte.
func (m *msix) setControl(hi uint8) {
	m.mu.Lock()
	m.enabled = hi&msixEnable != 0
	m.funcMask = hi&msixFuncMask != 0
	msgs := m.flushPendingLocked()
	m.mu.Unlock()
	m.deliver(msgs)
}

// readTable serves reads of the table and PBA regions.
func (m *msix) read(off uint64, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range data {
		o := off + uint64(i)
		switch {
		case o >= msixTableOff && o < msixTableOff+uint64(len(m.table)):
			data[i] = m.table[o-msixTableOff]
		case o >= msixPBAOff && o < msixPBAOff+8:
			data[i] = byte(m.pending >> (8 * (o - msixPBAOff)))
		default:
			data[i] = 0
		}
	}
}

// write serves writes of the table; the PBA is read-only.
func (m *msix) write(off uint64, data []byte) {
	m.mu.Lock()
	for i, b := range data {
		o := off + uint64(i)
		if o < msixTableOff || o >= msixTableOff+uint64(len(m.table)) {
			continue
		}
		idx := o - msixTableOff
		if idx%msixEntry == 12 {
			b &= msixMasked // other vector control bits are reserved
		} else if idx%msixEntry > 12 {
			continue
		}
		m.table[idx] = b
	}
	msgs := m.flushPendingLocked()
	m.mu.Unlock()
	m.deliver(msgs)
}
