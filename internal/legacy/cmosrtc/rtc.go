// Package cmosrtc emulates the PC's Motorola MC146818 real-time clock and
// its 128 bytes of CMOS RAM at ports 0x70 (index) and 0x71 (data).
//
// Register semantics follow the MC146818A data sheet ("Register A" to
// "Register D", "Update cycle", "Interrupts"). The clock is the host clock
// plus an offset the guest sets by writing the time registers. The
// periodic, alarm and update-ended interrupts raise the RTC's line (ISA
// IRQ 8 on a PC); see irq.go.
package cmosrtc

import (
	"sync"
	"time"
)

// Base is the port-I/O base of the RTC; the device spans Size ports.
const Base = 0x70

// Size is the number of ports the RTC decodes (index and data).
const Size = 2

// IRQ is the ISA interrupt line of the PC's RTC.
const IRQ = 8

// CMOS register indices.
const (
	RegSeconds  = 0x00
	RegMinutes  = 0x02
	RegHours    = 0x04
	RegWeekday  = 0x06
	RegDay      = 0x07
	RegMonth    = 0x08
	RegYear     = 0x09
	RegA        = 0x0A
	RegB        = 0x0B
	RegC        = 0x0C
	RegD        = 0x0D
	RegCentury  = 0x32 // the FADT's CENTURY field names this register
	ramSize     = 128
	indexMask   = 0x7F
	nmiDisabled = 0x80
)

// Register A, B, C and D bits.
const (
	aUIP        = 0x80
	aDivMask    = 0x70
	aDivNormal  = 0x20 // 32.768 kHz time base, oscillator running
	aDefault    = aDivNormal | 0x06
	bSet        = 0x80
	bUIE        = 0x10
	bBinary     = 0x04 // DM: binary rather than BCD
	b24Hour     = 0x02
	bDefault    = b24Hour
	cIRQF       = 0x80
	cUF         = 0x10
	dValid      = 0x80 // VRT: RAM and time valid
	hourPM      = 0x80
	uipDuration = 244 * time.Microsecond
)

// timeRegs are the registers the update cycle rewrites.
var timeRegs = [...]byte{RegSeconds, RegMinutes, RegHours, RegWeekday, RegDay, RegMonth, RegYear, RegCentury}

// RTC is an emulated MC146818 with CMOS RAM. It is safe for concurrent use.
type RTC struct {
	mu     sync.Mutex
	clk    Clock
	irq    func(level bool)
	index  byte // selected register, bit 7 = NMI disable
	ram    [ramSize]byte
	offset time.Duration // guest time minus host time
	// lastEval is the guest time up to which register C's flags are set.
	lastEval time.Time
	level    bool // the IRQ line (IRQF)

	timer    Timer     // armed for deadline (guest time), or nil
	deadline time.Time //
	gen      uint64    // bumped when the timer is replaced or stopped
	paused   bool
	closed   bool
}

// New returns an RTC running on the host clock whose CMOS RAM describes
// memBelow4G bytes of RAM below 4 GiB and memAbove4G bytes above it; irq
// (which may be nil) is called with the interrupt line's level when it
// changes: true while IRQF is set, until the guest reads register C.
func New(memBelow4G, memAbove4G uint64, irq func(level bool)) *RTC {
	return NewWithClock(memBelow4G, memAbove4G, irq, hostClock{})
}

// NewWithClock is New with an injectable host clock and timers.
func NewWithClock(memBelow4G, memAbove4G uint64, irq func(level bool), clk Clock) *RTC {
	r := &RTC{clk: clk, irq: irq}
	r.ram[RegA] = aDefault
	r.ram[RegB] = bDefault
	r.ram[RegD] = dValid
	r.setMemory(memBelow4G, memAbove4G)
	r.lastEval = r.guestNow()
	return r
}

