package cmosrtc

import (
	"testing"
	"time"

	"github.com/govisor/govisor/internal/iobus"
)

var _ iobus.Device = (*RTC)(nil)

func newRTC(t time.Time) (*RTC, *clock) {
	c := &clock{t: t}
	return NewWithClock(0, 0, nil, c), c
}

func rd(r *RTC, reg byte) byte {
	r.Write(0, []byte{reg})
	d := []byte{0}
	r.Read(1, d)
	return d[0]
}

func wr(r *RTC, reg, v byte) {
	r.Write(0, []byte{reg})
	r.Write(1, []byte{v})
}

// 2026-11-22 15:04:05 UTC is a Sunday.
var fixed = time.Date(2026, 11, 22, 15, 4, 5, 0, time.UTC)

func TestTimeRegisters(t *testing.T) {
	tests := []struct {
		name string
		regB byte
		at   time.Time
		want map[byte]byte
	}{
		{"BCD 24h", b24Hour, fixed, map[byte]byte{
			RegSeconds: 0x05, RegMinutes: 0x04, RegHours: 0x15, RegWeekday: 0x01,
			RegDay: 0x22, RegMonth: 0x11, RegYear: 0x26, RegCentury: 0x20}},
		{"binary 24h", b24Hour | bBinary, fixed, map[byte]byte{
			RegSeconds: 5, RegMinutes: 4, RegHours: 15, RegWeekday: 1,
			RegDay: 22, RegMonth: 11, RegYear: 26, RegCentury: 20}},
		{"BCD 12h afternoon", 0, fixed, map[byte]byte{RegHours: 0x80 | 0x03}},
		{"binary 12h afternoon", bBinary, fixed, map[byte]byte{RegHours: 0x80 | 3}},
		{"12h midnight", 0, time.Date(1999, 12, 31, 0, 30, 0, 0, time.UTC), map[byte]byte{
			RegHours: 0x12, RegYear: 0x99, RegCentury: 0x19, RegWeekday: 0x06}},
		{"12h noon", 0, time.Date(2000, 1, 1, 12, 0, 59, 0, time.UTC), map[byte]byte{
			RegHours: 0x80 | 0x12, RegSeconds: 0x59, RegYear: 0x00, RegCentury: 0x20}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newRTC(tt.at)
			wr(r, RegB, tt.regB)
			for reg, want := range tt.want {
				if got := rd(r, reg); got != want {
					t.Errorf("reg %#x = %#x, want %#x", reg, got, want)
				}
			}
		})
	}
}

func TestClockRuns(t *testing.T) {
	r, c := newRTC(fixed)
	c.t = c.t.Add(61 * time.Second)
	if s, m := rd(r, RegSeconds), rd(r, RegMinutes); s != 0x06 || m != 0x05 {
		t.Fatalf("after 61 s: %x:%x, want 05:06", m, s)
	}
}

func TestSetTime(t *testing.T) {
	for _, binary := range []bool{false, true} {
		r, c := newRTC(fixed)
		enc := func(n byte) byte {
			if binary {
				return n
			}
			return n/10<<4 | n%10
		}
		b := byte(b24Hour)
		if binary {
			b |= bBinary
		}
		wr(r, RegB, b)
		// The sequence Linux's mc146818_set_time uses: SET, write, clear SET.
		wr(r, RegB, b|bSet)
		c.t = c.t.Add(10 * time.Second) // halted: no update while SET
		if got := rd(r, RegSeconds); got != enc(5) {
			t.Fatalf("binary=%v: seconds moved to %#x while SET", binary, got)
		}
		for reg, v := range map[byte]byte{RegYear: 30, RegCentury: 20, RegMonth: 2, RegDay: 28, RegHours: 23, RegMinutes: 59, RegSeconds: 58} {
			wr(r, reg, enc(v))
		}
		wr(r, RegB, b)
		c.t = c.t.Add(3 * time.Second)
		want := map[byte]byte{RegYear: 30, RegMonth: 3, RegDay: 1, RegHours: 0, RegMinutes: 0, RegSeconds: 1, RegWeekday: 6}
		for reg, v := range want {
			if got := rd(r, reg); got != enc(v) {
				t.Errorf("binary=%v: reg %#x = %#x, want %#x", binary, reg, got, enc(v))
			}
		}
	}
}

func TestSetTimeWithoutSETBit(t *testing.T) {
	r, _ := newRTC(fixed)
	wr(r, RegMinutes, 0x30)
	if m, h := rd(r, RegMinutes), rd(r, RegHours); m != 0x30 || h != 0x15 {
		t.Fatalf("direct minute write: %x:%x, want 15:30", h, m)
	}
}

func TestSetTime12Hour(t *testing.T) {
	r, _ := newRTC(fixed)
	wr(r, RegB, bSet)
	wr(r, RegHours, 0x80|0x11) // 11 PM
	wr(r, RegB, 0)
	wr(r, RegB, b24Hour)
	if h := rd(r, RegHours); h != 0x23 {
		t.Fatalf("11 PM reads %#x in 24-hour mode, want 0x23", h)
	}
}

func TestRegisterAUIP(t *testing.T) {
	r, c := newRTC(fixed)
	if a := rd(r, RegA); a != aDefault {
		t.Fatalf("register A = %#x, want %#x", a, aDefault)
	}
	c.t = fixed.Add(time.Second - 100*time.Microsecond)
	if a := rd(r, RegA); a&aUIP == 0 {
		t.Fatal("UIP clear 100 us before the update")
	}
	wr(r, RegB, b24Hour|bSet)
	if a := rd(r, RegA); a&aUIP != 0 {
		t.Fatal("UIP set while SET halts updates")
	}
	wr(r, RegA, 0xFF)
	if a := rd(r, RegA); a != 0x7F {
		t.Fatalf("UIP is writable: %#x", a)
	}
}

