package pcitransport_test

import (
	"encoding/binary"
	"testing"

	"github.com/govisor/govisor/internal/virtio/pcitransport"
	"github.com/govisor/govisor/internal/virtio/pcitransport/pcitest"
	"github.com/govisor/govisor/internal/virtio/rng"
	"github.com/govisor/govisor/internal/virtio/virtqueuetest"
)

// FuzzTransport replays random configuration space and BAR accesses
// (each 12-byte record: kind, size, offset, value) against a transport
// with a live rng device; nothing may panic.
func FuzzTransport(f *testing.F) {
	rec := func(kind, size byte, off uint16, v uint64) []byte {
		b := make([]byte, 12)
		b[0], b[1] = kind, size
		binary.LittleEndian.PutUint16(b[2:], off)
		binary.LittleEndian.PutUint64(b[4:], v)
		return b
	}
	var seed []byte
	seed = append(seed, rec(2, 1, 0x14, 3)...)
	seed = append(seed, rec(2, 4, 0x0C, 1)...)
	seed = append(seed, rec(2, 1, 0x14, 0xB)...)
	seed = append(seed, rec(2, 2, 0x18, 4)...)
	seed = append(seed, rec(2, 8, 0x20, 0x1000)...)
	seed = append(seed, rec(2, 2, 0x1C, 1)...)
	seed = append(seed, rec(2, 1, 0x14, 0xF)...)
	seed = append(seed, rec(2, 2, 0x3000, 0)...)
	f.Add(seed)
	f.Add(append(rec(0, 4, 0x10, 0x1234), rec(1, 4, 0x3800, 0)...))
	f.Add(append(rec(0, 2, 0x42, 0xC000), rec(3, 4, 0x3C00, 0)...))
	f.Fuzz(fuzzOne)
}

func fuzzOne(t *testing.T, data []byte) {
	plat := pcitest.NewPlatform()
	mem := virtqueuetest.NewMemory(0, 1<<16)
	tr, err := pcitransport.New(rng.New(), mem, plat)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if _, err := pcitest.Probe(tr, plat, mem, barAddr); err != nil {
		t.Fatal(err)
	}
	for ; len(data) >= 12; data = data[12:] {
		size := []int{1, 2, 4, 8}[data[1]%4]
		off := binary.LittleEndian.Uint16(data[2:])
		buf := make([]byte, 8)
		copy(buf, data[4:12])
		switch data[0] % 4 {
		case 0:
			tr.ConfigWrite(off%256, buf[:min(size, 4)])
		case 1:
			tr.ConfigRead(off%256, buf[:min(size, 4)])
		case 2:
			plat.Bus.Write(barAddr+uint64(off)%pcitransport.BARSize, buf[:size])
		case 3:
			plat.Bus.Read(barAddr+uint64(off)%pcitransport.BARSize, buf[:size])
		}
	}
	tr.SaveState()
}
