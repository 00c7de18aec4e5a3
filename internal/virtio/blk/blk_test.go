package blk_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/govisor/govisor/internal/diskimage"
	_ "github.com/govisor/govisor/internal/diskimage/raw"
	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/blk"
	"github.com/govisor/govisor/internal/virtio/pcitransport"
	"github.com/govisor/govisor/internal/virtio/pcitransport/pcitest"
	"github.com/govisor/govisor/internal/virtio/virtqueue"
	"github.com/govisor/govisor/internal/virtio/virtqueuetest"
)

const (
	diskSize = 1 << 20
	allFeat  = ^uint64(0)
)

type rig struct {
	path string
	img  diskimage.Image
	dev  *blk.Device
	tr   *pcitransport.Transport
	drv  *pcitest.Driver
	mem  *virtqueuetest.Memory
}

func newRig(t testing.TB, opts blk.Options, features uint64) *rig {
	t.Helper()
	return newRigWrap(t, opts, features, nil)
}

// newRigWrap is newRig with the image wrapped by wrap (if not nil).
func newRigWrap(t testing.TB, opts blk.Options, features uint64, wrap func(diskimage.Image) diskimage.Image) *rig {
	t.Helper()
	r := &rig{path: filepath.Join(t.TempDir(), "disk.raw")}
	img, err := diskimage.Create(r.path, "raw", diskSize, diskimage.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if opts.ReadOnly {
		img.Close()
		if img, err = diskimage.Open(r.path, diskimage.OpenOptions{ReadOnly: true}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { img.Close() })
	if wrap != nil {
		img = wrap(img)
	}
	r.img = img
	if r.dev, err = blk.New(img, opts); err != nil {
		t.Fatal(err)
	}
	plat := pcitest.NewPlatform()
	r.mem = virtqueuetest.NewMemory(0, 8<<20)
	if r.tr, err = pcitransport.New(r.dev, r.mem, plat); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.tr.Close)
	if r.drv, err = pcitest.Probe(r.tr, plat, r.mem, 0xE0000000); err != nil {
		t.Fatal(err)
	}
	nq := max(opts.NumQueues, 1)
	if err := r.drv.Init(features, nq, 0); err != nil {
		t.Fatal(err)
	}
	return r
}

// do sends one request with the given header, payload (readable) and
// writable data length on queue q, and returns the status, used length
// and data read.
func (r *rig) do(t testing.TB, q int, typ uint32, sector uint64, payload []byte, inLen uint32) (byte, uint32, []byte) {
	t.Helper()
	vq := r.drv.Queues[q]
	hdr := make([]byte, 16)
	binary.LittleEndian.PutUint32(hdr, typ)
	binary.LittleEndian.PutUint64(hdr[8:], sector)
	ha, _ := vq.Alloc(16)
	r.mem.Write(ha, hdr)
	descs := []virtqueuetest.Desc{{Addr: ha, Len: 16}}
	if len(payload) > 0 {
		pa, _ := vq.Alloc(uint64(len(payload)))
		r.mem.Write(pa, payload)
		descs = append(descs, virtqueuetest.Desc{Addr: pa, Len: uint32(len(payload))})
	}
	var da uint64
	if inLen > 0 {
		da, _ = vq.Alloc(uint64(inLen))
		descs = append(descs, virtqueuetest.Desc{Addr: da, Len: inLen, Write: true})
	}
	sa, _ := vq.Alloc(1)
	r.mem.Write(sa, []byte{0xEE})
	descs = append(descs, virtqueuetest.Desc{Addr: sa, Len: 1, Write: true})
	if _, err := vq.AddChain(descs); err != nil {
		t.Fatal(err)
	}
	r.drv.Kick(q)
	u, err := r.drv.Wait(q)
	if err != nil {
		t.Fatal(err)
	}
	st := make([]byte, 1)
	r.mem.Read(sa, st)
	data := make([]byte, inLen)
	r.mem.Read(da, data)
	return st[0], u.Len, data
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

func TestWriteReadBack(t *testing.T) {
	r := newRig(t, blk.Options{}, allFeat)
	data := pattern(8192, 3)
	if st, n, _ := r.do(t, 0, blk.TypeOut, 10, data, 0); st != blk.StatusOK || n != 1 {
		t.Fatalf("OUT: status %d len %d", st, n)
	}
	st, n, got := r.do(t, 0, blk.TypeIn, 10, nil, 8192)
	if st != blk.StatusOK || n != 8193 || !bytes.Equal(got, data) {
		t.Fatalf("IN: status %d len %d, data equal %v", st, n, bytes.Equal(got, data))
	}
	if st, _, _ := r.do(t, 0, blk.TypeFlush, 0, nil, 0); st != blk.StatusOK {
		t.Fatalf("FLUSH: status %d", st)
	}
	// The flushed data is in the file.
	f, err := os.ReadFile(r.path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f[10*512:10*512+8192], data) {
		t.Fatal("data not in the image file")
	}
	if !r.mem.Dirty(r.drv.Queues[0].UsedAddr) {
		t.Fatal("used ring not dirty")
	}
}

func TestScatteredAndIndirect(t *testing.T) {
	r := newRig(t, blk.Options{}, allFeat)
	vq := r.drv.Queues[0]
	data := pattern(3*512, 9)
	hdr := make([]byte, 16)
	binary.LittleEndian.PutUint32(hdr, blk.TypeOut)
	binary.LittleEndian.PutUint64(hdr[8:], 100)
	// Header and first data bytes share a buffer; the rest is split unevenly.
	buf, _ := vq.Alloc(16 + 3*512)
	r.mem.Write(buf, append(hdr, data...))
	st, _ := vq.Alloc(1)
	table, _ := vq.Alloc(16 * 4)
	vq.AddIndirect(table, []virtqueuetest.Desc{{Addr: buf, Len: 16 + 100}, {Addr: buf + 116, Len: 1000}, {Addr: buf + 1116, Len: 16 + 3*512 - 1116}, {Addr: st, Len: 1, Write: true}})
	r.drv.Kick(0)
	if _, err := r.drv.Wait(0); err != nil {
		t.Fatal(err)
	}
	s := make([]byte, 1)
	r.mem.Read(st, s)
	if s[0] != blk.StatusOK {
		t.Fatalf("status %d", s[0])
	}
	got := make([]byte, len(data))
	r.img.ReadAt(got, 100*512)
	if !bytes.Equal(got, data) {
		t.Fatal("scattered write landed wrong")
	}
}

func TestRequests(t *testing.T) {
	r := newRig(t, blk.Options{Serial: "govisor-disk-0001"}, allFeat)
	capacity := uint64(diskSize / 512)
	tests := []struct {
		name    string
		typ     uint32
		sector  uint64
		payload []byte
		inLen   uint32
		status  byte
		used    uint32
	}{
		{"read last sector", blk.TypeIn, capacity - 1, nil, 512, blk.StatusOK, 513},
		{"read past end", blk.TypeIn, capacity - 1, nil, 1024, blk.StatusIOErr, 1},
		{"read at capacity", blk.TypeIn, capacity, nil, 512, blk.StatusIOErr, 1},
		{"read huge sector", blk.TypeIn, ^uint64(0), nil, 512, blk.StatusIOErr, 1},
		{"read partial sector", blk.TypeIn, 0, nil, 100, blk.StatusIOErr, 1},
		{"write past end", blk.TypeOut, capacity, make([]byte, 512), 0, blk.StatusIOErr, 1},
		{"write sector overflow", blk.TypeOut, 1 << 55, make([]byte, 512), 0, blk.StatusIOErr, 1},
		{"unknown type", 99, 0, nil, 0, blk.StatusUnsupp, 1},
		{"get id", blk.TypeGetID, 0, nil, 20, blk.StatusOK, 21},
		{"flush", blk.TypeFlush, 0, nil, 0, blk.StatusOK, 1},
		{"discard unsupported by raw", blk.TypeDiscard, 0, seg(0, 8, 0), 0, blk.StatusUnsupp, 1},
		{"write zeroes", blk.TypeWriteZeroes, 0, seg(4, 8, 0), 0, blk.StatusOK, 1},
		{"write zeroes out of range", blk.TypeWriteZeroes, 0, seg(capacity-1, 2, 0), 0, blk.StatusIOErr, 1},
		{"write zeroes reserved flag", blk.TypeWriteZeroes, 0, seg(0, 1, 2), 0, blk.StatusUnsupp, 1},
		{"write zeroes two segments", blk.TypeWriteZeroes, 0, append(seg(0, 1, 0), seg(2, 1, 0)...), 0, blk.StatusIOErr, 1},
		{"write zeroes no segment", blk.TypeWriteZeroes, 0, nil, 0, blk.StatusIOErr, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, n, data := r.do(t, 0, tt.typ, tt.sector, tt.payload, tt.inLen)
			if st != tt.status || n != tt.used {
				t.Fatalf("status %d used %d, want %d %d", st, n, tt.status, tt.used)
			}
			if tt.typ == blk.TypeGetID && string(bytes.TrimRight(data, "\x00")) != "govisor-disk-0001" {
				t.Fatalf("id %q", data)
			}
		})
	}
}

func seg(sector uint64, n, flags uint32) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint64(b, sector)
	binary.LittleEndian.PutUint32(b[8:], n)
	binary.LittleEndian.PutUint32(b[12:], flags)
	return b
}

