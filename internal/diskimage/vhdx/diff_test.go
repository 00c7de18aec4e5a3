package vhdx

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/diskimage/convert"
	_ "github.com/govisor/govisor/internal/diskimage/raw"
)

// wrun is a write into a differencing disk: sector-aligned data at off.
// full marks the blocks it touches FULLY_PRESENT (data must cover them).
type wrun struct {
	off  int64
	data []byte
	full bool
}

// writeAVHDX writes a differencing VHDX (a Hyper-V checkpoint, .avhdx) at
// path over the VHDX at parent, holding runs; zero lists blocks marked
// PAYLOAD_BLOCK_ZERO. qemu-img cannot create them ("Backing file not
// supported for file format 'vhdx'"), so tests make them with this writer
// following [MS-VHDX]: a dynamic file from Create, then HasParent in File
// Parameters (2.6.2.1), the parent locator item with parent_linkage set to
// the parent's DataWriteGuid and the given paths (2.6.2.6), and blocks
// marked PARTIALLY_PRESENT (or FULLY_PRESENT) with their chunk's sector
// bitmap block (2.5.1.1, 2.5.1.2) appended 1 MiB aligned.
func writeAVHDX(t testing.TB, path, parent string, paths []KeyValue, runs []wrun, zero []int64) {
	t.Helper()
	p, err := Open(parent, true)
	if err != nil {
		t.Fatal(err)
	}
	pm, link := p.Metadata(), p.hdr.DataWriteGUID
	p.Close()
	c, err := Create(path, int64(pm.VirtualSize), CreateOptions{BlockSize: pm.BlockSize})
	if err != nil {
		t.Fatal(err)
	}
	m := c.Metadata()
	c.Close()
	m.HasParent = true
	m.ParentLocator = append([]KeyValue{{"parent_linkage", formatGUID(link)}}, paths...)
	file, _ := os.ReadFile(path)
	copy(file[newMetaOff:], m.Marshal(newMetaLen))
	block, ratio, ss := int64(m.BlockSize), m.chunkRatio(), int64(m.LogicalSectorSize)
	le := binary.LittleEndian
	entry := func(i int64) []byte { return file[newBATOff+8*i:] }
	appendBlock := func(n int64) int64 {
		at := (int64(len(file)) + mib - 1) / mib * mib
		file = append(file, make([]byte, at+n-int64(len(file)))...)
		return at
	}
	for _, r := range runs {
		for pos := r.off; pos < r.off+int64(len(r.data)); pos += ss {
			blk := pos / block
			// appendBlock may move file: entries are looked up afresh.
			pi, si := blk+blk/ratio, (blk/ratio)*(ratio+1)+ratio
			if le.Uint64(entry(pi))&stateMask == stateNotPresent {
				state := uint64(statePartiallyPresent)
				if r.full {
					state = stateFullyPresent
				}
				at := appendBlock(block)
				le.PutUint64(entry(pi), uint64(at/mib)<<20|state)
			}
			if le.Uint64(entry(si))&stateMask != sbPresent {
				at := appendBlock(mib)
				le.PutUint64(entry(si), uint64(at/mib)<<20|sbPresent)
			}
			bit := (blk%ratio)*(block/ss) + (pos%block)/ss
			file[int64(le.Uint64(entry(si))>>20)*mib+bit/8] |= 1 << (bit % 8)
			at := int64(le.Uint64(entry(blk+blk/ratio))>>20) * mib
			copy(file[at+pos%block:], r.data[pos-r.off:pos-r.off+ss])
		}
	}
	for _, blk := range zero {
		le.PutUint64(entry(blk+blk/ratio), stateZero)
	}
	if err := os.WriteFile(path, file, 0o644); err != nil {
		t.Fatal(err)
	}
}

func fill(n int, b byte) []byte { return bytes.Repeat([]byte{b, b ^ 0x55, b + 1}, n)[:n] }

func apply(want []byte, runs []wrun, zero []int64, block int64) []byte {
	out := bytes.Clone(want)
	for _, r := range runs {
		copy(out[r.off:], r.data)
	}
	for _, blk := range zero {
		clear(out[blk*block : min(int64(len(out)), (blk+1)*block)])
	}
	return out
}

