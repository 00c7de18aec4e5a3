package i8042

import (
	"testing"

	"github.com/govisor/govisor/internal/iobus"
)

var (
	_ iobus.Device = (*Controller)(nil)
	_ iobus.Device = Port{}
)

type op struct {
	cmd   bool // write to the command port
	write bool // write (else read) the data port
	val   byte
	want  int // expected data-port read, -1 for none
}

func command(v byte) op     { return op{cmd: true, val: v, want: -1} }
func data(v byte) op        { return op{write: true, val: v, want: -1} }
func readData(want byte) op { return op{want: int(want)} }
func status(c *Controller) byte {
	d := []byte{0}
	c.CommandDevice().Read(0, d)
	return d[0]
}

func TestCommands(t *testing.T) {
	tests := []struct {
		name   string
		ops    []op
		resets int
	}{
		{"read command byte", []op{command(0x20), readData(ctrDefault)}, 0},
		{"write command byte", []op{command(0x60), data(0x31), command(0x20), readData(0x31)}, 0},
		{"internal RAM", []op{command(0x65), data(0xAB), command(0x25), readData(0xAB)}, 0},
		{"self test", []op{command(0xAA), readData(0x55)}, 0},
		{"keyboard interface test", []op{command(0xAB), readData(0x00)}, 0},
		{"disable ports", []op{command(0xAD), command(0xA7), command(0x20), readData(ctrDefault | ctrKbdDisable | ctrAuxDisable)}, 0},
		{"enable ports", []op{command(0xAD), command(0xA7), command(0xAE), command(0xA8), command(0x20), readData(ctrDefault)}, 0},
		{"aux loopback echoes (non-mux controller)", []op{command(0xD3), data(0xA4), readData(0xA4)}, 0},
		{"keyboard buffer write", []op{command(0xD2), data(0x1C), readData(0x1C)}, 0},
		{"read output port", []op{command(0xD0), readData(outReset | outA20)}, 0},
		{"pulse reset line", []op{command(0xFE)}, 1},
		{"pulse other lines only", []op{command(0xFF), command(0xFD)}, 0},
		{"write output port keeps reset high", []op{command(0xD1), data(0x03), command(0xD0), readData(0x03)}, 0},
		{"write output port with reset low", []op{command(0xD1), data(0x02)}, 1},
		{"mouse bytes are dropped", []op{command(0xD4), data(0xFF), command(0x20), readData(ctrDefault)}, 0},
		{"keyboard reset", []op{data(0xFF), readData(0xFA), readData(0xAA)}, 0},
		{"keyboard identifies, translated", []op{data(0xF2), readData(0xFA), readData(0xAB), readData(0x41)}, 0},
		{"keyboard identifies, untranslated", []op{command(0x60), data(0x05), data(0xF2), readData(0xFA), readData(0xAB), readData(0x83)}, 0},
		{"keyboard LEDs take a parameter", []op{data(0xED), readData(0xFA), data(0x07), readData(0xFA), data(0xEE), readData(0xEE)}, 0},
		{"keyboard scan code set", []op{data(0xF0), readData(0xFA), data(0x01), readData(0xFA), data(0xF0), readData(0xFA), data(0x00), readData(0xFA), readData(0x43)}, 0},
		{"keyboard scan code set, untranslated", []op{command(0x60), data(0x05), data(0xF0), readData(0xFA), data(0x00), readData(0xFA), readData(0x02)}, 0},
		{"keyboard enable, disable, defaults", []op{data(0xF5), readData(0xFA), data(0xF6), readData(0xFA), data(0xF4), readData(0xFA)}, 0},
		{"keyboard resend and unknown", []op{data(0xEE), readData(0xEE), data(0xFE), readData(0xEE), data(0x01), readData(0xFE)}, 0},
		{"writing to the keyboard enables its interface", []op{command(0xAD), data(0xF4), readData(0xFA), command(0x20), readData(ctrDefault)}, 0},
		{"unknown command ignored", []op{command(0x00), command(0xC8), command(0x20), readData(ctrDefault)}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resets := 0
			c := New(func() { resets++ })
			dd, cd := c.DataDevice(), c.CommandDevice()
			for i, o := range tt.ops {
				switch {
				case o.cmd:
					cd.Write(0, []byte{o.val})
				case o.write:
					dd.Write(0, []byte{o.val})
				default:
					if status(c)&stsOBF == 0 {
						t.Fatalf("op %d: OBF clear before reading data", i)
					}
					d := []byte{0}
					dd.Read(0, d)
					if int(d[0]) != o.want {
						t.Fatalf("op %d: data %#x, want %#x", i, d[0], o.want)
					}
					// A reply of several bytes refills the buffer at once.
					next := i+1 < len(tt.ops) && !tt.ops[i+1].cmd && !tt.ops[i+1].write
					if full := status(c)&stsOBF != 0; full != next {
						t.Fatalf("op %d: OBF %v after read, want %v", i, full, next)
					}
				}
			}
			if resets != tt.resets {
				t.Fatalf("reset called %d times, want %d", resets, tt.resets)
			}
		})
	}
}

