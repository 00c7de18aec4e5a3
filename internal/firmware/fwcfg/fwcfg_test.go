package fwcfg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/govisor/govisor/internal/iobus"
)

var _ iobus.Device = (*Device)(nil)

// memory is a flat guest memory of its length, starting at address 0.
type memory struct {
	b     []byte
	dirty [][2]uint64
}

func (m *memory) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, fmt.Errorf("out of range: %#x+%d", off, len(p))
	}
	return copy(p, m.b[off:]), nil
}

func (m *memory) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, fmt.Errorf("out of range: %#x+%d", off, len(p))
	}
	return copy(m.b[off:], p), nil
}

func (m *memory) MarkDirty(gpa, n uint64) { m.dirty = append(m.dirty, [2]uint64{gpa, n}) }

// sel writes the selector port as firmware does (outw 0x510).
func sel(d *Device, key uint16) { d.Write(offSelector, binary.LittleEndian.AppendUint16(nil, key)) }

// readPort reads n bytes from the data port one byte at a time (inb 0x511).
func readPort(d *Device, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		d.Read(offData, out[i:i+1])
	}
	return out
}

// dmaOp places a FWCfgDmaAccess at descAt and triggers it with the two
// 32-bit writes SeaBIOS makes (high half, then low half, big-endian); it
// returns the control word the device wrote back.
func dmaOp(d *Device, m *memory, descAt uint64, control, length uint32, target uint64) uint32 {
	binary.BigEndian.PutUint32(m.b[descAt:], control)
	binary.BigEndian.PutUint32(m.b[descAt+4:], length)
	binary.BigEndian.PutUint64(m.b[descAt+8:], target)
	d.Write(offDMA, binary.BigEndian.AppendUint32(nil, uint32(descAt>>32)))
	d.Write(offDMA+4, binary.BigEndian.AppendUint32(nil, uint32(descAt)))
	return binary.BigEndian.Uint32(m.b[descAt:])
}

func newTestDevice(t *testing.T) (*Device, *memory) {
	t.Helper()
	m := &memory{b: make([]byte, 0x10000)}
	d := New(m)
	if err := d.Add(KeyNBCPUs, []byte{2, 0}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct{ name, data string }{{"etc/e820", "E820DATA"}, {"bootorder", "/pci@i0cf8/*@1\n"}} {
		if err := d.AddFile(f.name, []byte(f.data)); err != nil {
			t.Fatal(err)
		}
	}
	return d, m
}

func TestPortInterface(t *testing.T) {
	d, _ := newTestDevice(t)
	tests := []struct {
		name string
		key  uint16
		n    int
		want []byte
	}{
		{"signature", KeySignature, 4, []byte("QEMU")},
		{"feature bitmap has DMA", KeyID, 4, []byte{3, 0, 0, 0}},
		{"vCPU count", KeyNBCPUs, 2, []byte{2, 0}},
		{"past the end reads zeros", KeyNBCPUs, 4, []byte{2, 0, 0, 0}},
		{"absent key reads zeros", 0x1234, 3, []byte{0, 0, 0}},
		{"write channel bit is ignored", KeySignature | keyWriteChannel, 4, []byte("QEMU")},
		{"directory count (big-endian)", KeyFileDir, 4, []byte{0, 0, 0, 2}},
		{"first file by key", KeyFileFirst, 8, []byte("E820DATA")},
		{"second file by key", KeyFileFirst + 1, 4, []byte("/pci")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sel(d, tc.key)
			if got := readPort(d, tc.n); !bytes.Equal(got, tc.want) {
				t.Fatalf("key %#x: read %q, want %q", tc.key, got, tc.want)
			}
		})
	}
}

func TestFileDirectory(t *testing.T) {
	d, _ := newTestDevice(t)
	sel(d, KeyFileDir)
	dir := readPort(d, 4+2*fileEntrySize)
	// Sorted by name: "bootorder" (key 0x21) before "etc/e820" (key 0x20).
	want := []struct {
		name string
		key  uint16
		size uint32
	}{{"bootorder", KeyFileFirst + 1, 15}, {"etc/e820", KeyFileFirst, 8}}
	for i, w := range want {
		e := dir[4+fileEntrySize*i:]
		name := string(bytes.TrimRight(e[8:8+fileNameLen], "\x00"))
		if name != w.name || binary.BigEndian.Uint16(e[4:]) != w.key || binary.BigEndian.Uint32(e) != w.size {
			t.Errorf("entry %d: %q key %#x size %d, want %+v", i, name, binary.BigEndian.Uint16(e[4:]), binary.BigEndian.Uint32(e), w)
		}
	}
}

