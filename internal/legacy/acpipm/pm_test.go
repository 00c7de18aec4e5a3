package acpipm

import (
	"testing"
	"time"

	"github.com/govisor/govisor/internal/iobus"
)

type fixture struct {
	pm     *PM
	t      time.Time
	offs   int
	levels []bool
}

func newFixture() *fixture {
	f := &fixture{t: time.Unix(1000, 0)}
	f.pm = NewWithClock(func() { f.offs++ }, func(l bool) { f.levels = append(f.levels, l) }, func() time.Time { return f.t })
	return f
}

func (f *fixture) line() bool { return len(f.levels) > 0 && f.levels[len(f.levels)-1] }

func read16(d iobus.Device, off uint64) uint16 {
	b := make([]byte, 2)
	d.Read(off, b)
	return uint16(b[0]) | uint16(b[1])<<8
}

func write16(d iobus.Device, off uint64, v uint16) { d.Write(off, []byte{byte(v), byte(v >> 8)}) }

func read32(d iobus.Device) uint32 {
	b := make([]byte, 4)
	d.Read(0, b)
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func TestControl(t *testing.T) {
	tests := []struct {
		name     string
		writes   []uint16
		offs     int
		ignored  uint64
		readBack uint16
	}{
		{"SCI_EN reads as 1", nil, 0, 0, cntSCIEn},
		{"S5 powers off", []uint16{SleepTypeS5<<cntSlpShift | cntSlpEn}, 1, 0, cntSCIEn | SleepTypeS5<<cntSlpShift},
		{"SLP_TYP then SLP_EN", []uint16{SleepTypeS5 << cntSlpShift, SleepTypeS5<<cntSlpShift | cntSlpEn}, 1, 0, cntSCIEn | SleepTypeS5<<cntSlpShift},
		{"S3 ignored", []uint16{1<<cntSlpShift | cntSlpEn}, 0, 1, cntSCIEn | 1<<cntSlpShift},
		{"S5 type without SLP_EN", []uint16{SleepTypeS5 << cntSlpShift}, 0, 0, cntSCIEn | SleepTypeS5<<cntSlpShift},
		{"reserved bits dropped", []uint16{0xC1F8}, 0, 0, cntSCIEn},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture()
			c := f.pm.ControlDevice()
			for _, v := range tt.writes {
				write16(c, 0, v)
			}
			if f.offs != tt.offs || f.pm.IgnoredSleeps() != tt.ignored {
				t.Fatalf("powerOff %d times, ignored %d; want %d, %d", f.offs, f.pm.IgnoredSleeps(), tt.offs, tt.ignored)
			}
			if got := read16(c, 0); got != tt.readBack {
				t.Fatalf("PM1_CNT = %#x, want %#x", got, tt.readBack)
			}
		})
	}
}

func TestControlByteWrites(t *testing.T) {
	f := newFixture()
	c := f.pm.ControlDevice()
	c.Write(1, []byte{(SleepTypeS5<<cntSlpShift | cntSlpEn) >> 8})
	if f.offs != 1 {
		t.Fatal("a byte write of the high half did not power off")
	}
}

func TestPowerButton(t *testing.T) {
	f := newFixture()
	e := f.pm.EventDevice()
	f.pm.PowerButton()
	if f.line() || read16(e, 0)&PwrBtnSts == 0 {
		t.Fatalf("disabled power button: line %v sts %#x", f.line(), read16(e, 0))
	}
	write16(e, 0, PwrBtnSts) // W1C
	if read16(e, 0)&PwrBtnSts != 0 {
		t.Fatal("PWRBTN_STS not cleared by writing 1")
	}
	write16(e, 2, PwrBtnSts)
	if got := read16(e, 2); got != PwrBtnSts {
		t.Fatalf("PM1_EN = %#x", got)
	}
	f.pm.PowerButton()
	if !f.line() {
		t.Fatal("power button with PWRBTN_EN did not raise the SCI")
	}
	write16(e, 0, 0) // writing 0 clears nothing
	if !f.line() {
		t.Fatal("writing 0 to PM1_STS cleared the event")
	}
	e.Write(0, []byte{0, 0, 0, 0}) // 32-bit write: STS unchanged, EN cleared
	if f.line() {
		t.Fatal("clearing PWRBTN_EN did not lower the SCI")
	}
	write16(e, 2, PwrBtnSts)
	if !f.line() {
		t.Fatal("re-enabling a pending event did not raise the SCI")
	}
	e.Write(1, []byte{PwrBtnSts >> 8})
	if f.line() {
		t.Fatal("byte W1C of PWRBTN_STS did not lower the SCI")
	}
	for i := 1; i < len(f.levels); i++ {
		if f.levels[i] == f.levels[i-1] {
			t.Fatalf("SCI callback repeated a level: %v", f.levels)
		}
	}
	write16(e, 2, 0xFFFF)
	if got := read16(e, 2); got != enMask {
		t.Fatalf("PM1_EN accepts reserved bits: %#x", got)
	}
}

