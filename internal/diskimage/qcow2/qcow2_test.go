package qcow2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/govisor/govisor/internal/diskimage"
)

// newImage creates a qcow2 image with some data and returns its path.
func newImage(t *testing.T, opts map[string]string, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "t.qcow2")
	img, err := diskimage.Create(path, "qcow2", size, diskimage.CreateOptions{Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := img.WriteAt(bytes.Repeat([]byte("data"), 5000), 70000); err != nil {
		t.Fatal(err)
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

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

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func TestHeaderErrors(t *testing.T) {
	cases := []struct {
		name string
		off  int64
		b    []byte
		want string
	}{
		{"bad magic", 0, []byte("QFI\x00"), "bad magic"},
		{"version 4", 4, be32(4), "version 4"},
		{"cluster bits", 20, be32(30), "cluster_bits 30"},
		{"unknown incompatible", 72, be64(1 << 7), "unknown incompatible features bit 7"},
		{"named incompatible", 72, be64(1 << 2), "external data file"},
		{"encrypted", 32, be32(1), "encrypted"},
		{"l1 too small", 36, be32(0), "cannot map"},
		{"l1 past file", 40, be64(1 << 40), "outside the file"},
		{"refcount table past file", 48, be64(1 << 40), "refcount table"},
		{"refcount order", 96, be32(7), "refcount_order 7"},
		{"header length", 100, be32(1 << 20), "header_length"},
		{"backing name", 8, be64(1 << 30), "backing file name"},
		{"huge size", 24, be64(1 << 63), "too large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := newImage(t, nil, 4<<20)
			patch(t, path, tc.off, tc.b)
			if tc.name == "backing name" {
				patch(t, path, 16, be32(10))
			}
			_, err := Open(path, diskimage.OpenOptions{ReadOnly: true})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestCorruptBitRefusesWrites(t *testing.T) {
	path := newImage(t, nil, 4<<20)
	patch(t, path, offIncompat, be64(incCorrupt))
	if _, err := Open(path, diskimage.OpenOptions{}); !errors.Is(err, diskimage.ErrCorrupt) {
		t.Fatalf("read-write open of a corrupt image: %v, want ErrCorrupt", err)
	}
	img, err := Open(path, diskimage.OpenOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if !img.(*Image).Info().Corrupt {
		t.Fatal("Info does not report the corrupt bit")
	}
	img.Close()
	img, err = Open(path, diskimage.OpenOptions{Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := img.(*Image).Check(true); err != nil {
		t.Fatal(err)
	}
	img.Close()
	img, err = Open(path, diskimage.OpenOptions{})
	if err != nil {
		t.Fatalf("after repair: %v", err)
	}
	img.Close()
}

func TestCheckCountsAndRepairs(t *testing.T) {
	cases := []struct {
		name               string
		damage             func(t *testing.T, m *Image)
		corruptions, leaks int
	}{
		{"clean", func(t *testing.T, m *Image) {}, 0, 0},
		{"leak", func(t *testing.T, m *Image) {
			off, _ := m.allocClusters(3) // allocated, never referenced
			_ = off
		}, 0, 3},
		{"refcount too low", func(t *testing.T, m *Image) {
			e, _, _ := m.lookup(17) // guest cluster 17 holds data (offset 70000)
			m.addRef(e&l2OffMask, -1)
		}, 2, 0}, // the refcount and the COPIED flag disagree
		{"referenced twice", func(t *testing.T, m *Image) {
			e, _, _ := m.lookup(17)
			t2, _ := m.l2For(40)
			t2.e[40%m.l2Entries] = e
			t2.dirty = true
		}, 1, 0}, // refcount 1, two references
		{"unaligned", func(t *testing.T, m *Image) {
			t2, _ := m.l2For(41)
			t2.e[41%m.l2Entries] = 0x12345 | flagCopied
			t2.dirty = true
		}, 1, 0},
		{"past end of file", func(t *testing.T, m *Image) {
			t2, _ := m.l2For(42)
			t2.e[42%m.l2Entries] = 1<<40 | flagCopied
			t2.dirty = true
		}, 1, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := newImage(t, map[string]string{"cluster_size": "4096"}, 4<<20)
			img, err := Open(path, diskimage.OpenOptions{})
			if err != nil {
				t.Fatal(err)
			}
			m := img.(*Image)
			m.mu.Lock()
			tc.damage(t, m)
			m.mu.Unlock()
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			img, _ = Open(path, diskimage.OpenOptions{ReadOnly: true})
			res, err := img.(*Image).Check(false)
			img.Close()
			if err != nil {
				t.Fatal(err)
			}
			if res.Corruptions != tc.corruptions || res.Leaks != tc.leaks {
				t.Fatalf("check: %d corruptions, %d leaks, want %d, %d: %v", res.Corruptions, res.Leaks, tc.corruptions, tc.leaks, res.Messages)
			}
			img, err = Open(path, diskimage.OpenOptions{Repair: true})
			if err != nil {
				t.Fatal(err)
			}
			res, err = img.(*Image).Check(true)
			img.Close()
			if err != nil {
				t.Fatal(err)
			}
			// Clusters outside the file or unaligned stay referenced: a
			// rebuild cannot fix them, as in qemu.
			if tc.name != "unaligned" && tc.name != "past end of file" && (res.Corruptions != 0 || res.Leaks != 0) {
				t.Fatalf("after repair: %+v", res)
			}
			if res.LeaksFixed != tc.leaks {
				t.Fatalf("leaks fixed %d, want %d", res.LeaksFixed, tc.leaks)
			}
		})
	}
}

// TestDirtyImageRebuilt simulates a crash under lazy refcounts: the file
// copied after Flush but before Close has the dirty bit and stale
// refcounts, which opening it for writing rebuilds.
func TestDirtyImageRebuilt(t *testing.T) {
	path := newImage(t, map[string]string{"lazy_refcounts": "on", "cluster_size": "4096"}, 4<<20)
	img, err := Open(path, diskimage.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte{0xa5}, 300000)
	if _, err := img.WriteAt(data, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := img.Flush(); err != nil {
		t.Fatal(err)
	}
	crashed, _ := os.ReadFile(path)
	img.Close()
	cpath := filepath.Join(t.TempDir(), "crashed.qcow2")
	os.WriteFile(cpath, crashed, 0o644)
	info, err := diskimage.InfoOf(cpath, "")
	if err != nil {
		t.Fatal(err)
	}
	if !info.Dirty {
		t.Fatal("crashed image not reported dirty")
	}
	ro, _ := Open(cpath, diskimage.OpenOptions{ReadOnly: true})
	res, _ := ro.(*Image).Check(false)
	got := make([]byte, len(data))
	ro.ReadAt(got, 1<<20)
	ro.Close()
	if res.Corruptions == 0 {
		t.Fatal("stale lazy refcounts not detected by check")
	}
	if !bytes.Equal(got, data) {
		t.Fatal("flushed data lost")
	}
	rw, err := Open(cpath, diskimage.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rw.Close()
	mustCheck(t, cpath)
}

func TestBackingLoopAndDepth(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.qcow2"), filepath.Join(dir, "b.qcow2")
	img, _ := diskimage.Create(b, "qcow2", 1<<20, diskimage.CreateOptions{})
	img.Close()
	img, err := diskimage.Create(a, "qcow2", 1<<20, diskimage.CreateOptions{BackingFile: "b.qcow2"})
	if err != nil {
		t.Fatal(err)
	}
	img.Close()
	// Creating b over a would already fail (its chain loops): write it raw.
	p, _ := parseCreateOptions(nil)
	f, _ := os.Create(b)
	if err := format(fileBackend{f}, 1<<20, p, diskimage.CreateOptions{BackingFile: "a.qcow2"}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := diskimage.Open(a, diskimage.OpenOptions{ReadOnly: true}); !errors.Is(err, diskimage.ErrBackingChain) {
		t.Fatalf("loop: %v, want ErrBackingChain", err)
	}
	// A chain longer than MaxChainDepth.
	prev := filepath.Join(dir, "c0.qcow2")
	img, _ = diskimage.Create(prev, "raw", 1<<20, diskimage.CreateOptions{})
	img.Close()
	var last string
	for i := 1; i <= diskimage.MaxChainDepth+2; i++ {
		last = filepath.Join(dir, "c"+strings.Repeat("x", i)+".qcow2")
		f, _ := os.Create(last)
		if err := format(fileBackend{f}, 1<<20, p, diskimage.CreateOptions{BackingFile: filepath.Base(prev), BackingFormat: "qcow2"}); err != nil {
			t.Fatal(err)
		}
		f.Close()
		prev = last
	}
	if _, err := diskimage.Open(last, diskimage.OpenOptions{ReadOnly: true}); !errors.Is(err, diskimage.ErrBackingChain) {
		t.Fatalf("deep chain: %v, want ErrBackingChain", err)
	}
}

func TestResizeGrowsL1(t *testing.T) {
	path := newImage(t, map[string]string{"cluster_size": "512"}, 1<<20)
	img, err := Open(path, diskimage.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := img.(*Image)
	oldL1 := m.h.l1Off
	if err := m.Resize(64 << 20); err != nil {
		t.Fatal(err)
	}
	if m.h.l1Off == oldL1 {
		t.Fatal("L1 table did not move")
	}
	tail := bytes.Repeat([]byte{7}, 5000)
	if _, err := img.WriteAt(tail, 64<<20-5000); err != nil {
		t.Fatal(err)
	}
	if err := m.Resize(1 << 20); err == nil {
		t.Fatal("shrink accepted")
	}
	img.Close()
	mustCheck(t, path)
	img, _ = Open(path, diskimage.OpenOptions{ReadOnly: true})
	defer img.Close()
	got := readAll(t, img)
	if int64(len(got)) != 64<<20 || !bytes.Equal(got[64<<20-5000:], tail) || !bytes.Equal(got[70000:70004], []byte("data")) {
		t.Fatal("content after resize differs")
	}
}

// TestWriteIntoZeroCluster writes part of a v3 zero cluster (preallocated
// and not): the rest of the cluster must still read as zeros.
func TestWriteIntoZeroCluster(t *testing.T) {
	for _, prealloc := range []bool{false, true} {
		path := newImage(t, map[string]string{"cluster_size": "4096"}, 4<<20)
		img, _ := Open(path, diskimage.OpenOptions{})
		m := img.(*Image)
		m.mu.Lock()
		vc := uint64(70000 / 4096)
		tb, _ := m.l2For(vc)
		if prealloc {
			tb.e[vc] |= flagZero
		} else {
			m.unref(tb.e[vc], 0)
			tb.e[vc] = flagZero
		}
		tb.dirty = true
		m.mu.Unlock()
		if _, err := img.WriteAt([]byte("xy"), int64(vc*4096+100)); err != nil {
			t.Fatal(err)
		}
		want := make([]byte, 4096)
		copy(want[100:], "xy")
		got := make([]byte, 4096)
		img.ReadAt(got, int64(vc*4096))
		img.Close()
		if !bytes.Equal(got, want) {
			t.Fatalf("prealloc=%v: zero cluster write reads wrong", prealloc)
		}
		mustCheck(t, path)
	}
}
