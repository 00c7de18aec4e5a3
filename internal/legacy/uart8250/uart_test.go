package uart8250

import (
	"bytes"
	"context"
	"reflect"
	"sync"
	"testing"
	"time"
)

// harness records the transmitted bytes and the interrupt line.
type harness struct {
	u      *UART
	out    bytes.Buffer
	mu     sync.Mutex
	level  bool
	levels []bool
}

func newHarness() *harness {
	h := &harness{}
	h.u = New(&h.out, func(l bool) {
		h.mu.Lock()
		h.level = l
		h.levels = append(h.levels, l)
		h.mu.Unlock()
	})
	return h
}

func (h *harness) line() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.level
}

func (h *harness) in(off uint64) byte {
	d := []byte{0}
	h.u.Read(off, d)
	return d[0]
}

func (h *harness) outb(off uint64, v byte) { h.u.Write(off, []byte{v}) }

// step is one guest access: write val to reg, or read reg and compare the
// bits in mask (0 means 0xFF) with want. input queues host bytes instead.
type step struct {
	write bool
	reg   uint64
	val   byte
	want  byte
	mask  byte
	input string
	irq   int // -1 don't care, 0 low, 1 high after the step
}

func w(reg uint64, v byte) step { return step{write: true, reg: reg, val: v, irq: -1} }
func r(reg uint64, want byte) step {
	return step{reg: reg, want: want, irq: -1}
}
func rm(reg uint64, mask, want byte) step {
	return step{reg: reg, want: want, mask: mask, irq: -1}
}
func irqIs(s step, level bool) step {
	s.irq = 0
	if level {
		s.irq = 1
	}
	return s
}
func input(s string) step { return step{input: s, irq: -1} }

func run(t *testing.T, h *harness, steps []step) {
	t.Helper()
	for i, s := range steps {
		switch {
		case s.input != "":
			if n := h.u.Input([]byte(s.input)); n != len(s.input) {
				t.Fatalf("step %d: Input accepted %d of %d bytes", i, n, len(s.input))
			}
		case s.write:
			h.outb(s.reg, s.val)
		default:
			mask := s.mask
			if mask == 0 {
				mask = 0xFF
			}
			if got := h.in(s.reg); got&mask != s.want {
				t.Fatalf("step %d: read reg %d = %#02x (masked %#02x), want %#02x", i, s.reg, got, got&mask, s.want)
			}
		}
		if s.irq >= 0 && h.line() != (s.irq == 1) {
			t.Fatalf("step %d: irq line %v, want %v", i, h.line(), s.irq == 1)
		}
	}
}