func TestWriteZeroes(t *testing.T) {
	r := newRig(t, blk.Options{}, allFeat)
	r.do(t, 0, blk.TypeOut, 0, pattern(4096, 1), 0)
	if st, _, _ := r.do(t, 0, blk.TypeWriteZeroes, 0, seg(2, 4, 1), 0); st != blk.StatusOK {
		t.Fatalf("status %d", st)
	}
	_, _, got := r.do(t, 0, blk.TypeIn, 0, nil, 4096)
	want := pattern(4096, 1)
	clear(want[1024:3072])
	if !bytes.Equal(got, want) {
		t.Fatal("write zeroes wrong range")
	}
}

func TestReadOnly(t *testing.T) {
	r := newRig(t, blk.Options{ReadOnly: true}, allFeat)
	if r.drv.Features&blk.FeatureRO == 0 {
		t.Fatal("VIRTIO_BLK_F_RO not negotiated")
	}
	if r.drv.Features&(blk.FeatureWriteZeroes|blk.FeatureDiscard) != 0 {
		t.Fatal("write features offered on a read-only disk")
	}
	for _, tt := range []struct {
		typ     uint32
		payload []byte
	}{{blk.TypeOut, make([]byte, 512)}, {blk.TypeDiscard, seg(0, 1, 0)}, {blk.TypeWriteZeroes, seg(0, 1, 0)}} {
		if st, _, _ := r.do(t, 0, tt.typ, 0, tt.payload, 0); st != blk.StatusIOErr {
			t.Errorf("type %d on read-only disk: status %d", tt.typ, st)
		}
	}
	if st, _, _ := r.do(t, 0, blk.TypeIn, 0, nil, 512); st != blk.StatusOK {
		t.Fatalf("read on read-only disk: %d", st)
	}
}

