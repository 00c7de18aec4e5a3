package vmdk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/govisor/govisor/internal/allzero"
	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/diskimage/vmdk/esxtest"
)

// fill is n bytes of seeded random data.
func fill(n int, seed uint64) []byte {
	b := make([]byte, n+7)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b[:n]
}

// esxChain is a base and the layers over it, as test cases build them.
type esxChain struct {
	name   string
	size   int64
	layers []esxtest.Layer
}

const esxSize = 20<<20 + 64<<10 // two seSparse tables, eleven COWD ones

func esxChains() []esxChain {
	cowd := func(seed uint64) esxtest.Layer {
		return esxtest.Layer{Kind: "vmfsSparse", Data: map[int64][]byte{
			512:              fill(512, seed),      // one grain inside the first table
			2<<20 - 1024:     fill(4096, seed+1),   // across the first table's end
			7<<20 + 4096:     fill(64<<10, seed+2), // a contiguous run
			esxSize - 1536:   fill(1536, seed+3),   // the disk's last grains
			16<<20 + 100*512: fill(512*3, seed+4),  // in the seSparse second table's range
		}}
	}
	se := func(seed uint64, skip int64) esxtest.Layer {
		return esxtest.Layer{Kind: "seSparse", SkipGrains: skip,
			Data: map[int64][]byte{
				0:              fill(4096, seed),
				1<<20 + 8192:   fill(40960, seed+1),
				16<<20 - 4096:  fill(8192, seed+2), // across the 16 MiB table boundary
				esxSize - 4096: fill(4096, seed+3),
			},
			// Over the base's data (it has a hole at each MiB's first
			// 256 KiB) and, at 7 MiB, over a COWD layer's.
			Zero:     [][2]int64{{3<<20 + 512<<10, 3<<20 + 576<<10}, {7 << 20, 7<<20 + 8192}},
			Unmapped: [][2]int64{{18<<20 + 300<<10, 18<<20 + 304<<10}},
		}
	}
	return []esxChain{
		{"vmfsSparse over vmfs", esxSize, []esxtest.Layer{cowd(10)}},
		{"seSparse over vmfs", esxSize, []esxtest.Layer{se(20, 0)}},
		{"seSparse with grain indices past 4096", esxSize, []esxtest.Layer{se(30, 5000)}},
		{"COWD of 64 KiB grains", esxSize, []esxtest.Layer{{Kind: "vmfsSparse", GrainSectors: 128,
			Data: map[int64][]byte{64 << 10: fill(128<<10, 40), 9 << 20: fill(64<<10, 41)}}}},
		{"vmfs + vmfsSparse + seSparse", esxSize, []esxtest.Layer{cowd(50), se(60, 10)}},
		{"vmfs + vmfsSparse + vmfsSparse", esxSize, []esxtest.Layer{cowd(70), cowd(80)}},
	}
}

// writeChain writes c into dir as ESXi lays it out (vm.vmdk, vm-000001.vmdk,
// ...) and returns the top descriptor and the flattened content.
func writeChain(t testing.TB, dir string, c esxChain) (string, []byte) {
	t.Helper()
	want := fill(int(c.size), 1)
	for i := 0; i < len(want); i += 1 << 20 {
		clear(want[i:min(len(want), i+256<<10)]) // holes a parent shows through
	}
	if err := esxtest.WriteBase(dir, "vm", want, 0x1000); err != nil {
		t.Fatal(err)
	}
	want = bytes.Clone(want)
	parent, cid := "vm.vmdk", uint32(0x1000)
	for i, l := range c.layers {
		name := "vm-00000" + string(rune('1'+i))
		if err := esxtest.WriteDelta(dir, name, parent, cid, cid+1, c.size, l); err != nil {
			t.Fatal(err)
		}
		for off, d := range l.Data {
			copy(want[off:], d)
		}
		for _, r := range append(l.Zero, l.Unmapped...) {
			clear(want[r[0]:r[1]])
		}
		parent, cid = name+".vmdk", cid+1
	}
	return filepath.Join(dir, parent), want
}

