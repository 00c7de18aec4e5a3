package cmosrtc

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// clock is a fake host clock whose timers fire only when a test steps it.
type clock struct {
	t      time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at   time.Time
	f    func()
	dead bool // stopped or fired
}

func (ft *fakeTimer) Stop() bool { was := !ft.dead; ft.dead = true; return was }

func (c *clock) Now() time.Time { return c.t }

func (c *clock) AfterFunc(d time.Duration, f func()) Timer {
	ft := &fakeTimer{at: c.t.Add(d), f: f}
	c.timers = append(c.timers, ft)
	return ft
}

// armed returns the live timers.
func (c *clock) armed() []*fakeTimer {
	var live []*fakeTimer
	for _, ft := range c.timers {
		if !ft.dead {
			live = append(live, ft)
		}
	}
	return live
}

// step fires the earliest live timer due by end, moving the clock to its
// deadline if that is later than now; it reports whether one fired.
func (c *clock) step(end time.Time) bool {
	var next *fakeTimer
	for _, ft := range c.armed() {
		if !ft.at.After(end) && (next == nil || ft.at.Before(next.at)) {
			next = ft
		}
	}
	if next == nil {
		return false
	}
	next.dead = true
	if next.at.After(c.t) {
		c.t = next.at
	}
	next.f()
	return true
}

// line records the RTC's interrupt line.
type line struct{ levels []bool }

func (l *line) set(level bool) { l.levels = append(l.levels, level) }
func (l *line) up() bool       { return len(l.levels) > 0 && l.levels[len(l.levels)-1] }

// irqRTC is an RTC at fixed (a whole second) with its line recorded, the
// periodic rate at 0000 (none) so that PF stays out of the way of the
// other sources, and register C read once, so no flag is pending.
func irqRTC(t *testing.T) (*RTC, *clock, *line) {
	t.Helper()
	c, l := &clock{t: fixed}, &line{}
	r := NewWithClock(0, 0, l.set, c)
	wr(r, RegA, aDivNormal)
	rd(r, RegC)
	return r, c, l
}

// run steps the clock by d, acknowledging each interrupt as a guest's
// handler does (reading register C), and returns the register C values
// read and the guest times they were raised at.
func run(t *testing.T, r *RTC, c *clock, l *line, d time.Duration) (cs []byte, at []time.Time) {
	t.Helper()
	end := c.t.Add(d)
	for c.step(end) {
		if l.up() {
			at = append(at, c.t)
			cs = append(cs, rd(r, RegC))
			if l.up() {
				t.Fatalf("line still up after reading register C")
			}
		}
	}
	c.t = end
	return cs, at
}

func TestPeriodicRates(t *testing.T) {
	// Data sheet Table 4 with a 32.768 kHz time base.
	hz := map[byte]int64{1: 256, 2: 128, 3: 8192, 4: 4096, 5: 2048, 6: 1024, 7: 512, 8: 256,
		9: 128, 10: 64, 11: 32, 12: 16, 13: 8, 14: 4, 15: 2}
	for rs := byte(1); rs <= 15; rs++ {
		r, c, l := irqRTC(t)
		wr(r, RegA, aDivNormal|rs)
		wr(r, RegB, b24Hour|bPIE)
		period := (time.Second + time.Duration(hz[rs]) - 1) / time.Duration(hz[rs])
		if a := c.armed(); len(a) != 1 || a[0].at.Sub(c.t) != period {
			t.Fatalf("RS=%d: armed %v, want one timer in %v", rs, a, period)
		}
		cs, at := run(t, r, c, l, time.Second)
		if int64(len(cs)) != hz[rs] {
			t.Errorf("RS=%d: %d interrupts in a second, want %d", rs, len(cs), hz[rs])
		}
		for i, v := range cs {
			if v&^cUF != cIRQF|cPF { // the last period ends with the second
				t.Fatalf("RS=%d: interrupt %d: register C %#x, want IRQF|PF", rs, i, v)
			}
		}
		if d := at[1].Sub(at[0]); d > period || d < period-1 {
			t.Errorf("RS=%d: interrupts %v apart, want %v", rs, at[1].Sub(at[0]), period)
		}
	}
}

