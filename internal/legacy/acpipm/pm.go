// Package acpipm emulates the ACPI fixed-hardware power management
// registers the FADT points to: the PM1a event block (status and enable),
// the PM1a control block and the PM timer (ACPI 6.5 section 4.8.3). The
// reset control register (0xCF9) belongs to the PCI host bridge (package pci).
//
// The machine is always in ACPI mode (the FADT has no SMI_CMD), so SCI_EN
// reads as 1. The PM timer is 24 bits wide: the FADT must leave
// TMR_VAL_EXT clear.
package acpipm

import (
	"sync"
	"time"

	"github.com/govisor/govisor/internal/iobus"
)

// Port-I/O bases and sizes of the blocks; the FADT's PM1a_EVT_BLK,
// PM1a_CNT_BLK and PM_TMR_BLK must carry the same values.
const (
	EvtBase = 0x600 // PM1a_STS (2 bytes) then PM1a_EN (2 bytes)
	EvtSize = 4
	CntBase = 0x604 // PM1a_CNT
	CntSize = 2
	TmrBase = 0x608 // PM_TMR
	TmrSize = 4
)

// SleepTypeS5 is the SLP_TYP value of the soft-off state; the DSDT's \_S5
// object must return it.
const SleepTypeS5 = 5

// TimerFrequency is the PM timer's rate in Hz (ACPI 6.5 section 4.8.3.3).
const TimerFrequency = 3579545

// PM1 status and enable bits (ACPI 6.5 tables 4.16 and 4.17).
const (
	TmrSts    = 1 << 0
	GblSts    = 1 << 5
	PwrBtnSts = 1 << 8
	SlpBtnSts = 1 << 9
	RTCSts    = 1 << 10
	WakSts    = 1 << 15
	// enMask are the PM1_EN bits that exist; the same positions in
	// PM1_STS can raise the SCI.
	enMask = TmrSts | GblSts | PwrBtnSts | SlpBtnSts | RTCSts | 1<<14
)

// PM1 control bits (ACPI 6.5 table 4.18).
const (
	cntSCIEn    = 1 << 0
	cntSlpEn    = 1 << 13
	cntSlpShift = 10
	cntSlpMask  = 7 << cntSlpShift
	// cntStored are the read/write bits kept: BM_RLD and SLP_TYP.
	cntStored = 1<<1 | cntSlpMask
)

const timerMask = 1<<24 - 1

// PM is the ACPI PM1a register set. It is safe for concurrent use.
type PM struct {
	mu        sync.Mutex
	sts, en   uint16
	cnt       uint16
	start     time.Time // PM timer epoch on the monotonic clock
	timerBase uint64    // ticks added to the elapsed count (restore)
	lastTicks uint64    // ticks when TMR_STS was last brought up to date
	level     bool
	ignored   uint64 // sleep requests other than S5

	irqMu    sync.Mutex
	sci      func(level bool)
	powerOff func()
	now      func() time.Time
}

// New returns the PM registers; powerOff is called when the guest enters
// S5 and sci reports the SCI line level (either may be nil).
func New(powerOff func(), sci func(level bool)) *PM {
	return NewWithClock(powerOff, sci, time.Now)
}

// NewWithClock is New with an injectable monotonic clock for the PM timer.
func NewWithClock(powerOff func(), sci func(level bool), now func() time.Time) *PM {
	return &PM{powerOff: powerOff, sci: sci, now: now, start: now()}
}

// ticks returns the PM timer count since start, without wrapping.
func (p *PM) ticks() uint64 {
	d := p.now().Sub(p.start)
	if d < 0 {
		d = 0
	}
	s, ns := uint64(d/time.Second), uint64(d%time.Second)
	return p.timerBase + s*TimerFrequency + ns*TimerFrequency/uint64(time.Second)
}

// updateTimerStatus sets TMR_STS if bit 23 of the counter toggled since the
// last look (section 4.8.3.3). It is evaluated when the guest looks, so no
// SCI fires at the moment of the carry.
func (p *PM) updateTimerStatus() {
	t := p.ticks()
	if t>>23 != p.lastTicks>>23 {
		p.sts |= TmrSts
	}
	p.lastTicks = t
}

// unlockAndUpdate releases mu and reports a changed SCI level; irqMu is
// taken first so concurrent callers deliver levels in order.
func (p *PM) unlockAndUpdate(powerOff bool) {
	level := p.sts&p.en&enMask != 0
	changed := level != p.level
	p.level = level
	if changed {
		p.irqMu.Lock()
	}
	p.mu.Unlock()
	if changed {
		if p.sci != nil {
			p.sci(level)
		}
		p.irqMu.Unlock()
	}
	if powerOff && p.powerOff != nil {
		p.powerOff()
	}
}

