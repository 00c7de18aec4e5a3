package vhd

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/diskimage/convert"
	"github.com/govisor/govisor/internal/diskimage/imagetest"
	_ "github.com/govisor/govisor/internal/diskimage/raw"
)

// wrun is a write into a differencing disk: sector-aligned data at off.
type wrun struct {
	off  int64
	data []byte
}

// diffBlock is the block size of the test writer (the spec's default).
const diffBlock = defaultBlockSz

// writeDiff writes a differencing VHD at path whose parent is the VHD at
// parent, holding runs, laid out as the spec ("Differencing Hard Disk
// Image", "Dynamic Disk Header Format") describes and Hyper-V writes: footer
// copy, dynamic header, BAT, the parent locators' platform data, blocks
// (sector bitmap, then data), footer. qemu-img cannot create differencing
// VHDs ("Backing file not supported for file format 'vpc'"), so tests make
// them with this writer. locs maps platform codes to the paths stored.
func writeDiff(t testing.TB, path, parent string, locs map[uint32]string, runs []wrun) []byte {
	t.Helper()
	p, err := Open(parent, true)
	if err != nil {
		t.Fatal(err)
	}
	pf := p.Footer()
	p.Close()
	return buildDiff(t, pf, filepath.Base(parent), locs, runs, path)
}

