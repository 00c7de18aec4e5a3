package vdi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/govisor/govisor/internal/diskimage"
)

// randomSparse fills a few random runs of buf with random bytes, leaving
// the rest zero, so images get both allocated and free blocks.
func randomSparse(r *rand.Rand, buf []byte) {
	for range 12 {
		off := r.IntN(len(buf))
		n := min(len(buf)-off, 1+r.IntN(300<<10))
		for i := off; i < off+n; i++ {
			buf[i] = byte(r.Uint32())
		}
	}
}

// readAll reads a whole image through govisor's reader.
func readAll(t *testing.T, path string) []byte {
	t.Helper()
	img, err := Open(path, true)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	b := make([]byte, img.VirtualSize())
	if _, err := img.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		size  int64
		fixed bool
	}{{"dynamic", 5<<20 + 512, false}, {"fixed", 3 << 20, true}, {"odd", 1000, false}} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "r.vdi")
			img, err := Create(path, tc.size, CreateOptions{Fixed: tc.fixed})
			if err != nil {
				t.Fatal(err)
			}
			want := make([]byte, img.VirtualSize())
			randomSparse(rand.New(rand.NewPCG(1, 2)), want)
			// Two passes, the second partly over the first, in odd pieces.
			for off := 0; off < len(want); off += 77777 {
				img.WriteAt(want[off:min(off+77777, len(want))], int64(off))
			}
			if _, err := img.WriteAt(want, 0); err != nil {
				t.Fatal(err)
			}
			if err := img.Close(); err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, path); !bytes.Equal(got, want) {
				t.Fatal("read back differs")
			}
			info, err := diskimage.InfoOf(path, "")
			if err != nil || info.Format != "vdi" || info.Subformat != tc.name && tc.name != "odd" || info.VirtualSize != (tc.size+511)/512*512 {
				t.Fatalf("info %+v %v", info, err)
			}
		})
	}
}

