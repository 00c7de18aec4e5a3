package uart8250

import (
	"io"
	"testing"
)

// FuzzRegisters drives random register accesses and host input and checks
// that the interrupt line always matches IIR.
func FuzzRegisters(f *testing.F) {
	f.Add([]byte{0x03, 0x0F, 0x01, 0x02, 0x00, 'a', 0x12, 0x01})
	f.Add([]byte{0x04, 0x10, 0x00, 0x41, 0x01, 0x0F, 0x08, 0x00, 0x02, 0xC7})
	f.Add([]byte{0x11, 0x02, 0x09, 0x00, 0x21, 0x05, 0x29, 0x00})
	f.Fuzz(func(t *testing.T, prog []byte) {
		var level, called bool
		u := New(io.Discard, func(l bool) {
			if called && l == level {
				t.Fatalf("irq callback repeated level %v", l)
			}
			level, called = l, true
		})
		for i := 0; i+1 < len(prog); i += 2 {
			op, v := prog[i], prog[i+1]
			off := uint64(op & 0x0F)
			size := 1 << (op >> 4 & 3)
			data := make([]byte, size)
			for j := range data {
				data[j] = v + byte(j)
			}
			switch op >> 6 {
			case 0:
				u.Write(off, data)
			case 1:
				u.Read(off, data)
			case 2:
				u.Input(data[:1+int(v)%size])
			default:
				u.RestoreState(u.SaveState())
			}
			u.mu.Lock()
			want := u.iir()&iirNone == 0
			n := len(u.rx)
			u.mu.Unlock()
			if level != want {
				t.Fatalf("after op %#x: irq line %v, IIR pending %v", op, level, want)
			}
			if n > RxBufferSize {
				t.Fatalf("receive buffer grew to %d", n)
			}
		}
	})
}
