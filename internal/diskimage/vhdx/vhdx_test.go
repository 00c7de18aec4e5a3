package vhdx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/govisor/govisor/internal/allzero"
	"github.com/govisor/govisor/internal/diskimage"
)

// crc32cPlain is the CRC-32C of b, computed without crc32c's field handling.
func crc32cPlain(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

func TestCRC32C(t *testing.T) {
	// CRC-32C check values (RFC 3720 appendix B.4).
	for _, tc := range []struct {
		in   []byte
		want uint32
	}{
		{[]byte("123456789"), 0xe3069283},
		{make([]byte, 32), 0x8a9136aa},
		{bytes.Repeat([]byte{0xff}, 32), 0x62a8ab43},
	} {
		if got := crc32cPlain(tc.in); got != tc.want {
			t.Errorf("crc32c(%x) = %#x, want %#x", tc.in, got, tc.want)
		}
		// With a checksum field, the field counts as zeros.
		b := append(bytes.Clone(tc.in), 0xde, 0xad, 0xbe, 0xef)
		if got := crc32c(b, len(tc.in)); got != crc32cPlain(append(bytes.Clone(tc.in), 0, 0, 0, 0)) {
			t.Errorf("crc32c with field: %#x", got)
		}
	}
}

func TestGUIDByteOrder(t *testing.T) {
	want := []byte{0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42, 0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08}
	if !bytes.Equal(guidBAT[:], want) {
		t.Fatalf("BAT GUID bytes %x, want %x", guidBAT[:], want)
	}
}

func TestHeaders(t *testing.T) {
	h := &Header{SequenceNumber: 7, Version: 1, LogLength: mib, LogOffset: mib}
	h.LogGUID[0] = 1
	b := h.Marshal()
	got, err := ParseHeader(b)
	if err != nil || *got != *h {
		t.Fatalf("round trip %+v %v", got, err)
	}
	old := *h
	old.SequenceNumber = 3
	bad := bytes.Clone(b)
	bad[100] ^= 1
	for _, tc := range []struct {
		name     string
		h1, h2   []byte
		wantSeq  uint64
		wantSlot int
		fail     bool
	}{
		{"newer second", old.Marshal(), b, 7, 1, false},
		{"newer first", b, old.Marshal(), 7, 0, false},
		{"first corrupt", bad, old.Marshal(), 3, 1, false},
		{"both corrupt", bad, bad, 0, 0, true},
	} {
		h, slot, err := pickHeader(tc.h1, tc.h2)
		if tc.fail {
			if !errors.Is(err, ErrNoHeader) {
				t.Errorf("%s: err %v", tc.name, err)
			}
			continue
		}
		if err != nil || h.SequenceNumber != tc.wantSeq || slot != tc.wantSlot {
			t.Errorf("%s: seq %v slot %d err %v", tc.name, h, slot, err)
		}
	}
}

func TestRegionTable(t *testing.T) {
	rt := marshalRegionTable([]RegionEntry{{GUID: guidBAT, FileOffset: 3 * mib, Length: mib, Required: true}})
	if e, err := ParseRegionTable(rt, 8*mib); err != nil || len(e) != 1 || e[0].FileOffset != 3*mib || !e[0].Required {
		t.Fatalf("%+v %v", e, err)
	}
	if _, err := ParseRegionTable(rt, 3*mib); !errors.Is(err, ErrBadRegion) {
		t.Fatalf("region past the end: %v", err)
	}
	rt[40] ^= 1
	if _, err := ParseRegionTable(rt, 8*mib); !errors.Is(err, ErrBadRegion) {
		t.Fatalf("bad checksum: %v", err)
	}
}

func TestMetadata(t *testing.T) {
	m := &Metadata{BlockSize: 32 * mib, VirtualSize: 10 * mib, LogicalSectorSize: 512, PhysicalSectorSize: 4096, LeaveBlocksAllocated: true}
	got, err := ParseMetadata(m.Marshal(mib))
	if err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("%+v %v", got, err)
	}
	if m.chunkRatio() != 128 || m.dataBlocks() != 1 || m.batEntries() != 1 {
		t.Fatalf("ratio %d blocks %d entries %d", m.chunkRatio(), m.dataBlocks(), m.batEntries())
	}
	big := &Metadata{BlockSize: mib, VirtualSize: 600 * mib, LogicalSectorSize: 512}
	if big.chunkRatio() != 4096 || big.batEntries() != 600 {
		t.Fatalf("entries %d", big.batEntries())
	}
	big.VirtualSize = 4097 * mib
	if big.batEntries() != 4098 {
		t.Fatalf("entries %d", big.batEntries())
	}
	for name, mut := range map[string]func(*Metadata){
		"block size":   func(m *Metadata) { m.BlockSize = 3 * mib },
		"tiny block":   func(m *Metadata) { m.BlockSize = 4096 },
		"sector size":  func(m *Metadata) { m.LogicalSectorSize = 1024 },
		"virtual size": func(m *Metadata) { m.VirtualSize = 1 << 60 },
		"unaligned":    func(m *Metadata) { m.VirtualSize = 1000 },
	} {
		c := *m
		mut(&c)
		if _, err := ParseMetadata(c.Marshal(mib)); !errors.Is(err, ErrBadMetadata) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func randomSparse(r *rand.Rand, buf []byte) {
	for range 12 {
		off := r.IntN(len(buf))
		n := min(len(buf)-off, 1+r.IntN(300<<10))
		for i := off; i < off+n; i++ {
			buf[i] = byte(r.Uint32())
		}
	}
}

func readAll(t *testing.T, path string, readOnly bool) ([]byte, *Image) {
	t.Helper()
	img, err := Open(path, readOnly)
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
	for _, tc := range []struct {
		name string
		opts CreateOptions
		sub  string
	}{
		{"dynamic", CreateOptions{BlockSize: mib}, "dynamic"},
		{"dynamic-32M", CreateOptions{}, "dynamic"},
		{"fixed", CreateOptions{Fixed: true, BlockSize: 2 * mib}, "fixed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 9))
			path := filepath.Join(t.TempDir(), "d.vhdx")
			const size = 9<<20 + 512
			img, err := Create(path, size, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]byte, size)
			randomSparse(r, want)
			const chunk = 300 << 10
			n := (size + chunk - 1) / chunk
			for _, i := range r.Perm(n) {
				end := min(size, (i+1)*chunk)
				if _, err := img.WriteAt(want[i*chunk:end], int64(i*chunk)); err != nil {
					t.Fatal(err)
				}
			}
			if err := img.Close(); err != nil {
				t.Fatal(err)
			}
			got, rimg := readAll(t, path, true)
			if !bytes.Equal(got, want) {
				t.Fatal("read back differs")
			}
			if rimg.Subformat() != tc.sub {
				t.Fatalf("subformat %s", rimg.Subformat())
			}
			ext, _ := rimg.Map(0, size)
			var total int64
			for _, e := range ext {
				if e.Zero && !allzero.Is(want[e.Offset:e.Offset+e.Length]) {
					t.Fatalf("zero extent %+v holds data", e)
				}
				total += e.Length
			}
			if total != size {
				t.Fatalf("map covers %d", total)
			}
			if info, err := diskimage.InfoOf(path, ""); err != nil || info.VirtualSize != size || info.Subformat != tc.sub {
				t.Fatalf("info %+v %v", info, err)
			}
		})
	}
}

