package mptable

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
)

// memory is a sparse guest memory for tests: a byte slice at offset 0.
type memory []byte

func (m memory) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m)) {
		return 0, fmt.Errorf("write %d bytes at %#x out of range", len(p), off)
	}
	return copy(m[off:], p), nil
}

// parsed is what the test parser recovers from guest memory.
type parsed struct {
	lapicAddr  uint32
	cpus       []cpu
	buses      map[byte]string
	ioapicID   byte
	ioapicAddr uint32
	ioapicVer  byte
	ioIntrs    []intr
	localIntrs []intr
}

type cpu struct {
	apicID byte
	flags  byte
}

type intr struct {
	typ, srcBus, srcIRQ, dstID, dstPin byte
	flags                              uint16
}

// parse reads the MP tables the way an OS does: find the floating pointer,
// check it, follow it to the configuration table, check that, walk entries.
func parse(mem []byte) (*parsed, error) {
	le := binary.LittleEndian
	var fp []byte
	for a := 0x9FC00; a < 0xA0000; a += 16 {
		if string(mem[a:a+4]) == "_MP_" {
			fp = mem[a : a+16]
			break
		}
	}
	if fp == nil {
		return nil, errors.New("no floating pointer in the last KiB of base memory")
	}
	if fp[8] != 1 || fp[9] != 4 {
		return nil, fmt.Errorf("floating pointer length %d rev %d", fp[8], fp[9])
	}
	if s := sum(fp); s != 0 {
		return nil, fmt.Errorf("floating pointer checksum off by %d", s)
	}
	if fp[11] != 0 {
		return nil, fmt.Errorf("default configuration %d, want a table", fp[11])
	}
	pa := int(le.Uint32(fp[4:]))
	if pa+44 > len(mem) {
		return nil, fmt.Errorf("config table at %#x out of memory", pa)
	}
	h := mem[pa : pa+44]
	if string(h[:4]) != "PCMP" || h[6] != 4 {
		return nil, fmt.Errorf("config header %q rev %d", h[:4], h[6])
	}
	length := int(le.Uint16(h[4:]))
	if pa+length > len(mem) {
		return nil, fmt.Errorf("config table length %d out of memory", length)
	}
	tbl := mem[pa : pa+length]
	if s := sum(tbl); s != 0 {
		return nil, fmt.Errorf("config table checksum off by %d", s)
	}
	if le.Uint16(h[40:]) != 0 || h[42] != 0 {
		return nil, errors.New("unexpected extended table")
	}
	p := &parsed{lapicAddr: le.Uint32(h[36:]), buses: map[byte]string{}}
	count := int(le.Uint16(h[34:]))
	off := 44
	lastType := byte(0)
	for i := 0; i < count; i++ {
		if off >= len(tbl) {
			return nil, fmt.Errorf("entry %d past table end", i)
		}
		t := tbl[off]
		if t < lastType {
			return nil, fmt.Errorf("entry %d type %d after type %d", i, t, lastType)
		}
		lastType = t
		size := 8
		if t == 0 {
			size = 20
		}
		if off+size > len(tbl) {
			return nil, fmt.Errorf("entry %d truncated", i)
		}
		e := tbl[off : off+size]
		switch t {
		case 0:
			p.cpus = append(p.cpus, cpu{apicID: e[1], flags: e[3]})
		case 1:
			p.buses[e[1]] = string(e[2:8])
		case 2:
			if e[3]&1 == 0 {
				return nil, errors.New("I/O APIC disabled")
			}
			p.ioapicID, p.ioapicVer, p.ioapicAddr = e[1], e[2], le.Uint32(e[4:])
		case 3, 4:
			in := intr{typ: e[1], flags: le.Uint16(e[2:]), srcBus: e[4], srcIRQ: e[5], dstID: e[6], dstPin: e[7]}
			if t == 3 {
				p.ioIntrs = append(p.ioIntrs, in)
			} else {
				p.localIntrs = append(p.localIntrs, in)
			}
		default:
			return nil, fmt.Errorf("entry %d: unknown type %d", i, t)
		}
		off += size
	}
	if off != len(tbl) {
		return nil, fmt.Errorf("entries end at %d, table length %d", off, len(tbl))
	}
	return p, nil
}

