package vmdk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/govisor/govisor/internal/allzero"
	"github.com/govisor/govisor/internal/diskimage"
)

const sampleDescriptor = `# Disk DescriptorFile
version=1
encoding="UTF-8"
CID=fffffffe
parentCID=ffffffff
createType="twoGbMaxExtentSparse"

# Extent description
RW 4192256 SPARSE "my disk-s001.vmdk"
RW 2048 FLAT "flat.img" 10
RDONLY 100 ZERO

# The Disk Data Base
#DDB

ddb.adapterType = "lsilogic"
ddb.geometry.cylinders = "261"
ddb.geometry.heads = "255"
ddb.geometry.sectors = "63"
ddb.virtualHWVersion = "8"
`

func TestParseDescriptor(t *testing.T) {
	d, err := ParseDescriptor(sampleDescriptor)
	if err != nil {
		t.Fatal(err)
	}
	want := []ExtentLine{
		{"RW", 4192256, "SPARSE", "my disk-s001.vmdk", 0},
		{"RW", 2048, "FLAT", "flat.img", 10},
		{"RDONLY", 100, "ZERO", "", 0},
	}
	if len(d.Extents) != len(want) {
		t.Fatalf("extents %+v", d.Extents)
	}
	for i := range want {
		if d.Extents[i] != want[i] {
			t.Errorf("extent %d = %+v, want %+v", i, d.Extents[i], want[i])
		}
	}
	if d.CreateType != "twoGbMaxExtentSparse" || d.CID != 0xfffffffe || d.ParentCID != 0xffffffff ||
		d.DDB["ddb.adapterType"] != "lsilogic" || d.DDB["ddb.geometry.heads"] != "255" || d.Sectors() != 4192256+2048+100 {
		t.Fatalf("parsed %+v", d)
	}
	// String output parses back to the same extents.
	d2, err := ParseDescriptor(d.String())
	if err != nil || len(d2.Extents) != 3 || d2.Extents[1] != want[1] {
		t.Fatalf("reparse: %+v, %v", d2, err)
	}
}

func TestParseDescriptorErrors(t *testing.T) {
	for name, text := range map[string]string{
		"no createType":  "# Disk DescriptorFile\nversion=1\nRW 10 FLAT \"a\" 0\n",
		"no extents":     "# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\n",
		"bad size":       "createType=\"x\"\nRW -5 FLAT \"a\" 0\n",
		"huge size":      "createType=\"x\"\nRW 999999999999999999 FLAT \"a\" 0\n",
		"sum overflows":  "createType=\"x\"\nRW 100000000000 FLAT \"a\" 0\nRW 100000000000 FLAT \"a\" 0\n",
		"unquoted file":  "createType=\"x\"\nRW 10 FLAT a 0\n",
		"bad CID":        "createType=\"x\"\nCID=zz\nRW 10 FLAT \"a\" 0\n",
		"garbage line":   "createType=\"x\"\nhello\nRW 10 FLAT \"a\" 0\n",
		"bad offset":     "createType=\"x\"\nRW 10 FLAT \"a\" -1\n",
		"too few fields": "createType=\"x\"\nRW 10\n",
	} {
		if _, err := ParseDescriptor(text); !errors.Is(err, ErrBadDescriptor) {
			t.Errorf("%s: err %v", name, err)
		}
	}
}

func TestExtentPathConfined(t *testing.T) {
	for _, name := range []string{"/etc/passwd", "../x.vmdk", "a/../../x", ""} {
		if _, err := extentPath("/d", name); err == nil {
			t.Errorf("%q accepted", name)
		}
	}
	if p, err := extentPath("/d", "sub/x-flat.vmdk"); err != nil || p != "/d/sub/x-flat.vmdk" {
		t.Errorf("relative name: %q %v", p, err)
	}
}