func TestRegistersCD(t *testing.T) {
	r, c := newRTC(fixed)
	if d := rd(r, RegD); d != dValid {
		t.Fatalf("register D = %#x", d)
	}
	wr(r, RegD, 0)
	if d := rd(r, RegD); d != dValid {
		t.Fatalf("register D writable: %#x", d)
	}
	if v := rd(r, RegC); v != 0 {
		t.Fatalf("register C = %#x before any update", v)
	}
	c.t = c.t.Add(time.Second)
	wr(r, RegB, b24Hour|bUIE)
	// PF too: the default rate (RS 0110) ran for a second, PIE or not.
	if v := rd(r, RegC); v != cUF|cPF|cIRQF {
		t.Fatalf("register C = %#x after an update with UIE, want UF|PF|IRQF", v)
	}
	if v := rd(r, RegC); v != 0 {
		t.Fatalf("register C = %#x on second read, want 0", v)
	}
}

func TestIndexAndRAM(t *testing.T) {
	r, _ := newRTC(fixed)
	wr(r, 0x80|0x40, 0xAB) // NMI disabled, RAM byte 0x40
	if !r.NMIDisabled() {
		t.Fatal("NMI disable bit not kept")
	}
	if v := rd(r, 0x40); v != 0xAB || r.NMIDisabled() {
		t.Fatalf("RAM byte = %#x, NMI disabled %v", v, r.NMIDisabled())
	}
	d := []byte{0}
	r.Read(0, d)
	if d[0] != 0xFF {
		t.Fatalf("index port reads %#x", d[0])
	}
	// A 2-byte write sets index and data together.
	r.Write(0, []byte{0x41, 0xCD})
	if v := rd(r, 0x41); v != 0xCD {
		t.Fatalf("wide write stored %#x", v)
	}
}

func TestMemoryBytes(t *testing.T) {
	const mib, gib = 1 << 20, 1 << 30
	tests := []struct {
		below, above uint64
		ext, mid, hi uint32
	}{
		{512 * mib, 0, 0xFFFF, (512 - 16) * 16, 0},
		{32 * mib, 0, 31 * 1024, 16 * 16, 0},
		{8 * mib, 0, 7 * 1024, 0, 0},
		{3 * gib, 5 * gib, 0xFFFF, (3*1024 - 16) * 16, 5 * 16 * 1024},
		{4 * gib, 0, 0xFFFF, 0xFF00, 0},
		{8 * gib, 0, 0xFFFF, 0xFFFF, 0},
	}
	for _, tt := range tests {
		r := New(tt.below, tt.above, nil)
		ext := uint32(rd(r, 0x30)) | uint32(rd(r, 0x31))<<8
		ext2 := uint32(rd(r, 0x17)) | uint32(rd(r, 0x18))<<8
		mid := uint32(rd(r, 0x34)) | uint32(rd(r, 0x35))<<8
		hi := uint32(rd(r, 0x5B)) | uint32(rd(r, 0x5C))<<8 | uint32(rd(r, 0x5D))<<16
		if ext != tt.ext || ext2 != tt.ext || mid != tt.mid || hi != tt.hi {
			t.Errorf("below %#x above %#x: ext %#x/%#x mid %#x hi %#x, want %#x %#x %#x",
				tt.below, tt.above, ext, ext2, mid, hi, tt.ext, tt.mid, tt.hi)
		}
		if base := uint16(rd(r, 0x15)) | uint16(rd(r, 0x16))<<8; base != 640 {
			t.Errorf("base memory %d KiB", base)
		}
		var sum uint16
		for i := byte(0x10); i < 0x2E; i++ {
			sum += uint16(rd(r, i))
		}
		if got := uint16(rd(r, 0x2E))<<8 | uint16(rd(r, 0x2F)); got != sum {
			t.Errorf("checksum %#x, want %#x", got, sum)
		}
	}
}

func TestSaveRestore(t *testing.T) {
	r, c := newRTC(fixed)
	wr(r, RegB, b24Hour|bSet)
	wr(r, RegYear, 0x42)
	wr(r, RegB, b24Hour)
	wr(r, 0x50, 0x77)
	r.Write(0, []byte{0x80 | RegSeconds})
	s := r.SaveState()
	r2 := NewWithClock(0, 0, nil, c)
	r2.RestoreState(s)
	if got := r2.SaveState(); got != s {
		t.Fatalf("restored %+v, want %+v", got, s)
	}
	for _, reg := range []byte{RegSeconds, RegYear, RegCentury, RegB, 0x50, 0x34} {
		if a, b := rd(r, reg), rd(r2, reg); a != b {
			t.Errorf("reg %#x: original %#x, restored %#x", reg, a, b)
		}
	}
}

func FuzzRTC(f *testing.F) {
	f.Add([]byte{0x0B, 0x80, 0x09, 0xFF, 0x32, 0xFF, 0x0B, 0x04, 0x09, 0x00})
	f.Add([]byte{0x0B, 0x84, 0x04, 0xFF, 0x08, 0x00, 0x0B, 0x00, 0x0C, 0x00})
	f.Fuzz(func(t *testing.T, prog []byte) {
		r, c := newRTC(fixed)
		for i := 0; i+1 < len(prog); i += 2 {
			wr(r, prog[i], prog[i+1])
			rd(r, prog[i]^prog[i+1])
			c.t = c.t.Add(time.Duration(prog[i+1]) * time.Millisecond)
			d := make([]byte, 1<<(prog[i]&3))
			r.Read(uint64(prog[i+1]&3), d)
		}
		r.RestoreState(r.SaveState())
	})
}
