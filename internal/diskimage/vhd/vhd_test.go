package vhd

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

func TestCHS(t *testing.T) {
	for _, tc := range []struct {
		size int64
		want Geometry
	}{
		{10 << 20, Geometry{301, 4, 17}},
		{1 << 30, Geometry{2080, 16, 63}},
		{127 << 30, Geometry{65278, 16, 255}},
		{MaxSize, Geometry{65535, 16, 255}},
		{4 << 40, Geometry{65535, 16, 255}},
		{0, Geometry{0, 4, 17}},
	} {
		if got := CHS(tc.size); got != tc.want {
			t.Errorf("CHS(%d) = %+v, want %+v", tc.size, got, tc.want)
		}
	}
}

func TestFooterChecksum(t *testing.T) {
	f := &Footer{Features: 2, Version: formatVersion, DataOffset: noDataOffset, CurrentSize: 1 << 20, OriginalSize: 1 << 20,
		Geometry: CHS(1 << 20), DiskType: TypeFixed, CreatorApp: [4]byte{'t', 'e', 's', 't'}}
	b := f.Marshal()
	var sum uint32
	for i, c := range b {
		if i < 64 || i >= 68 {
			sum += uint32(c)
		}
	}
	if f.Checksum != ^sum {
		t.Fatalf("checksum %#x, want %#x", f.Checksum, ^sum)
	}
	got, err := ParseFooter(b)
	if err != nil {
		t.Fatal(err)
	}
	if *got != *f {
		t.Fatalf("round trip: %+v != %+v", got, f)
	}
	for _, tc := range []struct {
		name   string
		mutate func([]byte)
		want   error
	}{
		{"checksum", func(b []byte) { b[100] ^= 1 }, ErrBadChecksum},
		{"cookie", func(b []byte) { b[0] = 'x' }, ErrBadFooter},
		{"short", nil, ErrBadFooter},
	} {
		c := bytes.Clone(b)
		if tc.mutate != nil {
			tc.mutate(c)
		} else {
			c = c[:100]
		}
		if _, err := ParseFooter(c); !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestVirtualSizeSemantics(t *testing.T) {
	g := CHS(10 << 20)
	for _, tc := range []struct {
		app  string
		geo  Geometry
		want int64
	}{
		{"qemu", g, g.Size()},
		{"vpc ", g, g.Size()},
		{"win ", g, 10 << 20},
		{"gvsr", g, g.Size()},
		{"qem2", g, 10 << 20},
		{"qemu", Geometry{65535, 16, 255}, 10 << 20},
	} {
		f := Footer{CurrentSize: 10 << 20, Geometry: tc.geo}
		copy(f.CreatorApp[:], tc.app)
		if got := f.VirtualSize(); got != tc.want {
			t.Errorf("%q: size %d, want %d", tc.app, got, tc.want)
		}
	}
}

// randomSparse fills a few random runs of buf, leaving the rest zero.
func randomSparse(r *rand.Rand, buf []byte) {
	for range 12 {
		off := r.IntN(len(buf))
		n := min(len(buf)-off, 1+r.IntN(300<<10))
		for i := off; i < off+n; i++ {
			buf[i] = byte(r.Uint32())
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int64
		opts CreateOptions
		sub  string
		want int64
	}{
		{"dynamic", 9<<20 + 512, CreateOptions{}, "dynamic", 9<<20 + 512},
		{"fixed", 5 << 20, CreateOptions{Fixed: true}, "fixed", 5 << 20},
		{"azure", 3<<20 + 7, CreateOptions{AzureAlign: true}, "fixed", 4 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "d.vhd")
			img, err := Create(path, tc.size, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if img.VirtualSize() != tc.want || img.Subformat() != tc.sub {
				t.Fatalf("size %d sub %s, want %d %s", img.VirtualSize(), img.Subformat(), tc.want, tc.sub)
			}
			want := make([]byte, tc.want)
			randomSparse(rand.New(rand.NewPCG(1, 2)), want)
			// Write in odd-sized chunks, skipping zero ones, out of order.
			const chunk = 777 * 512
			for i := (len(want) - 1) / chunk; i >= 0; i-- {
				end := min(len(want), (i+1)*chunk)
				if _, err := img.WriteAt(want[i*chunk:end], int64(i*chunk)); err != nil {
					t.Fatal(err)
				}
			}
			if err := img.Close(); err != nil {
				t.Fatal(err)
			}
			img, err = Open(path, true)
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			got := make([]byte, tc.want)
			if _, err := img.ReadAt(got, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("read back differs from what was written")
			}
			ext, err := img.Map(0, img.VirtualSize())
			if err != nil {
				t.Fatal(err)
			}
			var total int64
			for _, e := range ext {
				if e.Zero && !allzero.Is(want[e.Offset:e.Offset+e.Length]) {
					t.Fatalf("extent %+v reported zero but holds data", e)
				}
				total += e.Length
			}
			if total != tc.want {
				t.Fatalf("map covers %d bytes, want %d", total, tc.want)
			}
			info, err := diskimage.InfoOf(path, "")
			if err != nil || info.VirtualSize != tc.want || info.Format != "vhd" {
				t.Fatalf("info %+v, %v", info, err)
			}
		})
	}
}

func TestReadOnlyAndBounds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.vhd")
	img, err := Create(path, 1<<20, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := img.WriteAt([]byte{1}, 1<<20); err == nil {
		t.Fatal("write past the end succeeded")
	}
	img.Close()
	img, err = Open(path, true)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if _, err := img.WriteAt([]byte{1}, 0); !errors.Is(err, diskimage.ErrReadOnly) {
		t.Fatalf("write to read-only image: %v", err)
	}
}

// smallDynamic builds a dynamic VHD with 4 KiB blocks, block 1 present:
// a seed small enough for the fuzzer to mutate efficiently.
func smallDynamic() []byte {
	const bs, size = 4096, 4 * 4096
	ft := &Footer{Features: featureReserved, Version: formatVersion, DataOffset: footerSize, CurrentSize: size,
		OriginalSize: size, Geometry: CHS(size), DiskType: TypeDynamic, CreatorApp: [4]byte{'w', 'i', 'n', ' '}}
	h := &DynamicHeader{DataOffset: noDataOffset, TableOffset: 1536, HeaderVersion: dynHeaderVerion, MaxTableEntries: 4, BlockSize: bs}
	bat := bytes.Repeat([]byte{0xff}, 512)
	binary.BigEndian.PutUint32(bat[4:], 2048/512)
	block := append(bytes.Repeat([]byte{0xff}, 512), bytes.Repeat([]byte{0x5a}, bs)...)
	out := append(ft.Marshal(), h.Marshal()...)
	out = append(out, bat...)
	out = append(out, block...)
	return append(out, ft.Marshal()...)
}

func TestSmallDynamicSeed(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.vhd")
	os.WriteFile(p, smallDynamic(), 0o644)
	img, err := Open(p, true)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	b := make([]byte, img.VirtualSize())
	img.ReadAt(b, 0)
	want := append(make([]byte, 4096), bytes.Repeat([]byte{0x5a}, 4096)...)
	want = append(want, make([]byte, 8192)...)
	if !bytes.Equal(b, want) {
		t.Fatal("hand-built dynamic disk reads wrong")
	}
}

func FuzzOpen(f *testing.F) {
	f.Add(smallDynamic())
	p := filepath.Join(f.TempDir(), "seed.vhd")
	img, err := Create(p, 4096, CreateOptions{Fixed: true})
	if err != nil {
		f.Fatal(err)
	}
	img.WriteAt(bytes.Repeat([]byte{3}, 100), 1000)
	img.Close()
	b, _ := os.ReadFile(p)
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		// In memory: a file per input made this target crawl (fsync).
		img, err := open(diskimage.NewMemFile(bytes.Clone(data), 64<<20), false)
		if err != nil {
			return
		}
		defer img.Close()
		buf := make([]byte, 64<<10)
		for off := int64(0); off < min(img.VirtualSize(), 8<<20); off += int64(len(buf)) {
			img.ReadAt(buf, off)
		}
		if img.VirtualSize() > 0 {
			img.WriteAt([]byte{1, 2, 3}, img.VirtualSize()/2)
		}
		img.Map(0, img.VirtualSize())
	})
}

func TestRegistry(t *testing.T) {
	dir := t.TempDir()
	for _, sub := range []string{"fixed", "dynamic"} {
		p := filepath.Join(dir, sub+".vhd")
		img, err := diskimage.Create(p, "vhd", 3<<20, diskimage.CreateOptions{Options: map[string]string{"subformat": sub}})
		if err != nil {
			t.Fatal(err)
		}
		img.Close()
		if f, err := diskimage.Probe(p); err != nil || f != "vhd" {
			t.Fatalf("%s probed as %q, %v", sub, f, err)
		}
		info, err := diskimage.InfoOf(p, "")
		if err != nil || info.Subformat != sub || info.VirtualSize != 3<<20 {
			t.Fatalf("info %+v %v", info, err)
		}
	}
	if _, err := diskimage.Create(filepath.Join(dir, "x.vhd"), "vhd", 1<<20, diskimage.CreateOptions{Options: map[string]string{"cluster_size": "1"}}); !errors.Is(err, diskimage.ErrUnsupported) {
		t.Fatalf("unknown option: %v", err)
	}
}
