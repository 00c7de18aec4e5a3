package cmosrtc

import "time"

// The MC146818A's three interrupt sources (data sheet, "Interrupts" and
// "Register C"): the periodic interrupt (PF, enabled by PIE), the alarm
// (AF, AIE) and the end of each second's update cycle (UF, UIE). Register
// C's flags are set whatever the enable bits say; IRQF = PF·PIE + AF·AIE
// + UF·UIE, and the IRQ pin is active while IRQF is 1. Reading register C
// returns the flags and clears them, which releases the pin.
//
// The flags are computed when they are needed, from the guest time of the
// last evaluation to now (latch), so an idle RTC costs nothing. A host
// timer runs only while an enabled source's next event would raise the
// line: never with PIE, AIE and UIE clear, and not while the line is
// already up, since nothing changes until the guest reads register C.
// Periods missed while the host was busy set PF once (coalesced), as
// QEMU's RTC does without a lost-tick policy.

// Register B and C interrupt bits.
const (
	bPIE      = 0x40
	bAIE      = 0x20
	cPF       = 0x40
	cAF       = 0x20
	cSources  = cPF | cAF | cUF // the same bit positions in B (enables) and C (flags)
	aRateMask = 0x0F            // RS3-RS0
	dontCare  = 0xC0            // an alarm byte with bits 7 and 6 set matches any value

	RegSecondsAlarm = 0x01
	RegMinutesAlarm = 0x03
	RegHoursAlarm   = 0x05

	// timeBase is the PC's 32.768 kHz crystal, the rate the divider
	// chain counts at when DV2-DV0 = 010.
	timeBase = 32768
)

// Timer is the part of *time.Timer the RTC uses.
type Timer interface{ Stop() bool }

// Clock is the RTC's time source: the host's wall clock and one-shot
// timers on it. Tests inject a fake one.
type Clock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) Timer
}

type hostClock struct{}

func (hostClock) Now() time.Time { return time.Now() }
func (hostClock) AfterFunc(d time.Duration, f func()) Timer {
	return time.AfterFunc(d, f)
}

// dividerRunning reports whether the divider chain counts the 32.768 kHz
// time base (register A DV2-DV0 = 010): with any other setting neither
// updates nor periodic interrupts happen.
func (r *RTC) dividerRunning() bool { return r.ram[RegA]&aDivMask == aDivNormal }

// updating reports whether update cycles run: the divider counts and SET
// (register B bit 7) does not hold them.
func (r *RTC) updating() bool { return r.dividerRunning() && !r.frozen() }

// periodTicks returns the periodic interrupt's period in 32.768 kHz ticks
// (data sheet Table 4, "Periodic interrupt rate and square-wave output
// frequency"), or 0 when RS3-RS0 = 0000 or the divider is off. RS 0001
// and 0010 give 256 Hz and 128 Hz with this time base, like 1000 and 1001.
func (r *RTC) periodTicks() int64 {
	rs := r.ram[RegA] & aRateMask
	switch {
	case rs == 0 || !r.dividerRunning():
		return 0
	case rs <= 2:
		return 1 << (rs + 6)
	default:
		return 1 << (rs - 1) // 0011 = 8192 Hz ... 1111 = 2 Hz
	}
}

// ticks returns t in 32.768 kHz ticks since the Unix epoch. Periods are
// counted from whole seconds of guest time, as every rate divides the
// time base, so the periodic phase follows from the guest clock alone.
func ticks(t time.Time) int64 {
	return t.Unix()*timeBase + int64(t.Nanosecond())*timeBase/int64(time.Second)
}