// buildDiff builds the differencing disk over a parent named parentName
// with footer pf; with path set it is also written there.
func buildDiff(t testing.TB, pf Footer, parentName string, locs map[uint32]string, runs []wrun, path string) []byte {
	size := pf.VirtualSize()
	ft := pf
	ft.DiskType = TypeDifferencing
	ft.DataOffset = footerSize
	rand.Read(ft.UniqueID[:])
	entries := (size + diffBlock - 1) / diffBlock
	batBytes := (entries*4 + sectorSize - 1) / sectorSize * sectorSize
	h := &DynamicHeader{DataOffset: noDataOffset, TableOffset: footerSize + dynHeaderSize, HeaderVersion: dynHeaderVerion,
		MaxTableEntries: uint32(entries), BlockSize: diffBlock, ParentUniqueID: pf.UniqueID, ParentTimestamp: pf.Timestamp, ParentName: parentName}
	file := make([]byte, int64(h.TableOffset)+batBytes)
	for i := range entries {
		binary.BigEndian.PutUint32(file[int64(h.TableOffset)+4*i:], unusedBATEntry)
	}
	i := 0
	for _, code := range []uint32{PlatformW2ru, PlatformW2ku, PlatformMacX} {
		name, ok := locs[code]
		if !ok {
			continue
		}
		data := EncodeLocator(code, name)
		space := (len(data) + sectorSize - 1) / sectorSize * sectorSize
		// Hyper-V stores Platform Data Space in bytes, the spec says
		// sectors; readers use the length.
		h.Locators[i] = Locator{Code: code, DataSpace: uint32(space), DataLength: uint32(len(data)), DataOffset: uint64(len(file))}
		file = append(file, data...)
		file = append(file, make([]byte, space-len(data))...)
		i++
	}
	bm := bitmapSize(diffBlock)
	blockAt := map[int64]int64{}
	for _, r := range runs {
		for pos := r.off; pos < r.off+int64(len(r.data)); pos += sectorSize {
			blk := pos / diffBlock
			at, ok := blockAt[blk]
			if !ok {
				at = int64(len(file))
				blockAt[blk] = at
				file = append(file, make([]byte, bm+diffBlock)...)
				binary.BigEndian.PutUint32(file[int64(h.TableOffset)+4*blk:], uint32(at/sectorSize))
			}
			s := (pos % diffBlock) / sectorSize
			file[at+s/8] |= 0x80 >> (s % 8)
			copy(file[at+bm+pos%diffBlock:], r.data[pos-r.off:pos-r.off+sectorSize])
		}
	}
	fb := ft.Marshal()
	copy(file, fb)
	copy(file[footerSize:], h.Marshal())
	file = append(file, fb...)
	if path != "" {
		if err := os.WriteFile(path, file, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return file
}

// apply is what reading the chain must give: want with runs written over it.
func apply(want []byte, runs []wrun) []byte {
	out := bytes.Clone(want)
	for _, r := range runs {
		copy(out[r.off:], r.data)
	}
	return out
}

func pattern(n int, b byte) []byte { return bytes.Repeat([]byte{b, b + 1, b + 2}, n)[:n] }

// chain makes base.vhd (dynamic, with data) <- mid.vhd <- top.vhd in dir
// and returns what top reads as.
func chain(t *testing.T, dir string) []byte {
	base := filepath.Join(dir, "base.vhd")
	img, err := Create(base, 5<<20, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, img.VirtualSize())
	copy(want[100:], pattern(3<<20, 1))
	img.WriteAt(want, 0)
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	mid := []wrun{{0, pattern(1024, 50)}, {2<<20 - 512, pattern(2048, 60)}}
	writeDiff(t, filepath.Join(dir, "mid.vhd"), base, map[uint32]string{PlatformW2ru: `.\base.vhd`, PlatformW2ku: `C:\VMs\base.vhd`}, mid)
	top := []wrun{{512, pattern(512, 70)}, {4 << 20, pattern(4096, 80)}}
	writeDiff(t, filepath.Join(dir, "top.vhd"), filepath.Join(dir, "mid.vhd"), map[uint32]string{PlatformW2ku: `D:\Hyper-V\mid.vhd`}, top)
	return apply(apply(want, mid), top)
}

func TestDifferencingChainReadsAndFlattens(t *testing.T) {
	dir := t.TempDir()
	want := chain(t, dir)
	top := filepath.Join(dir, "top.vhd")
	img, err := diskimage.Open(top, diskimage.OpenOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, img.VirtualSize())
	if _, err := img.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("chain reads wrong (%v)", err)
	}
	// Unaligned reads across the runs.
	for _, off := range []int64{1, 700, 2<<20 - 3} {
		b := make([]byte, 5000)
		img.ReadAt(b, off)
		if !bytes.Equal(b, want[off:off+5000]) {
			t.Fatalf("read at %d differs", off)
		}
	}
	img.Close()
	if _, err := os.Stat("/usr/bin/qemu-img"); err == nil {
		// qemu's vpc driver has no differencing support: it reads the
		// child as a dynamic disk without its parent (seen with qemu-img
		// 10.0), which is why chains are flattened with govisor.
		q := filepath.Join(dir, "q.raw")
		if err := exec.Command("qemu-img", "convert", "-f", "vpc", "-O", "raw", top, q).Run(); err == nil {
			if b, _ := os.ReadFile(q); bytes.Equal(b, want) {
				t.Log("qemu-img now reads VHD differencing chains")
			}
		}
	}
	info, err := diskimage.InfoOf(top, "")
	if err != nil || info.Subformat != "differencing" || len(info.BackingChain) != 2 ||
		info.BackingChain[0] != filepath.Join(dir, "mid.vhd") || info.BackingChain[1] != filepath.Join(dir, "base.vhd") {
		t.Fatalf("info %+v %v", info, err)
	}
	// Flatten the chain into one dynamic VHD and check it, with qemu-img
	// where it is installed.
	flat := filepath.Join(dir, "flat.vhd")
	flatten(t, top, flat, "vhd")
	if got := readAll(t, flat); !bytes.Equal(got, want) {
		t.Fatal("flattened image differs")
	}
	if _, err := os.Stat("/usr/bin/qemu-img"); err == nil {
		raw := filepath.Join(dir, "want.raw")
		os.WriteFile(raw, want, 0o644)
		if out := imagetest.Run(t, "qemu-img", "compare", "-f", "raw", "-F", "vpc", raw, flat); !strings.Contains(out, "identical") {
			t.Fatalf("qemu-img compare: %s", out)
		}
	}
}

// flatten converts the chain at src into one image of format at dst.
func flatten(t *testing.T, src, dst, format string) {
	t.Helper()
	in, err := diskimage.Open(src, diskimage.OpenOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := diskimage.Create(dst, format, in.VirtualSize(), diskimage.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := convert.Convert(context.Background(), in, out, convert.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestDifferencingParentErrors(t *testing.T) {
	dir := t.TempDir()
	chain(t, dir)
	top := filepath.Join(dir, "top.vhd")
	// Missing parent: the error names the child, the parent and where it looked.
	os.Rename(filepath.Join(dir, "mid.vhd"), filepath.Join(dir, "mid.moved"))
	_, err := diskimage.Open(top, diskimage.OpenOptions{ReadOnly: true})
	if !errors.Is(err, diskimage.ErrParent) || !strings.Contains(err.Error(), top) || !strings.Contains(err.Error(), filepath.Join(dir, "mid.vhd")) || !strings.Contains(err.Error(), "put the parent") {
		t.Fatalf("missing parent: %v", err)
	}
	if testing.Verbose() {
		t.Log(err)
	}
	// A different VHD in the parent's place.
	img, _ := Create(filepath.Join(dir, "mid.vhd"), 5<<20, CreateOptions{})
	img.Close()
	_, err = diskimage.Open(top, diskimage.OpenOptions{ReadOnly: true})
	if !errors.Is(err, diskimage.ErrParent) || !strings.Contains(err.Error(), "unique ID") {
		t.Fatalf("wrong parent: %v", err)
	}
	// Info opens the chain, so it reports the wrong parent too; NoBacking
	// opens the child alone.
	if info, err := diskimage.InfoOf(top, ""); err == nil {
		t.Fatalf("info with a wrong parent: %+v", info)
	}
	img2, err := OpenWith(top, diskimage.OpenOptions{ReadOnly: true, NoBacking: true})
	if err != nil {
		t.Fatal(err)
	}
	img2.Close()
	// Writing to a differencing disk is refused with the fix.
	if _, err := Open(top, false); !errors.Is(err, diskimage.ErrUnsupported) || !strings.Contains(err.Error(), "convert") {
		t.Fatalf("read-write open: %v", err)
	}
}

func TestDifferencingLoop(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "a.vhd")
	img, _ := Create(base, 2<<20, CreateOptions{})
	img.Close()
	// a.vhd becomes a differencing disk naming itself as its parent.
	b := writeDiff(t, "", base, map[uint32]string{PlatformW2ru: "a.vhd"}, nil)
	os.WriteFile(base, b, 0o644)
	if _, err := diskimage.Open(base, diskimage.OpenOptions{ReadOnly: true}); !errors.Is(err, diskimage.ErrBackingChain) {
		t.Fatalf("self-parent: %v", err)
	}
}

// FuzzDifferencing opens mutated differencing disks in memory without a
// parent, reads and maps them, and resolves their parent locators.
func FuzzDifferencing(f *testing.F) {
	pf := Footer{Features: featureReserved, Version: formatVersion, DataOffset: noDataOffset, OriginalSize: 4 << 20, CurrentSize: 4 << 20, Geometry: CHS(4 << 20), DiskType: TypeDynamic}
	seed := buildDiff(f, pf, "p.vhd", map[uint32]string{PlatformW2ru: `.\p.vhd`, PlatformW2ku: `C:\p.vhd`, PlatformMacX: "/srv/p.vhd"}, []wrun{{512, pattern(1024, 9)}}, "")
	// The data of the one block is left out: the parser reads what is there.
	f.Add(seed[:min(len(seed), 3584+1024)])
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := open(diskimage.NewMemFile(bytes.Clone(data), 64<<20), true)
		if err != nil {
			return
		}
		defer img.Close()
		if img.dyn != nil {
			img.parentCandidates("/nonexistent/child.vhd")
		}
		buf := make([]byte, 64<<10)
		for off := int64(0); off < min(img.VirtualSize(), 4<<20); off += int64(len(buf)) {
			img.ReadAt(buf, off)
		}
		img.Map(0, img.VirtualSize())
		img.Info()
	})
}