func TestConfig(t *testing.T) {
	r := newRig(t, blk.Options{NumQueues: 2, QueueSize: 128, BlockSize: 4096}, allFeat)
	le := binary.LittleEndian
	c := r.drv.DeviceConfig(0, 60)
	checks := []struct {
		name string
		got  uint64
		want uint64
	}{
		{"capacity", le.Uint64(c), diskSize / 512},
		{"seg_max", uint64(le.Uint32(c[12:])), 126},
		{"blk_size", uint64(le.Uint32(c[20:])), 4096},
		{"num_queues", uint64(le.Uint16(c[34:])), 2},
		{"max_write_zeroes_seg", uint64(le.Uint32(c[52:])), 1},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %d, want %d", ch.name, ch.got, ch.want)
		}
	}
	if r.drv.Features&blk.FeatureMQ == 0 {
		t.Fatal("MQ not negotiated")
	}
	data := pattern(512, 5)
	if st, _, _ := r.do(t, 1, blk.TypeOut, 3, data, 0); st != blk.StatusOK {
		t.Fatal("write on queue 1 failed")
	}
	if _, _, got := r.do(t, 0, blk.TypeIn, 3, nil, 512); !bytes.Equal(got, data) {
		t.Fatal("queue 0 does not see queue 1's write")
	}
}