func TestSparseHeader(t *testing.T) {
	h := SparseHeader{Version: 1, Flags: flagNewlineTest | flagRedundantGT, Capacity: 2048, GrainSize: 128,
		DescriptorOffset: 1, DescriptorSize: 20, NumGTEsPerGT: 512, RGDOffset: 21, GDOffset: 30, OverHead: 128}
	b := h.Marshal()
	got, err := ParseSparseHeader(b)
	if err != nil || *got != h {
		t.Fatalf("round trip %+v %v", got, err)
	}
	for _, tc := range []struct {
		name string
		off  int
		val  byte
	}{
		{"magic", 0, 'x'}, {"version", 4, 9}, {"grain not pow2", 20, 100}, {"grain huge", 22, 1},
		{"gtes", 45, 8}, {"capacity", 19, 0xff}, {"newline", 75, 'x'},
	} {
		c := bytes.Clone(b)
		c[tc.off] = tc.val
		if _, err := ParseSparseHeader(c); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

func randomSparse(r *rand.Rand, buf []byte) {
	for range 12 {
		off := r.IntN(len(buf))
		n := min(len(buf)-off, 1+r.IntN(200<<10))
		for i := off; i < off+n; i++ {
			buf[i] = byte(r.Uint32() % 7) // compressible, like real data
		}
	}
}

// writeShuffled writes want in 100 KiB chunks in a random order, as
// parallel converter workers would.
func writeShuffled(t *testing.T, img diskimage.Image, want []byte, r *rand.Rand) {
	const chunk = 100 << 10
	n := (len(want) + chunk - 1) / chunk
	for _, i := range r.Perm(n) {
		end := min(len(want), (i+1)*chunk)
		if _, err := img.WriteAt(want[i*chunk:end], int64(i*chunk)); err != nil {
			t.Fatal(err)
		}
	}
}

func readAll(t *testing.T, path string) ([]byte, *Image) {
	t.Helper()
	img, err := Open(path, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	b := make([]byte, img.VirtualSize())
	if _, err := img.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b, img
}

func TestRoundTrip(t *testing.T) {
	for _, sub := range []string{"monolithicSparse", "streamOptimized"} {
		t.Run(sub, func(t *testing.T) {
			r := rand.New(rand.NewPCG(7, 8))
			path := filepath.Join(t.TempDir(), "d.vmdk")
			const size = 40<<20 + 3*512
			img, err := Create(path, size, CreateOptions{Subformat: sub})
			if err != nil {
				t.Fatal(err)
			}
			want := make([]byte, size)
			randomSparse(r, want)
			writeShuffled(t, img, want, r)
			// Rewrite a range: fine before Close for both subformats.
			copy(want[5000:], bytes.Repeat([]byte{9}, 70000))
			if _, err := img.WriteAt(want[5000:75000], 5000); err != nil {
				t.Fatal(err)
			}
			if err := img.Close(); err != nil {
				t.Fatal(err)
			}
			got, rimg := readAll(t, path)
			if !bytes.Equal(got, want) {
				t.Fatal("read back differs")
			}
			if rimg.Subformat() != sub {
				t.Fatalf("subformat %q", rimg.Subformat())
			}
			ext, err := rimg.Map(0, size)
			if err != nil {
				t.Fatal(err)
			}
			var total int64
			for _, e := range ext {
				if e.Zero && !allzero.Is(want[e.Offset:e.Offset+e.Length]) {
					t.Fatalf("zero extent %+v holds data", e)
				}
				total += e.Length
			}
			if total != size || len(ext) < 3 {
				t.Fatalf("map %d bytes in %d extents", total, len(ext))
			}
			info, err := diskimage.InfoOf(path, "")
			if err != nil || info.VirtualSize != size || info.Subformat != sub || info.ClusterSize != 64<<10 {
				t.Fatalf("info %+v %v", info, err)
			}
		})
	}
}

func TestSparseReopenWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.vmdk")
	img, err := Create(path, 8<<20, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	img.WriteAt([]byte("first"), 100)
	img.Close()
	img, err = Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	img.WriteAt([]byte("second"), 1<<20)
	img.WriteAt([]byte("FI"), 100)
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	got, _ := readAll(t, path)
	if string(got[100:105]) != "FIrst" || string(got[1<<20:1<<20+6]) != "second" {
		t.Fatalf("got %q %q", got[100:105], got[1<<20:1<<20+6])
	}
}

func TestMultiExtentDescriptor(t *testing.T) {
	dir := t.TempDir()
	// A descriptor file over a sparse extent, a flat file at an offset and
	// a ZERO extent, like twoGbMaxExtent* and monolithicFlat images.
	sp, err := Create(filepath.Join(dir, "s001.vmdk"), 1<<20, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sp.WriteAt(bytes.Repeat([]byte{1}, 1000), 4096)
	sp.Close()
	flat := append(bytes.Repeat([]byte{0xee}, 1024), bytes.Repeat([]byte{2}, 512*8)...)
	os.WriteFile(filepath.Join(dir, "f.img"), flat, 0o644)
	desc := "# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType=\"twoGbMaxExtentSparse\"\n" +
		"RW 2048 SPARSE \"s001.vmdk\"\nRW 8 FLAT \"f.img\" 2\nRW 16 ZERO\n"
	dp := filepath.Join(dir, "d.vmdk")
	os.WriteFile(dp, []byte(desc), 0o644)
	got, img := readAll(t, dp)
	want := make([]byte, (2048+8+16)*512)
	copy(want[4096:], bytes.Repeat([]byte{1}, 1000))
	copy(want[1<<20:], bytes.Repeat([]byte{2}, 4096))
	if !bytes.Equal(got, want) {
		t.Fatal("multi-extent read differs")
	}
	ext, _ := img.Map(0, img.VirtualSize())
	if ext[len(ext)-1].Zero != true || ext[len(ext)-2].Zero {
		t.Fatalf("map %+v", ext)
	}
}

func TestRefusals(t *testing.T) {
	dir := t.TempDir()
	for name, desc := range map[string]string{
		"parent":   "# Disk DescriptorFile\nCID=1\nparentCID=2\nparentFileNameHint=\"base.vmdk\"\ncreateType=\"monolithicSparse\"\nRW 8 SPARSE \"x\"\n",
		"escape":   "# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\nRW 8 FLAT \"../../etc/passwd\" 0\n",
		"vmfsrdm":  "# Disk DescriptorFile\ncreateType=\"vmfsRawDeviceMap\"\nRW 8 VMFSRDM \"x\"\n",
		"no files": "# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\nRW 8 FLAT \"missing\" 0\n",
	} {
		p := filepath.Join(dir, name+".vmdk")
		os.WriteFile(p, []byte(desc), 0o644)
		if _, err := Open(p, true); err == nil {
			t.Errorf("%s: opened", name)
		}
	}
	if _, err := Create(filepath.Join(dir, "x.vmdk"), 1<<20, CreateOptions{Subformat: "vmfs"}); !errors.Is(err, diskimage.ErrUnsupported) {
		t.Errorf("bad subformat: %v", err)
	}
}

func FuzzDescriptor(f *testing.F) {
	f.Add(sampleDescriptor)
	f.Add(newDescriptor("streamOptimized", "a.vmdk", 2048, 5).String())
	f.Add("createType=\"x\"\nRW 10 FLAT \"a b\" 7\n")
	f.Fuzz(func(t *testing.T, text string) {
		d, err := ParseDescriptor(text)
		if err != nil {
			return
		}
		if d.Sectors() < 0 || d.Sectors() > maxSectors {
			t.Fatalf("sectors %d", d.Sectors())
		}
		_ = d.String()
	})
}

// smallSparse builds a monolithicSparse extent with 4 KiB grains and 16
// entries per table, grain 1 present: a seed small enough to fuzz well.
func smallSparse() []byte {
	h := SparseHeader{Version: 1, Flags: flagNewlineTest | flagRedundantGT, Capacity: 64, GrainSize: 8,
		DescriptorOffset: 1, DescriptorSize: 2, NumGTEsPerGT: 16, RGDOffset: 3, GDOffset: 5, OverHead: 7}
	b := make([]byte, 8*sectorSize+4096)
	copy(b, h.Marshal())
	copy(b[sectorSize:], newDescriptor("monolithicSparse", "s.vmdk", 64, 1).String())
	for _, gd := range []int{3, 5} {
		binary.LittleEndian.PutUint32(b[gd*sectorSize:], uint32(gd+1)) // GT right after
		binary.LittleEndian.PutUint32(b[(gd+1)*sectorSize+4:], 8)      // grain 1 at sector 8
	}
	copy(b[8*sectorSize:], bytes.Repeat([]byte("grain1!"), 585))
	return b
}

func TestSmallSparseSeed(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.vmdk")
	os.WriteFile(p, smallSparse(), 0o644)
	got, _ := readAll(t, p)
	if len(got) != 64*512 || !bytes.HasPrefix(got[4096:], []byte("grain1!grain1!")) || !allzero.Is(got[:4096]) || !allzero.Is(got[8192:]) {
		t.Fatal("hand-built sparse extent reads wrong")
	}
}

func FuzzOpen(f *testing.F) {
	f.Add(smallSparse())
	p := filepath.Join(f.TempDir(), "so.vmdk")
	img, err := Create(p, 64<<10, CreateOptions{Subformat: "streamOptimized"})
	if err != nil {
		f.Fatal(err)
	}
	img.WriteAt(bytes.Repeat([]byte("govisor"), 1000), 1000)
	img.Close()
	b, _ := os.ReadFile(p)
	f.Add(b)
	// Descriptors name their extents relative to an empty folder: they
	// fail to open, as they would without their files.
	empty := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		// In memory: a file per input made this target crawl (fsync).
		img, err := openOn(diskimage.NewMemFile(bytes.Clone(data), 64<<20), empty, false)
		if err != nil {
			return
		}
		defer img.Close()
		buf := make([]byte, 256<<10)
		for off := int64(0); off < min(img.VirtualSize(), 4<<20); off += int64(len(buf)) {
			img.ReadAt(buf, off)
		}
		img.Map(0, min(img.VirtualSize(), 4<<20))
		if img.VirtualSize() > 0 {
			img.WriteAt([]byte{1}, img.VirtualSize()-1)
		}
	})
}

func TestRegistry(t *testing.T) {
	dir := t.TempDir()
	for _, sub := range []string{"monolithicSparse", "streamOptimized"} {
		p := filepath.Join(dir, sub+".vmdk")
		img, err := diskimage.Create(p, "vmdk", 3<<20, diskimage.CreateOptions{Options: map[string]string{"subformat": sub}})
		if err != nil {
			t.Fatal(err)
		}
		img.WriteAt([]byte{1}, 0)
		if err := img.Close(); err != nil {
			t.Fatal(err)
		}
		if f, err := diskimage.Probe(p); err != nil || f != "vmdk" {
			t.Fatalf("%s probed as %q, %v", sub, f, err)
		}
		info, err := diskimage.InfoOf(p, "")
		if err != nil || info.Subformat != sub || info.VirtualSize != 3<<20 {
			t.Fatalf("info %+v %v", info, err)
		}
	}
}
