package qcow2

import (
	"bytes"
	"math/rand"
	"path/filepath"
	"testing"

	"github.com/govisor/govisor/internal/diskimage"
	_ "github.com/govisor/govisor/internal/diskimage/raw"
)

// write is one guest write of a round-trip test.
type write struct {
	off  int64
	data []byte
}

// randomWrites makes n writes of random length (some spanning clusters,
// some all zeros) inside size bytes.
func randomWrites(r *rand.Rand, size int64, n int, maxLen int) []write {
	var ws []write
	for i := 0; i < n; i++ {
		l := 1 + r.Intn(maxLen)
		off := r.Int63n(size - int64(l))
		d := make([]byte, l)
		if r.Intn(5) != 0 {
			r.Read(d)
		}
		ws = append(ws, write{off, d})
	}
	return ws
}

func apply(ref []byte, ws []write) {
	for _, w := range ws {
		copy(ref[w.off:], w.data)
	}
}

func readAll(t testing.TB, img diskimage.Image) []byte {
	t.Helper()
	got := make([]byte, img.VirtualSize())
	if _, err := img.ReadAt(got, 0); err != nil {
		t.Fatalf("read: %v", err)
	}
	return got
}

func mustCheck(t testing.TB, path string) {
	t.Helper()
	img, err := diskimage.Open(path, diskimage.OpenOptions{ReadOnly: true, NoBacking: true})
	if err != nil {
		t.Fatalf("open for check: %v", err)
	}
	defer img.Close()
	res, err := img.(diskimage.Checker).Check(false)
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	if res.Corruptions != 0 || res.Leaks != 0 {
		t.Fatalf("check: %d corruptions, %d leaks: %v", res.Corruptions, res.Leaks, res.Messages)
	}
}

func TestRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		opts map[string]string
		size int64
	}{
		{"v2-64k", map[string]string{"compat": "0.10"}, 8 << 20},
		{"v3-512", map[string]string{"cluster_size": "512"}, 1 << 20},
		{"v3-4k", map[string]string{"cluster_size": "4096"}, 3<<20 + 1234},
		{"v3-64k", nil, 16 << 20},
		{"v3-2M", map[string]string{"cluster_size": "2M"}, 9 << 20},
		{"v3-refbits1", map[string]string{"cluster_size": "1024", "refcount_bits": "1"}, 2 << 20},
		{"v3-refbits64", map[string]string{"cluster_size": "1024", "refcount_bits": "64"}, 2 << 20},
		{"v3-lazy", map[string]string{"lazy_refcounts": "on", "cluster_size": "4096"}, 2 << 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewSource(1))
			path := filepath.Join(t.TempDir(), "a.qcow2")
			img, err := diskimage.Create(path, "qcow2", tc.size, diskimage.CreateOptions{Options: tc.opts})
			if err != nil {
				t.Fatal(err)
			}
			ref := make([]byte, tc.size)
			ws := randomWrites(r, tc.size, 60, 3*int(img.(*Image).cs))
			for i, w := range ws {
				if _, err := img.WriteAt(w.data, w.off); err != nil {
					t.Fatalf("write %d: %v", i, err)
				}
				if i == 30 {
					if err := img.Flush(); err != nil {
						t.Fatal(err)
					}
				}
			}
			apply(ref, ws)
			if got := readAll(t, img); !bytes.Equal(got, ref) {
				t.Fatal("read before close differs")
			}
			if err := img.Close(); err != nil {
				t.Fatal(err)
			}
			mustCheck(t, path)
			img, err = diskimage.Open(path, diskimage.OpenOptions{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			if got := readAll(t, img); !bytes.Equal(got, ref) {
				t.Fatal("read after reopen differs")
			}
			if img.(*Image).h.incompat&incDirty != 0 {
				t.Fatal("dirty bit left set after clean close")
			}
		})
	}
}