func TestPeriodicFlags(t *testing.T) {
	tests := []struct {
		name      string
		regA      byte
		pie       bool
		wantC     byte // register C after 10 ms
		wantLine  bool
		wantTimer bool
	}{
		{"PIE set", aDivNormal | 6, true, cIRQF | cPF, true, true},
		{"PIE clear: PF without IRQF, no timer", aDivNormal | 6, false, cPF, false, false},
		{"RS 0000: no PF", aDivNormal, true, 0, false, false},
		{"divider 4.194304 MHz", 0x00 | 6, true, 0, false, false},
		{"divider 1.048576 MHz", 0x10 | 6, true, 0, false, false},
		{"divider held in reset", 0x60 | 6, true, 0, false, false},
		{"divider reset 111", 0x70 | 6, true, 0, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, c, l := irqRTC(t)
			wr(r, RegA, tt.regA)
			b := byte(b24Hour)
			if tt.pie {
				b |= bPIE
			}
			wr(r, RegB, b)
			if got := len(c.armed()) > 0; got != tt.wantTimer {
				t.Fatalf("timer armed = %v, want %v", got, tt.wantTimer)
			}
			end := c.t.Add(10 * time.Millisecond)
			for c.step(end) {
			}
			c.t = end
			if l.up() != tt.wantLine {
				t.Fatalf("line up = %v, want %v", l.up(), tt.wantLine)
			}
			if got := rd(r, RegC); got != tt.wantC {
				t.Fatalf("register C = %#x, want %#x", got, tt.wantC)
			}
			if l.up() {
				t.Fatal("reading register C left the line up")
			}
			if got := rd(r, RegC); got != 0 {
				t.Fatalf("second read of register C = %#x, want 0", got)
			}
		})
	}
}

// TestLineOnlyWhileNotAcknowledged: one rising edge per interrupt, no
// timer while the line waits for the guest, and enabling PIE over a
// pending PF raises the line at once (IRQF = PF·PIE).
func TestLineOnlyWhileNotAcknowledged(t *testing.T) {
	r, c, l := irqRTC(t)
	wr(r, RegA, aDivNormal|6)
	wr(r, RegB, b24Hour|bPIE)
	c.step(c.t.Add(time.Second))
	if !l.up() || len(c.armed()) != 0 {
		t.Fatalf("after a period: line %v, %d timers armed; want up and none", l.up(), len(c.armed()))
	}
	c.t = c.t.Add(100 * time.Millisecond) // within the same second: no UF
	if v := rd(r, RegC); v != cIRQF|cPF || l.up() || len(c.armed()) != 1 {
		t.Fatalf("register C %#x, line %v, %d timers; want IRQF|PF, down, one", v, l.up(), len(c.armed()))
	}
	wr(r, RegB, b24Hour)
	c.t = c.t.Add(100 * time.Millisecond)
	wr(r, RegB, b24Hour|bPIE)
	if !l.up() {
		t.Fatal("enabling PIE over a pending PF did not raise the line")
	}
	wr(r, RegB, b24Hour)
	if l.up() {
		t.Fatal("clearing PIE left IRQF's line up")
	}
	if want := []bool{true, false, true, false}; !slices.Equal(l.levels, want) {
		t.Fatalf("line went %v, want %v", l.levels, want)
	}
}

// TestPeriodicCoalesces: periods the host's timer missed (a busy host)
// set PF once, and the next period is counted from now.
func TestPeriodicCoalesces(t *testing.T) {
	r, c, l := irqRTC(t)
	wr(r, RegA, aDivNormal|6) // 1024 Hz
	wr(r, RegB, b24Hour|bPIE)
	c.t = c.t.Add(300*time.Millisecond + 100*time.Microsecond) // ~307 periods late
	cs, _ := run(t, r, c, l, 0)
	if len(cs) != 1 || cs[0] != cIRQF|cPF {
		t.Fatalf("late timer: register C reads %#x, want one IRQF|PF", cs)
	}
	a := c.armed()
	if len(a) != 1 || !a[0].at.After(c.t) || a[0].at.Sub(c.t) > time.Second/1024 {
		t.Fatalf("after the late interrupt: timers %v, want one within a period", a)
	}
}