// TestRefuseDifferencingWithoutLocator: HasParent without the parent
// locator item [MS-VHDX] 2.6.2.6 requires is refused (differencing disks
// with one are read: diff_test.go).
func TestRefuseDifferencingWithoutLocator(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.vhdx")
	img, err := Create(path, mib, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	img.Close()
	m := img.Metadata()
	b := m.Marshal(newMetaLen)
	// Set HasParent in File Parameters (first item, at 64 KiB).
	binary.LittleEndian.PutUint32(b[metaTableSize+4:], hasParent)
	f, _ := os.OpenFile(path, os.O_RDWR, 0)
	f.WriteAt(b, newMetaOff)
	f.Close()
	if _, err := Open(path, true); !errors.Is(err, ErrBadMetadata) {
		t.Fatalf("differencing disk without a locator: %v", err)
	}
}

// fuzzParts are the places FuzzOpen's input is spliced into a valid base
// image: the current header, the region table, the metadata table and its
// items, the start of the BAT and the log. Keeping the input small lets
// the fuzzer mutate what the parsers read instead of megabytes of padding.
var fuzzParts = []struct{ off, n int64 }{
	{header2Off, 80}, {region1Off, 80}, {newMetaOff, 192}, {newMetaOff + metaTableSize, 40}, {newBATOff, 64}, {newLogOff, 16 << 10},
}

// spliceFuzz builds the file FuzzOpen opens: base with data spliced in and,
// unless data[0] is odd, the header and region table CRCs recomputed so
// mutations reach the code behind them. The file is a copy-on-write view
// of base: copying the 5 MiB base per input cost 10 ms an execution.
func spliceFuzz(base, data []byte) *diskimage.CowFile {
	out := diskimage.NewCowFile(base, 64<<20)
	if len(data) == 0 {
		return out
	}
	fix := data[0]&1 == 0
	data = data[1:]
	for _, p := range fuzzParts {
		n := min(int64(len(data)), p.n)
		out.WriteAt(data[:n], p.off)
		data = data[n:]
	}
	if fix {
		le := binary.LittleEndian
		for _, s := range []struct{ off, n int64 }{{header2Off, headerSize}, {region1Off, regionSize}} {
			b := make([]byte, s.n)
			out.ReadAt(b, s.off)
			le.PutUint32(b[4:], crc32c(b, 4))
			out.WriteAt(b[4:8], s.off+4)
		}
	}
	return out
}

// fuzzSeed extracts the spliced parts of an image file.
func fuzzSeed(file []byte) []byte {
	seed := []byte{0}
	for _, p := range fuzzParts {
		seed = append(seed, file[p.off:p.off+p.n]...)
	}
	return seed
}

func FuzzOpen(f *testing.F) {
	dir := f.TempDir()
	p := filepath.Join(dir, "base.vhdx")
	img, err := Create(p, 2*mib, CreateOptions{BlockSize: mib})
	if err != nil {
		f.Fatal(err)
	}
	img.WriteAt(bytes.Repeat([]byte{7}, 4096), mib)
	img.Close()
	base, _ := os.ReadFile(p)
	f.Add(fuzzSeed(base))
	f.Add(append([]byte{1}, fuzzSeed(base)[1:]...))
	// Seed with a pending log over a fixed image of the same layout.
	t := &testing.T{}
	if dp, _ := dirtyImage(t, dir); !t.Failed() {
		d, _ := os.ReadFile(dp)
		// The dirty image keeps its log GUID in header 1: move it to the
		// spliced header slot.
		copy(d[header2Off:header2Off+headerSize], d[header1Off:header1Off+headerSize])
		f.Add(fuzzSeed(d))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// In memory: a file per input made this target crawl (fsync).
		img, err := openFile(spliceFuzz(base, data), false)
		if err != nil {
			return
		}
		defer img.Close()
		buf := make([]byte, 256<<10)
		for off := int64(0); off < min(img.VirtualSize(), 4*mib); off += int64(len(buf)) {
			img.ReadAt(buf, off)
		}
		img.Map(0, img.VirtualSize())
		img.WriteAt([]byte{1}, img.VirtualSize()-1)
	})
}

func TestRegistry(t *testing.T) {
	dir := t.TempDir()
	for _, sub := range []string{"fixed", "dynamic"} {
		p := filepath.Join(dir, sub+".vhdx")
		img, err := diskimage.Create(p, "vhdx", 3<<20, diskimage.CreateOptions{Options: map[string]string{"subformat": sub, "block_size": "1M"}})
		if err != nil {
			t.Fatal(err)
		}
		img.Close()
		if f, err := diskimage.Probe(p); err != nil || f != "vhdx" {
			t.Fatalf("%s probed as %q, %v", sub, f, err)
		}
		info, err := diskimage.InfoOf(p, "")
		if err != nil || info.Subformat != sub || info.VirtualSize != 3<<20 || info.ClusterSize != mib {
			t.Fatalf("info %+v %v", info, err)
		}
	}
	if _, err := diskimage.Create(filepath.Join(dir, "x.vhdx"), "vhdx", mib, diskimage.CreateOptions{Options: map[string]string{"block_size": "3M"}}); err == nil {
		t.Fatal("block_size=3M accepted")
	}
}