func TestKeyboardIRQ(t *testing.T) {
	c := New(nil)
	var levels []bool
	c.SetIRQ(func(l bool) { levels = append(levels, l) })
	read := func() byte { d := []byte{0}; c.DataDevice().Read(0, d); return d[0] }
	c.DataDevice().Write(0, []byte{0xFF}) // reset: ACK, then BAT
	if len(levels) != 1 || !levels[0] {
		t.Fatalf("IRQ levels %v after a keyboard reply, want [true]", levels)
	}
	if read() != 0xFA || read() != 0xAA {
		t.Fatal("reset reply")
	}
	// The BAT byte followed at once: the line stays high until it is read.
	if len(levels) != 2 || levels[1] {
		t.Fatalf("IRQ levels %v after reading both bytes, want [true false]", levels)
	}
	// With the interrupt off in the command byte the line stays low.
	c.CommandDevice().Write(0, []byte{0x60})
	c.DataDevice().Write(0, []byte{ctrDefault &^ ctrKbdInt})
	c.DataDevice().Write(0, []byte{0xEE})
	if len(levels) != 2 || read() != 0xEE {
		t.Fatalf("IRQ levels %v with the keyboard interrupt off", levels)
	}
	// A disabled keyboard interface holds the reply back.
	c.CommandDevice().Write(0, []byte{0xD2}) // fill the buffer first
	c.DataDevice().Write(0, []byte{0x11})
	c.CommandDevice().Write(0, []byte{0xAD})
	if read() != 0x11 || status(c)&stsOBF != 0 {
		t.Fatal("keyboard buffer write")
	}
}

func TestStatusBits(t *testing.T) {
	c := New(nil)
	if s := status(c); s != stsSys|stsUnlock {
		t.Fatalf("initial status %#x", s)
	}
	c.CommandDevice().Write(0, []byte{0xD3})
	if s := status(c); s&stsCmd == 0 {
		t.Fatalf("status %#x lacks the command flag after a command write", s)
	}
	c.DataDevice().Write(0, []byte{0x5A})
	if s := status(c); s&(stsOBF|stsAuxData|stsCmd) != stsOBF|stsAuxData {
		t.Fatalf("status %#x after aux buffer write, want OBF|AUX and no command flag", s)
	}
	// Clearing the system flag through the command byte shows in status.
	c.Write(4, []byte{0x60})
	c.Write(0, []byte{0x00})
	if s := status(c); s&stsSys != 0 {
		t.Fatalf("status %#x still has SYS after the command byte cleared it", s)
	}
	c.Write(4, []byte{0xFE}) // nil reset func must not crash
}

func TestWideRegistration(t *testing.T) {
	var bus iobus.Bus
	resets := 0
	c := New(func() { resets++ })
	if err := bus.Register(DataPort, Size, c); err != nil {
		t.Fatal(err)
	}
	bus.Write(CommandPort, []byte{0xAA})
	d := []byte{0}
	bus.Read(DataPort, d)
	if d[0] != 0x55 {
		t.Fatalf("self test via the wide range = %#x", d[0])
	}
	bus.Read(DataPort+1, d)
	if d[0] != 0xFF {
		t.Fatalf("port 0x61 = %#x, want 0xff", d[0])
	}
	bus.Write(CommandPort, []byte{0xFE})
	if resets != 1 {
		t.Fatalf("resets = %d", resets)
	}
	w := make([]byte, 4)
	c.DataDevice().Read(0, w)
	if w[1] != 0xFF || w[3] != 0xFF {
		t.Fatalf("wide read of a 1-port device = % x", w)
	}
}

func TestSaveRestore(t *testing.T) {
	c := New(nil)
	c.CommandDevice().Write(0, []byte{0xAD})
	c.CommandDevice().Write(0, []byte{0xD3})
	c.DataDevice().Write(0, []byte{0x42})
	c.CommandDevice().Write(0, []byte{0x61})
	s := c.SaveState()
	c2 := New(nil)
	c2.RestoreState(s)
	if got := c2.SaveState(); got != s {
		t.Fatalf("restored %+v, want %+v", got, s)
	}
	c2.DataDevice().Write(0, []byte{0x99}) // completes the pending 0x61
	if c2.SaveState().RAM[1] != 0x99 {
		t.Fatal("pending RAM write lost across restore")
	}
	c3 := New(nil)
	c3.RestoreState(State{Pending: 0xAA})
	if c3.SaveState().Pending != 0 {
		t.Fatal("restore kept a pending command that takes no data")
	}
}

func FuzzController(f *testing.F) {
	f.Add([]byte{0x04, 0xD1, 0x00, 0x02})
	f.Add([]byte{0x04, 0x20, 0x80, 0x00, 0x04, 0xFE})
	f.Fuzz(func(t *testing.T, prog []byte) {
		c := New(func() {})
		for i := 0; i+1 < len(prog); i += 2 {
			off, v := uint64(prog[i]&0x0F), prog[i+1]
			d := make([]byte, 1<<(prog[i]>>4&3))
			d[0] = v
			if prog[i]&0x80 != 0 {
				c.Read(off, d)
			} else {
				c.Write(off, d)
			}
		}
		c.RestoreState(c.SaveState())
	})
}