func TestUpdateInterrupt(t *testing.T) {
	r, c, l := irqRTC(t)
	c.t = c.t.Add(250 * time.Millisecond)
	rd(r, RegC)
	wr(r, RegB, b24Hour|bUIE)
	cs, at := run(t, r, c, l, 5*time.Second)
	if len(cs) != 5 {
		t.Fatalf("%d update interrupts in 5 s, want 5", len(cs))
	}
	for i := range cs {
		if cs[i] != cIRQF|cUF || at[i].Nanosecond() != 0 {
			t.Errorf("interrupt %d at %v: register C %#x, want IRQF|UF at a whole second", i, at[i], cs[i])
		}
	}
	// SET stops update cycles and clears UIE (data sheet, register B).
	wr(r, RegB, b24Hour|bSet|bUIE)
	if rd(r, RegB)&bUIE != 0 || len(c.armed()) != 0 {
		t.Fatal("SET left UIE set or a timer armed")
	}
	wr(r, RegB, b24Hour|bUIE)
	wr(r, RegA, 0x60|6) // divider in reset: no update cycles
	if len(c.armed()) != 0 {
		t.Fatal("a timer is armed with the divider in reset")
	}
}

func TestAlarm(t *testing.T) {
	const dc = dontCare
	tests := []struct {
		name    string
		regB    byte
		h, m, s byte
		in      time.Duration // from fixed, 15:04:05; 0 = never
	}{
		{"exact", b24Hour, 0x15, 0x04, 0x10, 5 * time.Second},
		{"seconds only", b24Hour, dc, dc, 0x30, 25 * time.Second},
		{"top of the minute", b24Hour, dc, 0xFF, 0x00, 55 * time.Second},
		{"top of the hour", b24Hour, 0xC5, 0x00, 0x00, 55*time.Minute + 55*time.Second},
		{"next hour", b24Hour, 0x16, 0x00, 0x00, 55*time.Minute + 55*time.Second},
		{"the current second: tomorrow", b24Hour, 0x15, 0x04, 0x05, 24 * time.Hour},
		{"earlier today: tomorrow", b24Hour, 0x01, 0x00, 0x00, 9*time.Hour + 55*time.Minute + 55*time.Second},
		{"every second", b24Hour, dc, dc, dc, time.Second},
		{"hour matches, minutes passed", b24Hour, 0x15, 0x00, dc, 23*time.Hour + 55*time.Minute + 55*time.Second},
		{"12-hour BCD, 4 PM", 0, 0x80 | 0x04, 0x00, 0x00, 55*time.Minute + 55*time.Second},
		{"12-hour BCD, 3 AM", 0, 0x03, 0x00, 0x00, 11*time.Hour + 55*time.Minute + 55*time.Second},
		{"binary", b24Hour | bBinary, 16, 0, 0, 55*time.Minute + 55*time.Second},
		{"invalid BCD seconds", b24Hour, dc, dc, 0x7A, 0},
		{"hour 24", b24Hour, 0x24, dc, dc, 0},
		{"12-hour hour 0", 0, 0x00, dc, dc, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, c, l := irqRTC(t)
			wr(r, RegB, tt.regB)
			wr(r, RegHoursAlarm, tt.h)
			wr(r, RegMinutesAlarm, tt.m)
			wr(r, RegSecondsAlarm, tt.s)
			rd(r, RegC)
			wr(r, RegB, tt.regB|bAIE)
			a := c.armed()
			if tt.in == 0 {
				if len(a) != 0 {
					t.Fatalf("timer armed for %v, want none", a[0].at)
				}
				return
			}
			if len(a) != 1 || a[0].at.Sub(fixed) != tt.in {
				t.Fatalf("armed %v, want one timer in %v", a, tt.in)
			}
			// Not yet a second before; AF and UF at the match.
			c.t = fixed.Add(tt.in - time.Second)
			if v := rd(r, RegC); v&cAF != 0 || l.up() {
				t.Fatalf("a second early: register C %#x, line %v", v, l.up())
			}
			cs, at := run(t, r, c, l, time.Second)
			if len(cs) != 1 || cs[0] != cIRQF|cAF|cUF || !at[0].Equal(fixed.Add(tt.in)) {
				t.Fatalf("register C %#x at %v, want IRQF|AF|UF at %v", cs, at, fixed.Add(tt.in))
			}
		})
	}
}