func TestRegisters(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
		out   string
	}{
		{
			// drivers/tty/serial/8250/8250_port.c autoconfig() and
			// autoconfig_16550a() as Linux 6.x runs them.
			name: "linux autoconfig identifies a 16550A",
			steps: []step{
				r(regIER, 0), w(regIER, 0), rm(regIER, 0x0F, 0), w(regIER, 0x0F), rm(regIER, 0x0F, 0x0F), w(regIER, 0),
				r(regMCR, 0), r(regLCR, 0),
				w(regMCR, mcrLoop|0x0A), rm(regMSR, 0xF0, 0x90), w(regMCR, 0),
				w(regLCR, 0xBF), w(regIIR, 0), w(regLCR, 0),
				w(regIIR, fcrEnable), rm(regIIR, 0xC0, 0xC0),
				// EFR probe with DLAB set must not read 0.
				w(regLCR, 0x80), rm(regIIR, 0xFF, 0xC1),
				// TI16750 probe: bit 5 never set.
				w(regLCR, 0), w(regIIR, fcrEnable|0x20), rm(regIIR, 0xE0, 0xC0), w(regIIR, 0),
				w(regLCR, 0x80), w(regIIR, fcrEnable|0x20), rm(regIIR, 0xE0, 0xC0), w(regIIR, 0), w(regLCR, 0),
				// XScale probe: IER bit 6 (UUE) does not stick.
				w(regIER, 0x40), rm(regIER, 0x40, 0),
				// Scratch register.
				w(regSCR, 0x5A), r(regSCR, 0x5A), w(regSCR, 0xA5), r(regSCR, 0xA5),
				// serial8250_startup: LSR must not read 0xFF.
				r(regLSR, lsrTHRE|lsrTEMT),
			},
		},
		{
			name:  "transmit goes to the host writer",
			steps: []step{w(regData, 'h'), w(regData, 'i'), r(regLSR, lsrTHRE|lsrTEMT)},
			out:   "hi",
		},
		{
			name: "THRE interrupt raise and clear",
			steps: []step{
				irqIs(w(regIER, ierTHRE), true), irqIs(r(regIIR, iirTHRE), false), irqIs(r(regIIR, iirNone), false),
				// UART_BUG_THRE test: IER 0 then ETBEI again re-raises THRE.
				irqIs(w(regIER, 0), false), irqIs(w(regIER, ierTHRE), true), irqIs(w(regIER, 0), false),
				// A THR write clears, then re-arms once the byte is sent.
				irqIs(w(regIER, ierTHRE), true), r(regIIR, iirTHRE), irqIs(w(regData, 'x'), true),
				irqIs(rm(regIIR, 0x0F, iirTHRE), false),
			},
			out: "x",
		},
		{
			name: "received data without FIFO",
			steps: []step{
				irqIs(input("ab"), false), r(regLSR, lsrTHRE|lsrTEMT|lsrDR),
				irqIs(w(regIER, ierRDA), true), r(regIIR, iirRDA),
				irqIs(r(regData, 'a'), true), irqIs(r(regData, 'b'), false),
				r(regLSR, lsrTHRE|lsrTEMT), r(regIIR, iirNone),
			},
		},
		{
			name: "received data with FIFO trigger level 4",
			steps: []step{
				w(regIIR, fcrEnable|0x40), w(regIER, ierRDA|ierTHRE),
				r(regIIR, iirFIFOs|iirTHRE),
				irqIs(input("12"), true), r(regIIR, iirFIFOs|iirTimeout),
				irqIs(input("34"), true), r(regIIR, iirFIFOs|iirRDA),
				r(regData, '1'), r(regIIR, iirFIFOs|iirTimeout), r(regData, '2'), r(regData, '3'),
				irqIs(r(regData, '4'), false), r(regIIR, iirFIFOs|iirNone),
			},
		},
		{
			name: "FCR clears the receive FIFO",
			steps: []step{
				w(regIIR, fcrEnable), input("xyz"), w(regIER, ierRDA),
				irqIs(w(regIIR, fcrEnable|fcrClearRx), false), r(regLSR, lsrTHRE|lsrTEMT),
			},
		},
		{
			name: "DLAB divisor latch does not clobber THR or IER",
			steps: []step{
				w(regIER, ierRDA), w(regLCR, 0x83), r(regData, 12), r(regIER, 0),
				w(regData, 0x01), w(regIER, 0x02), r(regData, 0x01), r(regIER, 0x02),
				w(regLCR, 0x03), r(regIER, ierRDA), r(regLCR, 0x03),
				w(regLCR, 0x83), r(regData, 0x01), r(regIER, 0x02),
			},
		},
		{
			name: "loopback echoes THR into RBR and MSR follows MCR",
			steps: []step{
				w(regMCR, mcrLoop), r(regMSR, msrDDCD|msrDDSR|msrDCTS), r(regMSR, 0),
				w(regMCR, mcrLoop|mcrDTR|mcrRTS|mcrOut1|mcrOut2), r(regMSR, 0xF0|msrDDCD|msrDDSR|msrDCTS),
				w(regMCR, mcrLoop|mcrDTR|mcrRTS|mcrOut2), r(regMSR, 0xB0|msrTERI),
				w(regIER, ierRDA), irqIs(w(regData, 'L'), true), irqIs(r(regData, 'L'), false),
				w(regMCR, 0), r(regMSR, msrIdle),
			},
		},
		{
			name: "modem status interrupt",
			steps: []step{
				w(regIER, ierMS), irqIs(w(regMCR, mcrLoop), true), r(regIIR, iirMS),
				irqIs(rm(regMSR, 0x0F, msrDDCD|msrDDSR|msrDCTS), false),
			},
		},
		{
			name: "receiver overrun in loopback raises line status",
			steps: append(append([]step{w(regMCR, mcrLoop), w(regIER, ierRLS)},
				repeat(w(regData, 'o'), RxBufferSize+1)...),
				irqIs(r(regIIR, iirRLS), true), irqIs(rm(regLSR, lsrOE, lsrOE), false), rm(regLSR, lsrOE, 0)),
		},
		{
			name:  "unknown offsets and wide accesses",
			steps: []step{r(8, 0xFF), w(100, 1), r(regLSR, lsrTHRE|lsrTEMT)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness()
			run(t, h, tt.steps)
			if got := h.out.String(); got != tt.out {
				t.Errorf("output %q, want %q", got, tt.out)
			}
		})
	}
}