func TestSparseWritesAllocateOnlyData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.vdi")
	img, err := Create(path, 8<<20, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	img.WriteAt(make([]byte, 1<<20), 0) // zeros allocate nothing
	img.WriteAt([]byte("x"), 5<<20+3)
	ext, _ := img.Map(0, 8<<20)
	want := []diskimage.Extent{{Offset: 0, Length: 5 << 20, Zero: true}, {Offset: 5 << 20, Length: 1 << 20}, {Offset: 6 << 20, Length: 2 << 20, Zero: true}}
	if len(ext) != 3 || ext[0] != want[0] || ext[1] != want[1] || ext[2] != want[2] {
		t.Fatalf("map %+v", ext)
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	img, err = Open(path, true)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if h := img.Header(); h.Allocated != 1 || img.bmap[5] != 0 {
		t.Fatalf("allocated %d, map[5]=%d", h.Allocated, img.bmap[5])
	}
}

// TestModifyUUID: a session that writes gets a new uuidModify, one that
// only reads keeps it; uuidCreate never changes.
func TestModifyUUID(t *testing.T) {
	mf := diskimage.NewMemFile(nil, 0)
	img, err := create(mf, 2<<20, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h0 := img.Header()
	img.Close()
	img, _ = openFile(mf, false)
	img.ReadAt(make([]byte, 10), 0)
	img.Close()
	img, _ = openFile(mf, false)
	if h := img.Header(); h.UUIDModify != h0.UUIDModify {
		t.Fatal("a read-only session changed uuidModify")
	}
	img.WriteAt([]byte{1}, 0)
	img.WriteAt([]byte{2}, 1)
	img.Close()
	img, _ = openFile(mf, true)
	if h := img.Header(); h.UUIDModify == h0.UUIDModify || h.UUIDCreate != h0.UUIDCreate || h.UUIDModify[7]>>4 != 4 {
		t.Fatalf("after a write: create %x modify %x (was %x)", h.UUIDCreate, h.UUIDModify, h0.UUIDModify)
	}
}

// TestZeroBlocks reads VDI_IMAGE_BLOCK_ZERO entries as zeros and writes
// into them by allocating.
func TestZeroBlocks(t *testing.T) {
	mf := diskimage.NewMemFile(nil, 0)
	img, err := create(mf, 2<<20, CreateOptions{Fixed: true})
	if err != nil {
		t.Fatal(err)
	}
	img.WriteAt(bytes.Repeat([]byte{9}, 2<<20), 0)
	img.Close()
	binary.LittleEndian.PutUint32(mf.Bytes()[sectorSize+4:], blockZero)
	img, err = openFile(mf, false)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 2<<20)
	img.ReadAt(b, 0)
	if b[0] != 9 || b[1<<20] != 0 || b[2<<20-1] != 0 {
		t.Fatal("zero block reads data")
	}
	img.WriteAt([]byte{7}, 1<<20+1)
	img.ReadAt(b, 0)
	if b[1<<20] != 0 || b[1<<20+1] != 7 || img.bmap[1] != 2 {
		t.Fatalf("write into a zero block: %d %d map %d", b[1<<20], b[1<<20+1], img.bmap[1])
	}
}

func TestRefusals(t *testing.T) {
	good := func() []byte {
		mf := diskimage.NewMemFile(nil, 0)
		img, err := create(mf, 2<<20, CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		img.WriteAt([]byte{1}, 0)
		img.Close()
		return bytes.Clone(mf.Bytes())
	}
	le := binary.LittleEndian
	for name, tc := range map[string]struct {
		mut  func(b []byte) []byte
		want error
	}{
		"signature":  {func(b []byte) []byte { b[64] ^= 1; return b }, ErrBadSignature},
		"version 0":  {func(b []byte) []byte { le.PutUint32(b[68:], 0x00000001); return b }, diskimage.ErrUnsupported},
		"diff":       {func(b []byte) []byte { le.PutUint32(b[76:], typeDiff); return b }, diskimage.ErrUnsupported},
		"block size": {func(b []byte) []byte { le.PutUint32(b[376:], 3000); return b }, ErrBadHeader},
		"too big":    {func(b []byte) []byte { le.PutUint64(b[368:], 3<<20); return b }, ErrBadHeader},
		"map past":   {func(b []byte) []byte { return b[:sectorSize+4] }, diskimage.ErrCorrupt},
		"entry past": {func(b []byte) []byte { le.PutUint32(b[sectorSize+4:], 9); return b }, diskimage.ErrCorrupt},
		"twice":      {func(b []byte) []byte { le.PutUint32(b[sectorSize+4:], 0); return b }, diskimage.ErrCorrupt},
		"short":      {func(b []byte) []byte { return b[:100] }, ErrBadHeader},
	} {
		_, err := openFile(diskimage.NewMemFile(tc.mut(good()), 0), true)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}

func TestRegistry(t *testing.T) {
	dir := t.TempDir()
	for _, sub := range []string{"fixed", "dynamic"} {
		p := filepath.Join(dir, sub+".vdi")
		img, err := diskimage.Create(p, "vdi", 3<<20, diskimage.CreateOptions{Options: map[string]string{"subformat": sub}})
		if err != nil {
			t.Fatal(err)
		}
		img.Close()
		if f, err := diskimage.Probe(p); err != nil || f != "vdi" {
			t.Fatalf("%s probed as %q, %v", sub, f, err)
		}
		info, err := diskimage.InfoOf(p, "")
		if err != nil || info.Subformat != sub || info.VirtualSize != 3<<20 || info.ClusterSize != 1<<20 {
			t.Fatalf("info %+v %v", info, err)
		}
	}
	if _, err := diskimage.Create(filepath.Join(dir, "x.vdi"), "vdi", 1<<20, diskimage.CreateOptions{Options: map[string]string{"cluster_size": "1"}}); !errors.Is(err, diskimage.ErrUnsupported) {
		t.Fatalf("unknown option: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.vdi")); err == nil {
		t.Fatal("refused create left a file")
	}
}

// smallImage is a fuzz seed: a 16 KiB dynamic image with 4 KiB blocks (the
// data area right after the map), blocks 1 and 3 allocated.
func smallImage() []byte {
	h := &Header{Size: header1Plus, Type: typeNormal, BlocksOffset: sectorSize, DataOffset: 2 * sectorSize,
		LegacyGeometry: Geometry{SectorSize: sectorSize}, DiskSize: 16 << 10, BlockSize: 4096, Blocks: 4, Allocated: 2}
	b := make([]byte, 2*sectorSize+2*4096)
	copy(b, h.Marshal())
	for i, e := range []uint32{blockFree, 1, blockZero, 0} {
		binary.LittleEndian.PutUint32(b[sectorSize+4*i:], e)
	}
	copy(b[2*sectorSize:], bytes.Repeat([]byte("block3"), 600))
	copy(b[2*sectorSize+4096:], bytes.Repeat([]byte("block1"), 600))
	return b
}

func TestSmallImageSeed(t *testing.T) {
	img, err := openFile(diskimage.NewMemFile(smallImage(), 0), true)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 16<<10)
	img.ReadAt(b, 0)
	if !bytes.HasPrefix(b[4096:], []byte("block1block1")) || !bytes.HasPrefix(b[12288:], []byte("block3")) || b[0] != 0 || b[8192] != 0 {
		t.Fatal("hand-built image reads wrong")
	}
}

// FuzzOpen opens mutated images in memory and reads, maps and writes them:
// no input may panic or drive an allocation the file does not justify.
func FuzzOpen(f *testing.F) {
	f.Add(smallImage())
	mf := diskimage.NewMemFile(nil, 0)
	img, err := create(mf, 3<<20, CreateOptions{})
	if err != nil {
		f.Fatal(err)
	}
	img.WriteAt([]byte("govisor"), 1<<20+5)
	img.Close()
	// Only the header and map: the fuzzer mutates what the parser reads.
	f.Add(bytes.Clone(mf.Bytes()[:2*sectorSize]))
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := openFile(diskimage.NewMemFile(bytes.Clone(data), 64<<20), false)
		if err != nil {
			return
		}
		defer img.Close()
		buf := make([]byte, 64<<10)
		for off := int64(0); off < min(img.VirtualSize(), 4<<20); off += int64(len(buf)) {
			img.ReadAt(buf, off)
		}
		img.Map(0, img.VirtualSize())
		if img.VirtualSize() > 0 {
			img.WriteAt([]byte{1, 2, 3}, img.VirtualSize()/2)
		}
		img.Info()
	})
}