func TestDMA(t *testing.T) {
	tests := []struct {
		name     string
		control  uint32
		length   uint32
		target   uint64
		wantCtl  uint32
		wantData []byte // at target
		thenRead []byte // what the data port yields afterwards
	}{
		{"select and read", KeyFileFirst<<16 | dmaSelect | dmaRead, 4, 0x2000, 0, []byte("E820"), []byte("DA")},
		{"read past the end zero-fills", KeyNBCPUs<<16 | dmaSelect | dmaRead, 6, 0x2000, 0, []byte{2, 0, 0, 0, 0, 0}, []byte{0}},
		{"skip then port read", KeyFileFirst<<16 | dmaSelect | dmaSkip, 4, 0, 0, nil, []byte("DA")},
		{"write is refused", KeyFileFirst<<16 | dmaSelect | dmaWrite, 2, 0x2000, dmaError, []byte{0xAA, 0xAA}, []byte("E8")},
		{"read to outside memory fails", KeyFileFirst<<16 | dmaSelect | dmaRead, 4, 0xFFFFFFF0, dmaError, nil, []byte("DA")}, // the offset moves on, as in QEMU,
		{"huge zero-fill stops at the end of memory", KeyNBCPUs<<16 | dmaSelect | dmaRead, 0xFFFFFFFF, 0x8000, dmaError, []byte{2, 0, 0}, []byte{0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, m := newTestDevice(t)
			for i := 0x2000; i < 0x2010; i++ {
				m.b[i] = 0xAA
			}
			if got := dmaOp(d, m, 0x1000, tc.control, tc.length, tc.target); got != tc.wantCtl {
				t.Fatalf("control after the transfer %#x, want %#x", got, tc.wantCtl)
			}
			if tc.wantData != nil && !bytes.Equal(m.b[tc.target:tc.target+uint64(len(tc.wantData))], tc.wantData) {
				t.Fatalf("memory at %#x: %x, want %x", tc.target, m.b[tc.target:tc.target+uint64(len(tc.wantData))], tc.wantData)
			}
			if got := readPort(d, len(tc.thenRead)); !bytes.Equal(got, tc.thenRead) {
				t.Fatalf("data port then reads %q, want %q", got, tc.thenRead)
			}
		})
	}
}

func TestDMAMarksDirty(t *testing.T) {
	d, m := newTestDevice(t)
	dmaOp(d, m, 0x1000, KeyFileFirst<<16|dmaSelect|dmaRead, 8, 0x3000)
	want := [][2]uint64{{0x3000, 8}, {0x1000, 4}}
	if fmt.Sprint(m.dirty) != fmt.Sprint(want) {
		t.Fatalf("dirty ranges %v, want %v", m.dirty, want)
	}
}

func TestDMASignature(t *testing.T) {
	d, _ := newTestDevice(t)
	hi, lo := make([]byte, 4), make([]byte, 4)
	d.Read(offDMA, hi)
	d.Read(offDMA+4, lo)
	if string(hi)+string(lo) != "QEMU CFG" {
		t.Fatalf("DMA register reads %q, want %q", string(hi)+string(lo), "QEMU CFG")
	}
}

func TestDescriptorOutsideMemory(t *testing.T) {
	d, _ := newTestDevice(t)
	d.Write(offDMA, []byte{0xFF, 0xFF, 0xFF, 0xFF})
	d.Write(offDMA+4, []byte{0xFF, 0xFF, 0xFF, 0xF0}) // no panic, nothing written
	d.Write(offDMA, []byte{0, 0, 0, 0, 0, 0, 0xFF, 0xF8})
}

func TestAddErrors(t *testing.T) {
	d := New(&memory{b: make([]byte, 16)})
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"signature is reserved", d.Add(KeySignature, nil), ErrDuplicate},
		{"file keys are reserved", d.Add(KeyFileFirst+3, nil), ErrDuplicate},
		{"empty name", d.AddFile("", nil), ErrName},
		{"name too long", d.AddFile(string(make([]byte, 56)), nil), ErrName},
		{"first file", d.AddFile("a", nil), nil},
		{"same file twice", d.AddFile("a", nil), ErrDuplicate},
	}
	for _, tc := range tests {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}
}

func TestSaveRestore(t *testing.T) {
	d, _ := newTestDevice(t)
	sel(d, KeyFileFirst)
	readPort(d, 3)
	st := d.SaveState()
	d2, _ := newTestDevice(t)
	d2.RestoreState(st)
	if got := readPort(d2, 5); string(got) != "0DATA" {
		t.Fatalf("restored device reads %q, want %q", got, "0DATA")
	}
}

// FuzzGuest drives the device with arbitrary port accesses and DMA
// descriptors: it must never panic nor touch memory outside guest RAM.
func FuzzGuest(f *testing.F) {
	f.Add([]byte{0, 2, 0x20, 0x00, 1, 1, 0, 4, 4, 0, 0, 0x10, 0, 8, 4, 0, 0, 0x10, 0})
	f.Add([]byte{8, 4, 0xFF, 0xFF, 0xFF, 0xF0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		m := &memory{b: make([]byte, 0x2000)}
		// The descriptor area is guest-controlled too.
		copy(m.b[0x1000:], ops)
		d := New(m)
		_ = d.AddFile("etc/e820", []byte("0123456789"))
		for len(ops) >= 2 {
			off, width := uint64(ops[0]%Size), 1<<(ops[1]%4)
			ops = ops[2:]
			if len(ops) < width {
				return
			}
			data := append([]byte(nil), ops[:width]...)
			ops = ops[width:]
			if width&1 == 0 && off%2 == 1 {
				d.Read(off, data)
			} else {
				d.Write(off, data)
			}
		}
	})
}
