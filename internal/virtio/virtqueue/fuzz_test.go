package virtqueue_test

import (
	"encoding/binary"
	"testing"

	"github.com/govisor/govisor/internal/virtio/virtqueue"
	"github.com/govisor/govisor/internal/virtio/virtqueuetest"
)

// FuzzVirtqueue fills the descriptor table, an indirect table area and the
// available ring with random bytes and a random avail idx: the queue must
// return chains that lie in guest RAM or an error, never panic.
func FuzzVirtqueue(f *testing.F) {
	seed := make([]byte, 16*8+16)
	binary.LittleEndian.PutUint64(seed, ramBase+0x8000)
	binary.LittleEndian.PutUint32(seed[8:], 64)
	f.Add(seed, uint16(1), true, true)
	ind := make([]byte, 16*8+16)
	binary.LittleEndian.PutUint64(ind, ramBase+0x9000)
	binary.LittleEndian.PutUint32(ind[8:], 32)
	binary.LittleEndian.PutUint16(ind[12:], virtqueue.DescFIndirect)
	f.Add(ind, uint16(3), false, true)
	f.Add([]byte{1, 2, 3}, uint16(0xFFFF), true, false)
	f.Fuzz(func(t *testing.T, data []byte, availIdx uint16, eventIdx, indirect bool) {
		const size = 8
		mem := virtqueuetest.NewMemory(ramBase, 0x10000)
		d, err := virtqueuetest.NewDriver(mem, size)
		if err != nil {
			t.Fatal(err)
		}
		q, err := virtqueue.New(mem, d.Config(eventIdx, indirect))
		if err != nil {
			t.Fatal(err)
		}
		// Descriptor table, then avail ring entries, then an indirect
		// table at +0x9000 from the rest of the input.
		dt, _ := mem.Slice(d.DescAddr, 16*size)
		n := copy(dt, data)
		ring, _ := mem.Slice(d.AvailAddr+4, 2*size)
		n += copy(ring, data[n:])
		it, _ := mem.Slice(ramBase+0x9000, 0x1000)
		copy(it, data[n:])
		d.SetAvailIdx(availIdx)
		var c virtqueue.Chain
		for range 2 * size {
			ok, err := q.Pop(&c)
			if err != nil || !ok {
				break
			}
			for _, b := range append(c.Readable, c.Writable...) {
				if len(b) == 0 {
					t.Fatal("empty buffer in chain")
				}
			}
			if err := q.Push(&c, uint32(c.WriteLen)); err != nil {
				t.Fatal(err)
			}
			q.NeedInterrupt()
		}
	})
}