// setMemory fills the memory-size bytes the way PC firmware does (the
// layout QEMU's pc machine and SeaBIOS agree on).
func (r *RTC) setMemory(below, above uint64) {
	const kib, mib, unit = 1 << 10, 1 << 20, 64 << 10
	// 0x15/0x16: conventional memory in KiB.
	put16(r.ram[0x15:], 640)
	// 0x17/0x18 and 0x30/0x31: memory above 1 MiB in KiB, capped at 0xFFFF.
	var ext uint64
	if below > mib {
		ext = min((below-mib)/kib, 0xFFFF)
	}
	put16(r.ram[0x17:], uint16(ext))
	put16(r.ram[0x30:], uint16(ext))
	// 0x34/0x35: memory between 16 MiB and 4 GiB in 64 KiB units.
	var mid uint64
	if below > 16*mib {
		mid = min((below-16*mib)/unit, 0xFFFF)
	}
	put16(r.ram[0x34:], uint16(mid))
	// 0x5B-0x5D: memory above 4 GiB in 64 KiB units, 24 bits.
	high := min(above/unit, 0xFFFFFF)
	r.ram[0x5B], r.ram[0x5C], r.ram[0x5D] = byte(high), byte(high>>8), byte(high>>16)
	// 0x2E/0x2F: big-endian checksum of bytes 0x10-0x2D.
	var sum uint16
	for _, b := range r.ram[0x10:0x2E] {
		sum += uint16(b)
	}
	r.ram[0x2E], r.ram[0x2F] = byte(sum>>8), byte(sum)
}

func put16(b []byte, v uint16) { b[0], b[1] = byte(v), byte(v>>8) }

// guestNow is the guest's time, in UTC like the time registers (decode).
func (r *RTC) guestNow() time.Time { return r.clk.Now().Add(r.offset).UTC() }

// Read implements iobus.Device: offset 0 is the write-only index port
// (reads 0xFF), offset 1 the selected register. Wide accesses are split
// into byte accesses.
func (r *RTC) Read(offset uint64, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range data {
		data[i] = 0xFF
		if offset+uint64(i) == 1 {
			data[i] = r.readReg(r.index & indexMask)
		}
	}
}

// Write implements iobus.Device; see Read.
func (r *RTC) Write(offset uint64, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, v := range data {
		switch offset + uint64(i) {
		case 0:
			r.index = v
		case 1:
			r.writeReg(r.index&indexMask, v)
		}
	}
}

// NMIDisabled reports whether the guest masked NMIs through index bit 7.
func (r *RTC) NMIDisabled() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.index&nmiDisabled != 0
}

func isTimeReg(reg byte) bool {
	for _, t := range timeRegs {
		if reg == t {
			return true
		}
	}
	return false
}

func (r *RTC) frozen() bool { return r.ram[RegB]&bSet != 0 }

func (r *RTC) readReg(reg byte) byte {
	switch {
	case reg == RegA:
		v := r.ram[RegA] &^ aUIP
		if r.updateInProgress() {
			v |= aUIP
		}
		return v
	case reg == RegC:
		// Reading register C returns the flags and clears them all,
		// which releases the IRQ pin (data sheet, "Register C").
		// Flags that became set since the last look are returned
		// without raising the line first: that would be a spurious
		// edge the guest is already acknowledging.
		r.latch()
		v := r.ram[RegC] &^ cIRQF
		if v&r.ram[RegB]&cSources != 0 {
			v |= cIRQF
		}
		r.ram[RegC] = 0
		r.refresh()
		return v
	case reg == RegD:
		return dValid
	case isTimeReg(reg) && !r.frozen():
		return r.encode(reg, r.guestNow())
	}
	return r.ram[reg]
}

// updateInProgress models UIP: set during the last 244 us before each
// second's update (MC146818A "Update cycle"); Linux's mc146818_get_time
// waits and retries while it is set.
func (r *RTC) updateInProgress() bool {
	if !r.updating() {
		return false
	}
	frac := time.Duration(r.guestNow().Nanosecond())
	return frac >= time.Second-uipDuration
}

// writeReg writes a register. The flags are brought up to date under the
// old settings first, and the line and timer under the new ones after.
func (r *RTC) writeReg(reg byte, v byte) {
	r.latch()
	r.writeRAM(reg, v)
	r.refresh()
}