func repeat(s step, n int) []step {
	out := make([]step, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func TestWideAccessSplitsIntoBytes(t *testing.T) {
	h := newHarness()
	h.u.Write(regLCR, []byte{0x03, 0x0B}) // LCR then MCR
	d := make([]byte, 4)
	h.u.Read(regLCR, d) // LCR, MCR, LSR, MSR
	want := []byte{0x03, 0x0B, lsrTHRE | lsrTEMT, msrIdle}
	if !bytes.Equal(d, want) {
		t.Fatalf("wide read = % x, want % x", d, want)
	}
	d = make([]byte, 8)
	h.u.Read(6, d)
	if d[2] != 0xFF || d[7] != 0xFF {
		t.Fatalf("bytes past the UART read % x, want ff", d)
	}
	h.u.Read(^uint64(0), d) // offset overflow
}

func TestInputBackPressure(t *testing.T) {
	h := newHarness()
	big := bytes.Repeat([]byte{'z'}, RxBufferSize+10)
	if n := h.u.Input(big); n != RxBufferSize {
		t.Fatalf("Input accepted %d, want %d", n, RxBufferSize)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	var n int
	go func() {
		var err error
		n, err = h.u.InputWait(ctx, []byte("tail"))
		done <- err
	}()
	got := 0
	for got < RxBufferSize+4 {
		if h.in(regLSR)&lsrDR != 0 {
			h.in(regData)
			got++
			continue
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			done = nil
		case <-time.After(time.Millisecond):
		}
	}
	if done != nil {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if n != 4 {
		t.Fatalf("InputWait queued %d bytes, want 4", n)
	}
	cancel()
	h.u.Input(big)
	if _, err := h.u.InputWait(ctx, []byte("x")); err == nil {
		t.Fatal("InputWait on a full buffer with a cancelled context returned nil")
	}
}

func TestInputRefusedInLoopback(t *testing.T) {
	h := newHarness()
	h.outb(regMCR, mcrLoop)
	if n := h.u.Input([]byte("a")); n != 0 {
		t.Fatalf("Input in loopback accepted %d bytes", n)
	}
	h.outb(regMCR, 0)
	select {
	case <-h.u.Space():
	default:
		t.Fatal("leaving loopback did not signal receive space")
	}
	if n := h.u.Input([]byte("a")); n != 1 {
		t.Fatalf("Input accepted %d bytes after loopback", n)
	}
}

func TestSaveRestore(t *testing.T) {
	h := newHarness()
	run(t, h, []step{
		w(regIIR, fcrEnable|0xC0), w(regLCR, 0x83), w(regData, 1), w(regIER, 0),
		w(regLCR, 0x1B), w(regSCR, 0x77), w(regMCR, mcrDTR|mcrOut2), w(regIER, ierRDA|ierTHRE),
		input("saved"),
	})
	s := h.u.SaveState()
	h2 := newHarness()
	h2.u.RestoreState(s)
	if got := h2.u.SaveState(); !reflect.DeepEqual(got, s) {
		t.Fatalf("restored state %+v, want %+v", got, s)
	}
	if !h2.line() {
		t.Fatal("restore did not raise the pending interrupt")
	}
	for _, off := range []uint64{regIER, regIIR, regLCR, regMCR, regLSR, regMSR, regSCR} {
		if a, b := h.in(off), h2.in(off); a != b {
			t.Errorf("reg %d: original %#x, restored %#x", off, a, b)
		}
	}
	for range len("saved") {
		if a, b := h.in(regData), h2.in(regData); a != b {
			t.Fatalf("rx byte: original %q, restored %q", a, b)
		}
	}
	// Hostile snapshot: too many bytes and reserved bits.
	h3 := newHarness()
	h3.u.RestoreState(State{IER: 0xFF, MCR: 0xFF, Rx: make([]byte, 1000)})
	if got := h3.u.SaveState(); got.IER != ierMask || got.MCR != mcrMask || len(got.Rx) != RxBufferSize {
		t.Fatalf("hostile restore not sanitised: %+v", got)
	}
}

func TestConcurrentAccess(t *testing.T) {
	h := newHarness()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				h.outb(uint64(i%Size), byte(i*g))
				h.in(uint64((i + g) % Size))
				h.u.Input([]byte{byte(i)})
			}
		}()
	}
	wg.Wait()
	h.u.mu.Lock()
	want := h.u.iir()&iirNone == 0
	h.u.mu.Unlock()
	if h.line() != want {
		t.Fatalf("irq line %v after concurrent access, IIR says %v", h.line(), want)
	}
}