// checkpoints makes base.vhdx <- snap1.avhdx <- snap2.avhdx, as two
// Hyper-V checkpoints, and returns what snap2 reads as.
func checkpoints(t *testing.T, dir string) []byte {
	base := filepath.Join(dir, "base.vhdx")
	img, err := Create(base, 6*mib, CreateOptions{BlockSize: mib})
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, img.VirtualSize())
	copy(want[300:], fill(3*mib, 1))
	img.WriteAt(want, 0)
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	r1 := []wrun{{off: 0, data: fill(1024, 40)}, {off: mib - 512, data: fill(4096, 50)}, {off: 4 * mib, data: fill(mib, 60), full: true}}
	writeAVHDX(t, filepath.Join(dir, "snap1.avhdx"), base, []KeyValue{{"relative_path", `.\base.vhdx`}, {"absolute_win32_path", `C:\Hyper-V\base.vhdx`}}, r1, []int64{2})
	want = apply(want, r1, []int64{2}, mib)
	r2 := []wrun{{off: 512, data: fill(512, 70)}, {off: 5*mib + 4096, data: fill(8192, 80)}}
	writeAVHDX(t, filepath.Join(dir, "snap2.avhdx"), filepath.Join(dir, "snap1.avhdx"), []KeyValue{{"absolute_win32_path", `D:\VMs\Snapshots\snap1.avhdx`}, {"volume_path", `\\?\Volume{26A21BDA-A627-11D7-9931-806E6F6E6963}\VMs\snap1.avhdx`}}, r2, nil)
	return apply(want, r2, nil, mib)
}

func TestCheckpointChainReadsAndFlattens(t *testing.T) {
	dir := t.TempDir()
	want := checkpoints(t, dir)
	top := filepath.Join(dir, "snap2.avhdx")
	img, err := diskimage.Open(top, diskimage.OpenOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, img.VirtualSize())
	if _, err := img.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("chain reads wrong (%v)", err)
	}
	for _, off := range []int64{1, 511, mib - 700, 2*mib - 3, 5*mib + 4000} {
		b := make([]byte, 9000)
		img.ReadAt(b, off)
		if !bytes.Equal(b, want[off:off+9000]) {
			t.Fatalf("read at %d differs", off)
		}
	}
	img.Close()
	info, err := diskimage.InfoOf(top, "")
	if err != nil || info.Subformat != "differencing" || len(info.BackingChain) != 2 || info.BackingChain[1] != filepath.Join(dir, "base.vhdx") {
		t.Fatalf("info %+v %v", info, err)
	}
	raw := filepath.Join(dir, "want.raw")
	os.WriteFile(raw, want, 0o644)
	for _, format := range []string{"vhdx", "raw"} {
		flat := filepath.Join(dir, "flat."+format)
		flatten(t, top, flat, format)
		b, _ := readAllImage(t, flat)
		if !bytes.Equal(b, want) {
			t.Fatalf("flattened %s differs", format)
		}
		if format == "vhdx" && hasQemuImg() {
			if out := run(t, "qemu-img", "compare", "-f", "raw", "-F", "vhdx", raw, flat); !strings.Contains(out, "identical") {
				t.Fatalf("qemu-img compare: %s", out)
			}
		}
	}
	if hasQemuImg() {
		// qemu refuses VHDX differencing disks (the reason to flatten with govisor).
		if out, err := exec.Command("qemu-img", "info", "-f", "vhdx", top).CombinedOutput(); err == nil {
			t.Logf("qemu-img now opens .avhdx files: %s", out)
		}
	}
}

func hasQemuImg() bool { _, err := exec.LookPath("qemu-img"); return err == nil }