func openRO(t testing.TB, path string) diskimage.Image {
	t.Helper()
	img, err := diskimage.Open(path, diskimage.OpenOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	return img
}

func TestESXSnapshotChains(t *testing.T) {
	for _, c := range esxChains() {
		t.Run(c.name, func(t *testing.T) {
			top, want := writeChain(t, t.TempDir(), c)
			img := openRO(t, top)
			if img.VirtualSize() != c.size {
				t.Fatalf("size %d, want %d", img.VirtualSize(), c.size)
			}
			// Odd chunks: runs must stop and restart mid-grain.
			got := make([]byte, c.size)
			for off := int64(0); off < c.size; off += 100003 {
				if _, err := img.ReadAt(got[off:min(c.size, off+100003)], off); err != nil {
					t.Fatalf("read at %d: %v", off, err)
				}
			}
			if i := firstDiff(got, want); i >= 0 {
				t.Fatalf("flattened chain differs first at byte %#x: %#x, want %#x", i, got[i], want[i])
			}
			ext, err := img.(diskimage.Mapper).Map(0, c.size)
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
			if total != c.size {
				t.Fatalf("map covers %d bytes", total)
			}
			info, err := diskimage.InfoOf(top, "")
			if err != nil || info.Subformat != c.layers[len(c.layers)-1].Kind || info.VirtualSize != c.size ||
				len(info.BackingChain) != len(c.layers) || filepath.Base(info.BackingChain[len(c.layers)-1]) != "vm.vmdk" {
				t.Fatalf("info %+v, %v", info, err)
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// TestESXNoParent reads a delta without its parent (NoBacking): stored
// grains only, the rest zeros, and zero grains zero.
func TestESXNoParent(t *testing.T) {
	for _, l := range esxChains()[:2] {
		dir := t.TempDir()
		top, _ := writeChain(t, dir, l)
		img, err := diskimage.Open(top, diskimage.OpenOptions{ReadOnly: true, NoBacking: true})
		if err != nil {
			t.Fatal(err)
		}
		want := make([]byte, l.size)
		for off, d := range l.layers[0].Data {
			copy(want[off:], d)
		}
		got := make([]byte, l.size)
		img.ReadAt(got, 0)
		img.Close()
		if !bytes.Equal(got, want) {
			t.Errorf("%s: the delta alone reads wrong", l.name)
		}
	}
}

// esxFiles writes a one-delta chain of kind and returns the folder and
// the delta's data file.
func esxFiles(t *testing.T, kind string) (dir, top, data string) {
	dir = t.TempDir()
	c := esxChains()[0]
	if kind == "seSparse" {
		c = esxChains()[1]
	}
	top, _ = writeChain(t, dir, c)
	suffix := "-delta.vmdk"
	if kind == "seSparse" {
		suffix = "-sesparse.vmdk"
	}
	return dir, top, filepath.Join(dir, "vm-000001"+suffix)
}

// patch rewrites bytes of a file in place.
func patch(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func le32(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }
func le64(v uint64) []byte { return append(le32(uint32(v)), le32(uint32(v>>32))...) }

// TestESXCorrupt refuses damaged snapshot files with errors naming the
// file and the field, at open or at the read that meets the damage.
func TestESXCorrupt(t *testing.T) {
	for _, tc := range []struct {
		name, kind string
		off        int64 // where to patch the data file; -1: truncate to len(b)
		b          []byte
		atRead     bool // the damage shows only when read
		is         error
		says       string
	}{
		{"COWD version", "vmfsSparse", 4, le32(2), false, ErrBadHeader, "COWD version 2"},
		{"COWD grain size 0", "vmfsSparse", 16, le32(0), false, ErrBadHeader, "grainSize 0"},
		{"COWD grain size huge", "vmfsSparse", 16, le32(1 << 30), false, ErrBadHeader, "grainSize"},
		{"COWD gdOffset in header", "vmfsSparse", 20, le32(1), false, ErrBadHeader, "gdOffset 1"},
		{"COWD gdOffset past end", "vmfsSparse", 20, le32(1 << 30), false, ErrBadHeader, "past the end"},
		{"COWD too few GD entries", "vmfsSparse", 24, le32(3), false, ErrBadHeader, "needs 11"},
		{"COWD huge GD", "vmfsSparse", 24, le32(1 << 31), false, ErrBadHeader, "numGDEntries"},
		{"COWD short file", "vmfsSparse", -1, make([]byte, 1000), false, ErrBadHeader, "2048-byte COWD header"},
		{"COWD table past end", "vmfsSparse", 4 * 512, le32(1 << 30), false, diskimage.ErrCorrupt, "grain directory entry 0"},
		{"COWD grain past end", "vmfsSparse", 5*512 + 4, le32(1 << 30), true, diskimage.ErrCorrupt, "past the end"},
		{"seSparse version", "seSparse", 8, le64(0x300000001), false, ErrBadHeader, "version 0x300000001"},
		{"seSparse grain size", "seSparse", 24, le64(16), false, ErrBadHeader, "grain size 16"},
		{"seSparse table size", "seSparse", 32, le64(32), false, ErrBadHeader, "grain table size 32"},
		{"seSparse flags", "seSparse", 40, le64(1), false, ErrBadHeader, "flags 0x1"},
		{"seSparse reserved", "seSparse", 56, le64(1), false, ErrBadHeader, "reserved"},
		{"seSparse capacity", "seSparse", 16, le64(1 << 62), false, ErrBadHeader, "capacity"},
		{"seSparse volatile magic", "seSparse", 512, le64(7), false, ErrBadHeader, "volatile header magic"},
		{"seSparse volatile past end", "seSparse", 80, le64(1 << 40), false, ErrBadHeader, "volatile header offset"},
		{"seSparse dirty journal", "seSparse", 512 + 24, le64(1), false, diskimage.ErrUnsupported, "journal needs replaying"},
		{"seSparse GD past end", "seSparse", 128, le64(1 << 40), false, ErrBadHeader, "grain directory offset"},
		{"seSparse GD too small", "seSparse", 136, le64(0), false, ErrBadHeader, "needs 2"},
		{"seSparse GD entry kind", "seSparse", 2 * 512, le64(0x2000000000000000), false, diskimage.ErrCorrupt, "grain directory entry 0"},
		{"seSparse GD entry index", "seSparse", 2 * 512, le64(0x1000000000000009), false, diskimage.ErrCorrupt, "grain table 9"},
		{"seSparse GT entry kind", "seSparse", 4 * 512, le64(0x5000000000000000), true, diskimage.ErrCorrupt, "unknown kind 5"},
		{"seSparse GT entry stray bits", "seSparse", 4*512 + 8, le64(7), true, diskimage.ErrCorrupt, "unallocated with bits set"},
		{"seSparse grain outside", "seSparse", 4 * 512, le64(0x3000000000100000), true, diskimage.ErrCorrupt, "outside the grains area"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, top, data := esxFiles(t, tc.kind)
			if tc.off < 0 {
				os.WriteFile(data, tc.b, 0o644)
			} else {
				patch(t, data, tc.off, tc.b)
			}
			img, err := diskimage.Open(top, diskimage.OpenOptions{ReadOnly: true})
			if tc.atRead {
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				defer img.Close()
				_, err = img.ReadAt(make([]byte, img.VirtualSize()), 0)
			}
			if err == nil {
				if img != nil {
					img.Close()
				}
				t.Fatal("accepted")
			}
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), filepath.Base(data)) {
				t.Fatalf("error %q: want %v naming %s and saying %q", err, tc.is, filepath.Base(data), tc.says)
			}
		})
	}
}

// TestESXRefusals: a parent changed after the snapshot (CID mismatch), a
// writable open, and a data file opened without its descriptor.
func TestESXRefusals(t *testing.T) {
	for _, kind := range []string{"vmfsSparse", "seSparse"} {
		t.Run(kind, func(t *testing.T) {
			dir, top, data := esxFiles(t, kind)
			if _, err := diskimage.Open(top, diskimage.OpenOptions{}); !errors.Is(err, diskimage.ErrUnsupported) {
				t.Errorf("writable open: %v, want ErrUnsupported", err)
			}
			if f, err := diskimage.Probe(data); err != nil || f != "vmdk" {
				t.Errorf("data file probes as %q, %v", f, err)
			}
			_, err := diskimage.Open(data, diskimage.OpenOptions{ReadOnly: true})
			if !errors.Is(err, diskimage.ErrUnsupported) || !strings.Contains(err.Error(), "descriptor") {
				t.Errorf("bare data file: %v", err)
			}
			// The base changed: its CID no longer matches the child's parentCID.
			base := filepath.Join(dir, "vm.vmdk")
			d, _ := os.ReadFile(base)
			os.WriteFile(base, bytes.Replace(d, []byte("CID=00001000"), []byte("CID=0000beef"), 1), 0o644)
			_, err = diskimage.Open(top, diskimage.OpenOptions{ReadOnly: true})
			if !errors.Is(err, diskimage.ErrParent) || !strings.Contains(err.Error(), "vm.vmdk") || !strings.Contains(err.Error(), "vm-000001.vmdk") ||
				!strings.Contains(err.Error(), "0000beef") {
				t.Errorf("changed parent: %v", err)
			}
		})
	}
}

// TestESXQemuReadsChains has qemu-img, whose vmdk driver reads vmfsSparse
// and seSparse, flatten the same chains: it must read what govisor reads.
// Three cases cover every kind (qemu takes most of a second per chain).
func TestESXQemuReadsChains(t *testing.T) {
	q := qemuImg(t)
	for _, c := range esxChains()[2:5] {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			top, want := writeChain(t, dir, c)
			back := filepath.Join(dir, "back.raw")
			run(t, q, "convert", "-f", "vmdk", "-O", "raw", top, back)
			qgot, _ := os.ReadFile(back)
			if i := firstDiff(qgot, want); i >= 0 {
				t.Fatalf("qemu-img reads the chain differently first at byte %#x (%d bytes)", i, len(qgot))
			}
			got := make([]byte, c.size)
			if _, err := openRO(t, top).ReadAt(got, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, qgot) {
				t.Fatal("govisor and qemu-img read the chain differently")
			}
		})
	}
}

// fuzzExtent reads and maps an extent opened from fuzz input, through a
// parent that checks it is asked only for ranges inside the extent.
func fuzzExtent(t *testing.T, open func(diskimage.File, string) (*esxExtent, error), data []byte) {
	e, err := open(diskimage.NewMemFile(bytes.Clone(data), 64<<20), "fuzz.vmdk")
	if err != nil {
		return
	}
	defer e.close()
	e.setParent(func(p []byte, off int64) error {
		if off < 0 || off+int64(len(p)) > e.size() {
			t.Fatalf("parent read of %d bytes at %d outside a %d-byte extent", len(p), off, e.size())
		}
		return nil
	})
	buf := make([]byte, 256<<10+7)
	for off := int64(0); off < min(e.size(), 4<<20); off += int64(len(buf)) {
		n := min(int64(len(buf)), e.size()-off)
		e.readAt(buf[:n], off)
	}
	for off := int64(0); off < min(e.size(), 4<<20); {
		_, n, err := e.extentMap(off, min(e.size(), 4<<20)-off)
		if err != nil {
			break
		}
		if n <= 0 {
			t.Fatalf("map at %d returned %d bytes", off, n)
		}
		off += n
	}
}

// Fuzz seeds stay small (a COWD table alone is 16 KiB, a seSparse one
// 32 KiB): minimising an interesting input costs an execution per chunk
// tried.
func FuzzCOWD(f *testing.F) {
	for _, grain := range []int{1, 8} {
		b, err := esxtest.COWD(64<<10, grain, map[int64][]byte{4096: fill(8192, 1), 60 << 10: fill(4096, 2)})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) { fuzzExtent(t, openCOWD, data) })
}

func FuzzSESparse(f *testing.F) {
	b, err := esxtest.SESparse(64<<10, esxtest.Layer{Kind: "seSparse", SkipGrains: 1,
		Data: map[int64][]byte{4096: fill(8192, 1)}, Zero: [][2]int64{{32 << 10, 40 << 10}}, Unmapped: [][2]int64{{48 << 10, 52 << 10}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) { fuzzExtent(t, openSESparse, data) })
}

// TestESXParentElsewhere opens a chain whose child names its parent by a
// path of the host it came from (an ESXi datastore path, a Windows drive
// path): the parent is found by name next to the child. Without it, the
// error lists the places looked at.
func TestESXParentElsewhere(t *testing.T) {
	for _, hint := range []string{"/vmfs/volumes/5f1e2d3c-ab12/vm/vm.vmdk", `C:\VMs\vm\vm.vmdk`, "C:vm.vmdk", "vm.vmdk"} {
		dir := t.TempDir()
		c := esxChains()[1]
		top, want := writeChain(t, dir, c)
		d, _ := os.ReadFile(top)
		os.WriteFile(top, bytes.Replace(d, []byte(`parentFileNameHint="vm.vmdk"`), []byte(`parentFileNameHint="`+hint+`"`), 1), 0o644)
		img, err := diskimage.Open(top, diskimage.OpenOptions{ReadOnly: true})
		if err != nil {
			t.Fatalf("%s: %v", hint, err)
		}
		got := make([]byte, c.size)
		img.ReadAt(got, 0)
		img.Close()
		if !bytes.Equal(got, want) {
			t.Errorf("%s: the chain reads wrong", hint)
		}
		os.Rename(filepath.Join(dir, "vm.vmdk"), filepath.Join(dir, "elsewhere.vmdk"))
		_, err = diskimage.Open(top, diskimage.OpenOptions{ReadOnly: true})
		if !errors.Is(err, diskimage.ErrParent) || !strings.Contains(err.Error(), filepath.Join(dir, "vm.vmdk")) {
			t.Errorf("%s: missing parent: %v", hint, err)
		}
	}
}