func (r *RTC) writeRAM(reg byte, v byte) {
	switch {
	case reg == RegA:
		r.ram[RegA] = v &^ aUIP
	case reg == RegB:
		wasSet := r.frozen()
		if v&bSet != 0 {
			v &^= bUIE // SET clears UIE (data sheet, register B bit 7)
			if !wasSet {
				r.snapshotTime()
			}
		}
		r.ram[RegB] = v
		if wasSet && v&bSet == 0 {
			r.applyTime()
		}
	case reg == RegC, reg == RegD:
		// Read-only.
	case isTimeReg(reg):
		if r.frozen() {
			r.ram[reg] = v
			return
		}
		// Without SET the write takes effect at once.
		r.snapshotTime()
		r.ram[reg] = v
		r.applyTime()
	default:
		r.ram[reg] = v
	}
}

// snapshotTime stores the running guest time into the time registers so
// the guest can edit them while SET halts updates.
func (r *RTC) snapshotTime() {
	now := r.guestNow()
	for _, reg := range timeRegs {
		r.ram[reg] = r.encode(reg, now)
	}
}

// applyTime restarts the clock from the time registers.
func (r *RTC) applyTime() {
	t := r.decode()
	r.offset = t.Sub(r.clk.Now())
	r.lastEval = r.guestNow() // the jump sets no flags
}

func (r *RTC) toReg(n int) byte {
	if r.ram[RegB]&bBinary != 0 {
		return byte(n)
	}
	return byte(n/10%10<<4 | n%10)
}

func (r *RTC) fromReg(v byte) int {
	if r.ram[RegB]&bBinary != 0 {
		return int(v)
	}
	return int(v>>4)*10 + int(v&0x0F)
}

// encode returns register reg for time t in the current data mode.
func (r *RTC) encode(reg byte, t time.Time) byte {
	switch reg {
	case RegSeconds:
		return r.toReg(t.Second())
	case RegMinutes:
		return r.toReg(t.Minute())
	case RegHours:
		return r.hourReg(t.Hour())
	case RegWeekday:
		return r.toReg(int(t.Weekday()) + 1) // 1 = Sunday
	case RegDay:
		return r.toReg(t.Day())
	case RegMonth:
		return r.toReg(int(t.Month()))
	case RegYear:
		return r.toReg(t.Year() % 100)
	default: // RegCentury
		return r.toReg(t.Year() / 100 % 100)
	}
}

// hourReg encodes hour h (0-23) in the current 12/24-hour and data modes.
func (r *RTC) hourReg(h int) byte {
	if r.ram[RegB]&b24Hour != 0 {
		return r.toReg(h)
	}
	var pm byte
	if h >= 12 {
		pm = hourPM
	}
	h %= 12
	if h == 0 {
		h = 12
	}
	return r.toReg(h) | pm
}

// decode reads the time registers as a UTC time. Out-of-range guest values
// are normalised by time.Date rather than refused.
func (r *RTC) decode() time.Time {
	hv := r.ram[RegHours]
	var hour int
	if r.ram[RegB]&b24Hour != 0 {
		hour = r.fromReg(hv)
	} else {
		hour = r.fromReg(hv&^hourPM) % 12
		if hv&hourPM != 0 {
			hour += 12
		}
	}
	year := r.fromReg(r.ram[RegCentury])*100 + r.fromReg(r.ram[RegYear])
	return time.Date(year, time.Month(r.fromReg(r.ram[RegMonth])), r.fromReg(r.ram[RegDay]),
		hour, r.fromReg(r.ram[RegMinutes]), r.fromReg(r.ram[RegSeconds]), 0, time.UTC)
}

// State is the RTC's state, for snapshots and migration. Offset is
// relative to the host's wall clock, so the guest clock keeps running
// across a restore on another host.
type State struct {
	Index  byte
	RAM    [ramSize]byte
	Offset time.Duration
}

// SaveState returns the RTC's state.
func (r *RTC) SaveState() State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return State{Index: r.index, RAM: r.ram, Offset: r.offset}
}

// RestoreState loads s. Registers A, B and C are in the CMOS RAM, so the
// interrupt sources resume as the guest left them: the line is raised again
// if IRQF was set (the interrupt controllers' state, restored separately,
// has it up already, so no second edge reaches the guest), and the timer is
// armed for the next event. Events between the save and now are not
// replayed, as for a pause.
func (r *RTC) RestoreState(s State) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.index, r.ram, r.offset = s.Index, s.RAM, s.Offset
	r.ram[RegD] = dValid
	r.lastEval = r.guestNow()
	r.level = false
	r.refresh()
}