// PowerButton reports a power-button press: it sets PWRBTN_STS and raises
// the SCI if the guest enabled PWRBTN_EN (section 4.8.3.1.1).
func (p *PM) PowerButton() {
	p.mu.Lock()
	p.sts |= PwrBtnSts
	p.unlockAndUpdate(false)
}

// IgnoredSleeps returns how many sleep requests other than S5 were ignored.
func (p *PM) IgnoredSleeps() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ignored
}

// EventDevice returns the iobus.Device for the PM1a event block (EvtBase).
func (p *PM) EventDevice() iobus.Device { return regs{p, evtRegs} }

// ControlDevice returns the iobus.Device for PM1a_CNT (CntBase).
func (p *PM) ControlDevice() iobus.Device { return regs{p, cntRegs} }

// TimerDevice returns the iobus.Device for PM_TMR (TmrBase).
func (p *PM) TimerDevice() iobus.Device { return regs{p, tmrRegs} }

type block int

const (
	evtRegs block = iota
	cntRegs
	tmrRegs
)

// regs is one register block. Accesses of any width are assembled from
// bytes of the block's little-endian register image; bytes past the block
// read as 0xFF and are not written.
type regs struct {
	p *PM
	b block
}

func (r regs) size() uint64 {
	return [...]uint64{EvtSize, CntSize, TmrSize}[r.b]
}

// image returns the block's current register contents.
func (r regs) image() [4]byte {
	p := r.p
	switch r.b {
	case evtRegs:
		p.updateTimerStatus()
		return [4]byte{byte(p.sts), byte(p.sts >> 8), byte(p.en), byte(p.en >> 8)}
	case cntRegs:
		v := p.cnt | cntSCIEn
		return [4]byte{byte(v), byte(v >> 8)}
	default:
		t := uint32(p.ticks() & timerMask)
		return [4]byte{byte(t), byte(t >> 8), byte(t >> 16), byte(t >> 24)}
	}
}

// Read implements iobus.Device.
func (r regs) Read(offset uint64, data []byte) {
	r.p.mu.Lock()
	img := r.image()
	for i := range data {
		data[i] = 0xFF
		if o := offset + uint64(i); o >= offset && o < r.size() {
			data[i] = img[o]
		}
	}
	r.p.unlockAndUpdate(false)
}

// Write implements iobus.Device.
func (r regs) Write(offset uint64, data []byte) {
	p := r.p
	p.mu.Lock()
	var w [4]byte // bytes written
	var m [4]byte // which bytes were written
	for i, v := range data {
		if o := offset + uint64(i); o >= offset && o < r.size() {
			w[o], m[o] = v, 0xFF
		}
	}
	off := false
	switch r.b {
	case evtRegs:
		p.updateTimerStatus()
		// PM1_STS bits are write-1-to-clear (section 4.8.3.1).
		p.sts &^= uint16(w[0]&m[0]) | uint16(w[1]&m[1])<<8
		en := uint16(w[2]) | uint16(w[3])<<8
		enM := uint16(m[2]) | uint16(m[3])<<8
		p.en = (p.en&^enM | en&enM) & enMask
	case cntRegs:
		v := uint16(w[0]) | uint16(w[1])<<8
		vm := uint16(m[0]) | uint16(m[1])<<8
		p.cnt = (p.cnt&^vm | v&vm) & cntStored
		if v&vm&cntSlpEn != 0 {
			// SLP_EN is write-only: it starts the transition to
			// the state in SLP_TYP (section 4.8.3.2.1).
			if (p.cnt&cntSlpMask)>>cntSlpShift == SleepTypeS5 {
				off = true
			} else {
				p.ignored++
			}
		}
	}
	// The PM timer is read-only.
	p.unlockAndUpdate(off)
}

// State is the PM registers' state, for snapshots and migration.
type State struct {
	Status, Enable, Control uint16
	Timer                   uint32 // PM timer count at save time
}

// SaveState returns the registers' state.
func (p *PM) SaveState() State {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.updateTimerStatus()
	return State{Status: p.sts, Enable: p.en, Control: p.cnt, Timer: uint32(p.ticks() & timerMask)}
}

// RestoreState loads s; the PM timer resumes counting from s.Timer.
func (p *PM) RestoreState(s State) {
	p.mu.Lock()
	p.sts, p.en, p.cnt = s.Status, s.Enable&enMask, s.Control&cntStored
	p.start = p.now()
	p.timerBase = uint64(s.Timer & timerMask)
	p.lastTicks = p.timerBase
	p.unlockAndUpdate(false)
}
