// Package virtqueue measures the VMM's own cost per virtio request, host
// side only: a fake guest driver in the same process pushes requests
// through the real PCI transport, virtqueue and device code (doorbell,
// worker goroutine, disk I/O, used ring, MSI-X). Run with
//
//	go test -bench . -benchmem ./bench/virtqueue
//
// ns/op is nanoseconds per request and allocs/op allocations per request.
package virtqueue

import (
	"encoding/binary"
	"path/filepath"
	"testing"

	"github.com/govisor/govisor/internal/diskimage"
	_ "github.com/govisor/govisor/internal/diskimage/raw"
	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/blk"
	"github.com/govisor/govisor/internal/virtio/pcitransport"
	"github.com/govisor/govisor/internal/virtio/pcitransport/pcitest"
	"github.com/govisor/govisor/internal/virtio/rng"
	"github.com/govisor/govisor/internal/virtio/virtqueuetest"
)

const features = virtio.FeatureVersion1 | virtio.FeatureRingEventIdx | virtio.FeatureRingIndirectDesc

// setup attaches dev to a fake platform and initialises it with a fake
// driver over 64 MiB of fake guest RAM.
func setup(b *testing.B, dev virtio.Device) *pcitest.Driver {
	b.Helper()
	plat := pcitest.NewPlatform()
	mem := virtqueuetest.NewMemory(0, 64<<20)
	tr, err := pcitransport.New(dev, mem, plat)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(tr.Close)
	drv, err := pcitest.Probe(tr, plat, mem, 0xE0000000)
	if err != nil {
		b.Fatal(err)
	}
	if err := drv.Init(features, len(dev.QueueMaxSizes()), 0); err != nil {
		b.Fatal(err)
	}
	return drv
}

// slot is one prepared request: its descriptors and status byte address.
type slot struct {
	descs  []virtqueuetest.Desc
	status uint64
}

func benchBlk(b *testing.B, size uint32, typ uint32, depth int) {
	path := filepath.Join(b.TempDir(), "bench.raw")
	const disk = 256 << 20
	img, err := diskimage.Create(path, "raw", disk, diskimage.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { img.Close() })
	dev, err := blk.New(img, blk.Options{})
	if err != nil {
		b.Fatal(err)
	}
	drv := setup(b, dev)
	vq := drv.Queues[0]
	slots := make([]slot, depth)
	for i := range slots {
		hdr, _ := vq.Alloc(16)
		data, _ := vq.Alloc(uint64(size))
		st, err := vq.Alloc(1)
		if err != nil {
			b.Fatal(err)
		}
		h := make([]byte, 16)
		binary.LittleEndian.PutUint32(h, typ)
		// Spread requests over the disk, one slot per region.
		binary.LittleEndian.PutUint64(h[8:], uint64(i)*uint64(size)/512%(disk/512-uint64(size)/512))
		drv.Mem.Write(hdr, h)
		slots[i] = slot{descs: []virtqueuetest.Desc{{Addr: hdr, Len: 16}, {Addr: data, Len: size, Write: typ == blk.TypeIn}, {Addr: st, Len: 1, Write: true}}, status: st}
	}
	kick := drv.KickAddr(0)
	statusBuf := make([]byte, 1)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	run(b, drv, kick, slots, func(s *slot) {
		drv.Mem.Read(s.status, statusBuf)
		if statusBuf[0] != blk.StatusOK {
			b.Fatalf("status %d", statusBuf[0])
		}
	})
}

// run keeps up to len(slots) requests in flight until b.N completed.
func run(b *testing.B, drv *pcitest.Driver, kick uint64, slots []slot, check func(*slot)) {
	vq := drv.Queues[0]
	byHead := make([]*slot, vq.Size)
	submit := func(s *slot) {
		head, err := vq.AddChain(s.descs)
		if err != nil {
			b.Fatal(err)
		}
		byHead[head] = s
	}
	inflight := 0
	for i := range slots {
		if i < b.N {
			submit(&slots[i])
			inflight++
		}
	}
	drv.Plat.Write16(kick, 0)
	for done, sent := 0, inflight; done < b.N; {
		u := drv.WaitInterrupt(0)
		done++
		inflight--
		s := byHead[u.Head]
		check(s)
		if sent < b.N {
			old := vq.AvailIdx()
			submit(s)
			sent++
			inflight++
			// Kick only when the device asked for it, as Linux does.
			if vq.NeedKick(old, true) {
				drv.Plat.Write16(kick, 0)
			}
		}
	}
}

// BenchmarkBlk4K reads 4 KiB per request, one request in flight.
func BenchmarkBlk4K(b *testing.B) { benchBlk(b, 4096, blk.TypeIn, 1) }

// BenchmarkBlk64K reads 64 KiB per request, one request in flight.
func BenchmarkBlk64K(b *testing.B) { benchBlk(b, 64<<10, blk.TypeIn, 1) }

// BenchmarkBlk4KWrite writes 4 KiB per request, one request in flight.
func BenchmarkBlk4KWrite(b *testing.B) { benchBlk(b, 4096, blk.TypeOut, 1) }

// BenchmarkBlk4KDepth32 reads 4 KiB per request with 32 in flight.
func BenchmarkBlk4KDepth32(b *testing.B) { benchBlk(b, 4096, blk.TypeIn, 32) }

// BenchmarkRng asks for 64 random bytes per request.
func BenchmarkRng(b *testing.B) {
	drv := setup(b, rng.New())
	vq := drv.Queues[0]
	buf, _ := vq.Alloc(64)
	slots := []slot{{descs: []virtqueuetest.Desc{{Addr: buf, Len: 64, Write: true}}}}
	b.SetBytes(64)
	b.ReportAllocs()
	b.ResetTimer()
	run(b, drv, drv.KickAddr(0), slots, func(*slot) {})
}