func TestWriteParse(t *testing.T) {
	for _, n := range []int{1, 2, 3, 4, 8, 16, 39, 40, 63, 64, 128, MaxCPUs} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			mem := make(memory, 0x100000)
			if err := Write(mem, n); err != nil {
				t.Fatal(err)
			}
			p, err := parse(mem)
			if err != nil {
				t.Fatal(err)
			}
			if p.lapicAddr != LAPICAddr {
				t.Errorf("LAPIC address %#x", p.lapicAddr)
			}
			if len(p.cpus) != n {
				t.Fatalf("%d processor entries, want %d", len(p.cpus), n)
			}
			for i, c := range p.cpus {
				wantFlags := byte(cpuEnabled)
				if i == 0 {
					wantFlags |= cpuBSP
				}
				if c.apicID != byte(i) || c.flags != wantFlags {
					t.Errorf("cpu %d: APIC ID %d flags %#x, want %d %#x", i, c.apicID, c.flags, i, wantFlags)
				}
			}
			if p.buses[PCIBus] != "PCI   " || p.buses[ISABus] != "ISA   " || len(p.buses) != 2 {
				t.Errorf("buses %q", p.buses)
			}
			if p.ioapicID != byte(n) || p.ioapicVer != IOAPICVersion || p.ioapicAddr != IOAPICAddr {
				t.Errorf("I/O APIC id %d ver %#x addr %#x", p.ioapicID, p.ioapicVer, p.ioapicAddr)
			}
			checkRouting(t, p, byte(n))
			if got := Size(n); mem[Addr+got] != 0 || got != 16+44+20*n+8*20 {
				t.Errorf("Size(%d) = %d", n, got)
			}
		})
	}
}

// checkRouting verifies the ISA IRQ to I/O APIC pin mapping of a PC.
func checkRouting(t *testing.T, p *parsed, ioapicID byte) {
	t.Helper()
	pins := map[byte]byte{}
	for _, in := range p.ioIntrs {
		if in.srcBus != ISABus || in.dstID != ioapicID || in.flags != 0 || in.dstPin >= IOAPICPins {
			t.Errorf("bad I/O interrupt entry %+v", in)
		}
		if in.typ != intTypeINT {
			t.Errorf("I/O interrupt type %d", in.typ)
		}
		if _, dup := pins[in.srcIRQ]; dup {
			t.Errorf("IRQ %d routed twice", in.srcIRQ)
		}
		pins[in.srcIRQ] = in.dstPin
	}
	if len(pins) != 15 {
		t.Errorf("%d IRQs routed, want 15", len(pins))
	}
	for irq := byte(0); irq < 16; irq++ {
		want, ok := irq, irq != 2
		if irq == 0 {
			want = 2
		}
		got, have := pins[irq]
		if have != ok || (ok && got != want) {
			t.Errorf("IRQ %d: pin %d (present %v), want %d (present %v)", irq, got, have, want, ok)
		}
	}
	wantLocal := []intr{
		{typ: intTypeExtINT, srcBus: ISABus, dstID: 0xFF, dstPin: 0},
		{typ: intTypeNMI, srcBus: ISABus, dstID: 0xFF, dstPin: 1},
	}
	if fmt.Sprint(p.localIntrs) != fmt.Sprint(wantLocal) {
		t.Errorf("local interrupts %+v, want %+v", p.localIntrs, wantLocal)
	}
}

func TestWriteErrors(t *testing.T) {
	for _, n := range []int{-1, 0, MaxCPUs + 1, 1000} {
		mem := make(memory, 0x100000)
		if err := Write(mem, n); !errors.Is(err, ErrTooManyCPUs) {
			t.Errorf("Write(%d) = %v, want ErrTooManyCPUs", n, err)
		}
		for _, c := range mem {
			if c != 0 {
				t.Fatalf("Write(%d) failed but wrote memory", n)
			}
		}
	}
	// Memory too small for the table: the WriterAt's error comes back wrapped.
	if err := Write(make(memory, Addr+100), 4); err == nil {
		t.Error("write past the end of memory succeeded")
	}
}

func FuzzWrite(f *testing.F) {
	for _, n := range []int{1, 2, 64, 0, 255} {
		f.Add(n)
	}
	mem := make(memory, 0x100000)
	f.Fuzz(func(t *testing.T, n int) {
		clear(mem)
		err := Write(mem, n)
		if n < 1 || n > MaxCPUs {
			if err == nil {
				t.Fatalf("Write(%d) succeeded", n)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p, err := parse(mem)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.cpus) != n || p.ioapicID != byte(n) {
			t.Fatalf("%d cpus, I/O APIC %d", len(p.cpus), p.ioapicID)
		}
		checkRouting(t, p, byte(n))
	})
}

func TestAllCPUCounts(t *testing.T) {
	mem := make(memory, 0x100000)
	for n := 1; n <= 64; n++ {
		clear(mem)
		if err := Write(mem, n); err != nil {
			t.Fatalf("Write(%d): %v", n, err)
		}
		p, err := parse(mem)
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if len(p.cpus) != n {
			t.Fatalf("n=%d: %d cpus", n, len(p.cpus))
		}
		if end := Addr + Size(n); end > Limit {
			t.Fatalf("n=%d: table ends at %#x", n, end)
		}
	}
}