func TestTimer(t *testing.T) {
	f := newFixture()
	tm := f.pm.TimerDevice()
	if v := read32(tm); v != 0 {
		t.Fatalf("timer starts at %d", v)
	}
	f.t = f.t.Add(time.Second)
	if v := read32(tm); v != TimerFrequency&timerMask {
		t.Fatalf("after 1 s timer = %d, want %d", v, TimerFrequency&timerMask)
	}
	f.t = f.t.Add(time.Millisecond)
	if v := read32(tm); v != (TimerFrequency+TimerFrequency/1000)&timerMask {
		t.Fatalf("after 1.001 s timer = %d", v)
	}
	tm.Write(0, []byte{0, 0, 0, 0})
	if v := read32(tm); v == 0 {
		t.Fatal("timer is writable")
	}
	// 24-bit wrap; the top byte always reads 0.
	f.t = f.t.Add(5 * time.Second)
	if v := read32(tm); v > timerMask {
		t.Fatalf("timer exceeds 24 bits: %#x", v)
	}
	b := []byte{0}
	tm.Read(3, b)
	if b[0] != 0 {
		t.Fatalf("timer byte 3 = %#x", b[0])
	}
}

func TestTimerStatus(t *testing.T) {
	f := newFixture()
	e := f.pm.EventDevice()
	write16(e, 2, TmrSts)
	if read16(e, 0)&TmrSts != 0 || f.line() {
		t.Fatal("TMR_STS set before bit 23 toggled")
	}
	f.t = f.t.Add(3 * time.Second) // 10.7M ticks: bit 23 toggled
	if read16(e, 0)&TmrSts == 0 || !f.line() {
		t.Fatal("TMR_STS not set after bit 23 toggled")
	}
	write16(e, 0, TmrSts)
	if read16(e, 0)&TmrSts != 0 || f.line() {
		t.Fatal("TMR_STS not cleared")
	}
}

func TestSaveRestore(t *testing.T) {
	f := newFixture()
	write16(f.pm.EventDevice(), 2, PwrBtnSts)
	f.pm.PowerButton()
	write16(f.pm.ControlDevice(), 0, 3<<cntSlpShift|2)
	f.t = f.t.Add(1234 * time.Millisecond)
	s := f.pm.SaveState()

	g := newFixture()
	g.t = time.Unix(5000, 0)
	g.pm.RestoreState(s)
	if !g.line() {
		t.Fatal("restore did not raise the pending SCI")
	}
	if got := g.pm.SaveState(); got != s {
		t.Fatalf("restored %+v, want %+v", got, s)
	}
	g.t = g.t.Add(time.Second)
	if v := read32(g.pm.TimerDevice()); v != (s.Timer+TimerFrequency)&timerMask {
		t.Fatalf("timer after restore = %d, want %d", v, s.Timer+TimerFrequency)
	}
}

func FuzzPM(f *testing.F) {
	f.Add([]byte{0x00, 0x00, 0xFF, 0x21, 0x01, 0x34})
	f.Add([]byte{0x12, 0x01, 0x3C, 0x30, 0x02, 0x00})
	f.Fuzz(func(t *testing.T, prog []byte) {
		fx := newFixture()
		devs := []iobus.Device{fx.pm.EventDevice(), fx.pm.ControlDevice(), fx.pm.TimerDevice()}
		for i := 0; i+2 < len(prog); i += 3 {
			op, a, b := prog[i], prog[i+1], prog[i+2]
			d := devs[int(op&3)%3]
			data := make([]byte, 1<<(op>>2&3))
			for j := range data {
				data[j] = a ^ byte(j)*b
			}
			off := uint64(op >> 4 & 7)
			if op&0x80 != 0 {
				d.Read(off, data)
			} else {
				d.Write(off, data)
			}
			if b&1 != 0 {
				fx.pm.PowerButton()
			}
			fx.t = fx.t.Add(time.Duration(b) * time.Millisecond)
			fx.pm.mu.Lock()
			want := fx.pm.sts&fx.pm.en&enMask != 0
			fx.pm.mu.Unlock()
			if fx.line() != want {
				t.Fatalf("SCI line %v, registers say %v", fx.line(), want)
			}
		}
		fx.pm.RestoreState(fx.pm.SaveState())
	})
}