// TestAlarmFlagWithoutAIE: AF is set at the match whatever AIE says, and
// an RTC without enabled sources arms no timer.
func TestAlarmFlagWithoutAIE(t *testing.T) {
	r, c, l := irqRTC(t)
	wr(r, RegSecondsAlarm, 0x07)
	wr(r, RegMinutesAlarm, dontCare)
	wr(r, RegHoursAlarm, dontCare)
	if len(c.armed()) != 0 {
		t.Fatal("timer armed with no interrupt enabled")
	}
	c.t = c.t.Add(3 * time.Second)
	if v := rd(r, RegC); v != cAF|cUF || l.up() {
		t.Fatalf("register C %#x, line %v; want AF|UF, down", v, l.up())
	}
}

func TestPauseResumeClose(t *testing.T) {
	r, c, l := irqRTC(t)
	wr(r, RegA, aDivNormal|6)
	wr(r, RegB, b24Hour|bPIE)
	r.Pause()
	if len(c.armed()) != 0 {
		t.Fatal("a timer is armed while paused")
	}
	c.t = c.t.Add(time.Second)
	if l.up() {
		t.Fatal("the line rose while paused")
	}
	r.Resume()
	if !l.up() || len(c.armed()) != 0 {
		t.Fatalf("after resume: line %v, %d timers; want the missed periods' one interrupt", l.up(), len(c.armed()))
	}
	rd(r, RegC)
	stale := c.armed()
	if len(stale) != 1 {
		t.Fatalf("%d timers armed after the ack, want 1", len(stale))
	}
	r.Close()
	if len(c.armed()) != 0 {
		t.Fatal("a timer is armed after Close")
	}
	c.t = c.t.Add(time.Second)
	stale[0].f() // a callback already under way when Close ran
	if l.up() {
		t.Fatal("the line rose after Close")
	}
}

func TestRestoreRearms(t *testing.T) {
	tests := []struct {
		name     string
		pending  bool // IRQF set when saved
		wantLine bool
	}{
		{"periodic running", false, false},
		{"interrupt pending", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, c, _ := irqRTC(t)
			wr(r, RegA, aDivNormal|15) // 2 Hz
			wr(r, RegB, b24Hour|bPIE)
			if tt.pending {
				c.step(c.t.Add(time.Second))
			}
			r.Pause() // as Machine.Pause does before saving
			s := r.SaveState()
			c2, l2 := &clock{t: c.t.Add(100 * time.Millisecond)}, &line{}
			r2 := NewWithClock(0, 0, l2.set, c2)
			r2.RestoreState(s)
			if l2.up() != tt.wantLine {
				t.Fatalf("restored line up = %v, want %v", l2.up(), tt.wantLine)
			}
			if tt.pending {
				if v := rd(r2, RegC); v != cIRQF|cPF {
					t.Fatalf("restored register C %#x, want IRQF|PF", v)
				}
			}
			a := c2.armed()
			if len(a) != 1 || a[0].at.Sub(c2.t) <= 0 || a[0].at.Sub(c2.t) > 500*time.Millisecond {
				t.Fatalf("restored timers %v, want the next 2 Hz period", a)
			}
			if cs, _ := run(t, r2, c2, l2, time.Second); len(cs) != 2 {
				t.Fatalf("%d interrupts in the restored RTC's first second, want 2", len(cs))
			}
		})
	}
}

// TestHostTimerClose runs the RTC on the host's clock and timers at
// 8192 Hz with a reader acknowledging concurrently (for the race
// detector), and checks that the line callback is never called once
// Close has returned. It asserts nothing about rates.
func TestHostTimerClose(t *testing.T) {
	var mu sync.Mutex
	closed, late := false, 0
	r := New(0, 0, func(bool) {
		mu.Lock()
		if closed {
			late++
		}
		mu.Unlock()
	})
	wr(r, RegA, aDivNormal|3)
	wr(r, RegB, b24Hour|bPIE|bUIE)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 2000 {
			rd(r, RegC)
			time.Sleep(10 * time.Microsecond)
		}
	}()
	<-done
	r.Pause()
	r.Resume()
	r.Close()
	mu.Lock()
	closed = true
	mu.Unlock()
	time.Sleep(5 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if late != 0 {
		t.Fatalf("the line callback ran %d times after Close", late)
	}
}