// tickTime is the first instant at or after tick n.
func tickTime(n int64) time.Time {
	sec := floorDiv(n, timeBase)
	rem := n - sec*timeBase
	return time.Unix(sec, (rem*int64(time.Second)+timeBase-1)/timeBase).UTC()
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// latch sets register C's flags for the events between the last
// evaluation and now (guest time) and brings the line up to date.
func (r *RTC) latch() {
	now := r.guestNow()
	last := r.lastEval
	r.lastEval = now
	if !now.After(last) {
		return // no time passed, or the host's clock stepped back: start afresh
	}
	if p := r.periodTicks(); p != 0 && floorDiv(ticks(now), p) > floorDiv(ticks(last), p) {
		r.ram[RegC] |= cPF
	}
	if r.updating() && now.Unix() > last.Unix() {
		r.ram[RegC] |= cUF // an update cycle ended at a second boundary
		if at, ok := r.nextAlarm(last); ok && !at.After(now) {
			r.ram[RegC] |= cAF
		}
	}
}

// refresh recomputes IRQF from the flags and enables, drives the line on
// a change, and arms the timer for the next event that would raise it.
// Callers hold mu; the line callback runs under it so that level changes
// reach the interrupt controller in the order they were computed.
func (r *RTC) refresh() {
	level := r.ram[RegC]&r.ram[RegB]&cSources != 0
	if level {
		r.ram[RegC] |= cIRQF
	} else {
		r.ram[RegC] &^= cIRQF
	}
	if level != r.level {
		r.level = level
		if r.irq != nil {
			r.irq(level)
		}
	}
	r.arm()
}

// nextEvent returns the guest time of the next event of an enabled source
// whose flag is clear, while the line is down.
func (r *RTC) nextEvent(now time.Time) (time.Time, bool) {
	if r.level {
		return time.Time{}, false
	}
	var next time.Time
	found := false
	consider := func(t time.Time) {
		if !found || t.Before(next) {
			next, found = t, true
		}
	}
	enabled := r.ram[RegB] &^ r.ram[RegC]
	if p := r.periodTicks(); p != 0 && enabled&bPIE != 0 {
		consider(tickTime((floorDiv(ticks(now), p) + 1) * p))
	}
	if r.updating() && enabled&bUIE != 0 {
		consider(time.Unix(now.Unix()+1, 0).UTC())
	}
	if r.updating() && enabled&bAIE != 0 {
		if at, ok := r.nextAlarm(now); ok {
			consider(at)
		}
	}
	return next, found
}

// arm (re)starts the host timer for the next event, or stops it when none
// is due or the RTC is paused or closed.
func (r *RTC) arm() {
	now := r.guestNow()
	next, ok := r.nextEvent(now)
	if r.paused || r.closed {
		ok = false
	}
	if ok && r.timer != nil && next.Equal(r.deadline) {
		return // already armed for it
	}
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	r.gen++
	if !ok {
		return
	}
	gen := r.gen
	r.deadline = next
	r.timer = r.clk.AfterFunc(max(next.Sub(now), 0), func() { r.fire(gen) })
}

// fire is the host timer's callback. A timer that arm replaced or stopped
// after it had already fired finds the generation changed and does nothing.
func (r *RTC) fire(gen uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if gen != r.gen || r.paused || r.closed {
		return
	}
	r.timer = nil
	r.latch()
	r.refresh()
}

// Pause stops the RTC's timer while the machine is paused, so that no
// interrupt reaches the interrupt controllers while their state is saved.
// Events that fall in the pause are coalesced into the flags at Resume.
func (r *RTC) Pause() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.paused = true
	r.arm()
}

// Resume restarts what Pause stopped.
func (r *RTC) Resume() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.paused = false
	r.latch()
	r.refresh()
}

// Close stops the RTC's timer for good; the line callback is not called
// once Close has returned.
func (r *RTC) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	r.arm()
}

// alarmValues returns the values of a time field (0 to n-1) an alarm byte
// matches: all of them for a "don't care" byte (bits 7 and 6 set, data
// sheet "Alarm"), else those whose register encoding in the current data
// mode equals the byte (none for a byte no time has).
func (r *RTC) alarmValues(alarm byte, n int, enc func(int) byte) []int {
	var vs []int
	for v := range n {
		if alarm&dontCare == dontCare || enc(v) == alarm {
			vs = append(vs, v)
		}
	}
	return vs
}

// nextAlarm returns the first whole second of guest time after t whose
// seconds, minutes and hours registers match the alarm registers: the
// alarm compares them at the end of each update cycle.
func (r *RTC) nextAlarm(t time.Time) (time.Time, bool) {
	hs := r.alarmValues(r.ram[RegHoursAlarm], 24, r.hourReg)
	ms := r.alarmValues(r.ram[RegMinutesAlarm], 60, r.toReg)
	ss := r.alarmValues(r.ram[RegSecondsAlarm], 60, r.toReg)
	if len(hs) == 0 || len(ms) == 0 || len(ss) == 0 {
		return time.Time{}, false
	}
	t = t.UTC()
	y, mo, d := t.Date()
	after := t.Hour()*3600 + t.Minute()*60 + t.Second() // seconds into t's day
	for day := range 2 {
		for _, h := range hs {
			if day == 0 && (h+1)*3600 <= after {
				continue
			}
			for _, m := range ms {
				if day == 0 && h*3600+(m+1)*60 <= after {
					continue
				}
				for _, s := range ss {
					if day == 0 && h*3600+m*60+s <= after {
						continue
					}
					return time.Date(y, mo, d+day, h, m, s, 0, time.UTC), true
				}
			}
		}
	}
	return time.Time{}, false // not reached: every match recurs daily
}