func TestMalformedNeedsReset(t *testing.T) {
	r := newRig(t, blk.Options{}, allFeat)
	vq := r.drv.Queues[0]
	buf, _ := vq.Alloc(16)
	// A loop: descriptor 0 -> 1 -> 0.
	vq.WriteDesc(vq.DescAddr, 0, buf, 16, virtqueue.DescFNext, 1)
	vq.WriteDesc(vq.DescAddr, 1, buf, 16, virtqueue.DescFNext, 0)
	vq.Publish(0)
	r.drv.Kick(0)
	if err := r.drv.WaitStatus(virtio.StatusDeviceNeedsReset); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(r.tr.Err(), virtqueue.ErrBadChain) {
		t.Fatalf("Err = %v", r.tr.Err())
	}
}

func TestNoStatusBuffer(t *testing.T) {
	r := newRig(t, blk.Options{}, allFeat)
	vq := r.drv.Queues[0]
	buf, _ := vq.Alloc(16)
	vq.AddChain([]virtqueuetest.Desc{{Addr: buf, Len: 16}})
	r.drv.Kick(0)
	if u, err := r.drv.Wait(0); err != nil || u.Len != 0 {
		t.Fatalf("used %+v, %v", u, err)
	}
}

func TestNewOptions(t *testing.T) {
	img, err := diskimage.Create(filepath.Join(t.TempDir(), "d"), "raw", 4096, diskimage.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	for _, o := range []blk.Options{{NumQueues: 64}, {QueueSize: 100}, {BlockSize: 256}, {BlockSize: 1000}} {
		if _, err := blk.New(img, o); !errors.Is(err, blk.ErrOptions) {
			t.Errorf("New(%+v) = %v", o, err)
		}
	}
}

func TestSaveRestore(t *testing.T) {
	r := newRig(t, blk.Options{Serial: "abc"}, allFeat)
	r.do(t, 0, blk.TypeOut, 0, pattern(512, 1), 0)
	s := r.dev.SaveState()
	ts := r.tr.SaveState()
	dev2, err := blk.New(r.img, blk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := dev2.RestoreState(s); err != nil {
		t.Fatal(err)
	}
	if got := dev2.SaveState(); got != s {
		t.Fatalf("restored %+v, want %+v", got, s)
	}
	if ts.Queues[0].Ring == nil || ts.Queues[0].Ring.NextUsed != 1 {
		t.Fatalf("transport queue state %+v", ts.Queues[0].Ring)
	}
	// The saved transport keeps serving.
	if st, _, _ := r.do(t, 0, blk.TypeIn, 0, nil, 512); st != blk.StatusOK {
		t.Fatal("device stopped after SaveState")
	}
	bad := s
	bad.Capacity++
	if err := dev2.RestoreState(bad); err == nil {
		t.Fatal("restore onto a different disk succeeded")
	}
}

// discardImage adds Discard to an image: the range reads as zeros after.
type discardImage struct {
	diskimage.Image
	calls [][2]int64
}

func (d *discardImage) Discard(off, n int64) error {
	d.calls = append(d.calls, [2]int64{off, n})
	_, err := d.WriteAt(make([]byte, n), off)
	return err
}

func TestDiscard(t *testing.T) {
	var di *discardImage
	r := newRigWrap(t, blk.Options{}, allFeat, func(img diskimage.Image) diskimage.Image {
		di = &discardImage{Image: img}
		return di
	})
	if r.drv.Features&blk.FeatureDiscard == 0 {
		t.Fatal("DISCARD not offered for an image that can discard")
	}
	le := binary.LittleEndian
	if c := r.drv.DeviceConfig(0, 60); le.Uint32(c[36:]) != blk.MaxDiscardSectors || le.Uint32(c[40:]) != 1 || c[56] != 1 {
		t.Fatalf("discard limits %x", c[36:60])
	}
	r.do(t, 0, blk.TypeOut, 8, pattern(1024, 2), 0)
	if st, _, _ := r.do(t, 0, blk.TypeDiscard, 0, seg(8, 1, 0), 0); st != blk.StatusOK {
		t.Fatalf("discard status %d", st)
	}
	if len(di.calls) != 1 || di.calls[0] != [2]int64{8 * 512, 512} {
		t.Fatalf("Discard calls %v", di.calls)
	}
	if st, _, _ := r.do(t, 0, blk.TypeDiscard, 0, seg(8, 1, 1), 0); st != blk.StatusUnsupp {
		t.Fatalf("discard with unmap flag: status %d", st)
	}
	_, _, got := r.do(t, 0, blk.TypeIn, 8, nil, 1024)
	want := pattern(1024, 2)
	clear(want[:512])
	if !bytes.Equal(got, want) {
		t.Fatal("discarded range not zero or neighbour changed")
	}
}

// TestScatteredVectorAndNot sends a write and a read whose data is split
// over several guest buffers to an image with VectorIO (raw: one preadv
// or pwritev per request) and to one without (one call per buffer): both
// land the same bytes, and reads mark every written guest byte dirty.
func TestScatteredVectorAndNot(t *testing.T) {
	for _, vec := range []bool{true, false} {
		var wrap func(diskimage.Image) diskimage.Image
		if !vec {
			wrap = func(img diskimage.Image) diskimage.Image { return struct{ diskimage.Image }{img} }
		}
		r := newRigWrap(t, blk.Options{}, allFeat, wrap)
		if _, ok := r.img.(blk.VectorIO); ok != vec {
			t.Fatalf("vec=%v: image has VectorIO %v", vec, ok)
		}
		vq := r.drv.Queues[0]
		data := pattern(5*512, 11)
		hdr := make([]byte, 16)
		binary.LittleEndian.PutUint32(hdr, blk.TypeOut)
		binary.LittleEndian.PutUint64(hdr[8:], 40)
		buf, _ := vq.Alloc(16 + uint64(len(data)))
		r.mem.Write(buf, append(hdr, data...))
		st, _ := vq.Alloc(1)
		vq.AddChain([]virtqueuetest.Desc{{Addr: buf, Len: 16 + 7}, {Addr: buf + 23, Len: 2000}, {Addr: buf + 2023, Len: 16 + 5*512 - 2023}, {Addr: st, Len: 1, Write: true}})
		r.drv.Kick(0)
		if _, err := r.drv.Wait(0); err != nil {
			t.Fatal(err)
		}
		s := make([]byte, 1)
		if r.mem.Read(st, s); s[0] != blk.StatusOK {
			t.Fatalf("vec=%v: write status %d", vec, s[0])
		}
		got := make([]byte, len(data))
		if r.img.ReadAt(got, 40*512); !bytes.Equal(got, data) {
			t.Fatalf("vec=%v: scattered write landed wrong", vec)
		}
		binary.LittleEndian.PutUint32(hdr, blk.TypeIn)
		ha, _ := vq.Alloc(16)
		r.mem.Write(ha, hdr)
		d1, _ := vq.Alloc(1000)
		d2, _ := vq.Alloc(5*512 - 1000 + 1) // the rest and the status byte
		r.mem.ClearDirty()
		vq.AddChain([]virtqueuetest.Desc{{Addr: ha, Len: 16}, {Addr: d1, Len: 1000, Write: true}, {Addr: d2, Len: 5*512 - 1000 + 1, Write: true}})
		r.drv.Kick(0)
		u, err := r.drv.Wait(0)
		if err != nil {
			t.Fatal(err)
		}
		read := make([]byte, len(data)+1)
		r.mem.Read(d1, read[:1000])
		r.mem.Read(d2, read[1000:])
		if u.Len != uint32(len(data)+1) || read[len(data)] != blk.StatusOK || !bytes.Equal(read[:len(data)], data) {
			t.Fatalf("vec=%v: scattered read: len %d status %d equal %v", vec, u.Len, read[len(data)], bytes.Equal(read[:len(data)], data))
		}
		if !r.mem.Dirty(d1) || !r.mem.Dirty(d2) {
			t.Fatalf("vec=%v: read buffers not marked dirty", vec)
		}
	}
}