func readAllImage(t *testing.T, path string) ([]byte, error) {
	img, err := diskimage.Open(path, diskimage.OpenOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	b := make([]byte, img.VirtualSize())
	_, err = img.ReadAt(b, 0)
	return b, err
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

func TestCheckpointParentErrors(t *testing.T) {
	dir := t.TempDir()
	checkpoints(t, dir)
	top := filepath.Join(dir, "snap2.avhdx")
	os.Rename(filepath.Join(dir, "snap1.avhdx"), filepath.Join(dir, "moved"))
	_, err := diskimage.Open(top, diskimage.OpenOptions{ReadOnly: true})
	if !errors.Is(err, diskimage.ErrParent) || !strings.Contains(err.Error(), top) || !strings.Contains(err.Error(), filepath.Join(dir, "snap1.avhdx")) || !strings.Contains(err.Error(), "put the parent") {
		t.Fatalf("missing parent: %v", err)
	}
	if testing.Verbose() {
		t.Log(err)
	}
	os.Rename(filepath.Join(dir, "moved"), filepath.Join(dir, "snap1.avhdx"))
	// Writing to the parent gives it a new DataWriteGuid ([MS-VHDX]
	// 2.2.2): the checkpoint no longer matches it.
	p, err := Open(filepath.Join(dir, "snap1.avhdx"), true)
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	b, err := Open(filepath.Join(dir, "base.vhdx"), false)
	if err != nil {
		t.Fatal(err)
	}
	b.WriteAt([]byte{1}, 0)
	b.Close()
	_, err = diskimage.Open(top, diskimage.OpenOptions{ReadOnly: true})
	if !errors.Is(err, diskimage.ErrParent) || !strings.Contains(err.Error(), "DataWriteGuid") || !strings.Contains(err.Error(), "snap1.avhdx") {
		t.Fatalf("modified parent: %v", err)
	}
	if _, err := Open(top, false); !errors.Is(err, diskimage.ErrUnsupported) || !strings.Contains(err.Error(), "convert") {
		t.Fatalf("read-write open: %v", err)
	}
	if img, err := OpenWith(top, diskimage.OpenOptions{ReadOnly: true, NoBacking: true}); err != nil {
		t.Fatalf("NoBacking: %v", err)
	} else {
		img.Close()
	}
}

func TestParentLocatorRoundTrip(t *testing.T) {
	kvs := []KeyValue{{"parent_linkage", "{00000000-1111-2222-3333-444455556666}"}, {"relative_path", `..\ä.vhdx`}}
	got, err := parseLocator(marshalLocator(kvs))
	if err != nil || len(got) != 2 || got[0] != kvs[0] || got[1] != kvs[1] {
		t.Fatalf("%+v %v", got, err)
	}
	g, ok := guidString(kvs[0].Value)
	if !ok || formatGUID(g) != kvs[0].Value {
		t.Fatalf("guid %x %v", g, ok)
	}
	for _, bad := range []string{"", "{}", "{0000000g-1111-2222-3333-444455556666}", "00000000111122223333444455556666"} {
		if _, ok := guidString(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

// FuzzDifferencing opens mutated checkpoints in memory, without their
// parent: the parent locator, the BAT with its sector bitmap entries and
// the bitmap itself are spliced from the input.
func FuzzDifferencing(f *testing.F) {
	dir := f.TempDir()
	base := filepath.Join(dir, "b.vhdx")
	img, err := Create(base, 2*mib, CreateOptions{BlockSize: mib})
	if err != nil {
		f.Fatal(err)
	}
	img.Close()
	child := filepath.Join(dir, "c.avhdx")
	writeAVHDX(f, child, base, []KeyValue{{"relative_path", "b.vhdx"}}, []wrun{{off: 512, data: fill(1024, 3)}}, []int64{1})
	file, _ := os.ReadFile(child)
	m := img.Metadata()
	sbIdx := m.chunkRatio()
	parts := []struct{ off, n int64 }{{newMetaOff + metaTableSize, 400}, {newBATOff, 16}, {newBATOff + 8*sbIdx, 8}, {int64(binary.LittleEndian.Uint64(file[newBATOff+8*sbIdx:])>>20) * mib, 8}}
	var seed []byte
	for _, p := range parts {
		seed = append(seed, file[p.off:p.off+p.n]...)
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		cf := diskimage.NewCowFile(file, 64<<20)
		for _, p := range parts {
			n := min(int64(len(data)), p.n)
			cf.WriteAt(data[:n], p.off)
			data = data[n:]
		}
		img, err := openFile(cf, true)
		if err != nil {
			return
		}
		defer img.Close()
		img.parentCandidates("/nonexistent/c.avhdx")
		buf := make([]byte, 256<<10)
		for off := int64(0); off < img.VirtualSize(); off += int64(len(buf)) {
			img.ReadAt(buf, off)
		}
		img.Map(0, img.VirtualSize())
		img.Info()
	})
}
