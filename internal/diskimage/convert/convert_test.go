package convert

import (
	"bytes"
	"context"
	"errors"
	"math/rand"
	"path/filepath"
	"testing"

	"github.com/govisor/govisor/internal/allzero"
	"github.com/govisor/govisor/internal/diskimage"
	_ "github.com/govisor/govisor/internal/diskimage/all"
)

// source builds an image of the given format holding random sparse
// content (and, for "qcow2-chain", part of it in a backing file).
func source(t *testing.T, dir, kind string, size int64) (string, []byte) {
	t.Helper()
	r := rand.New(rand.NewSource(int64(len(kind))))
	ref := make([]byte, size)
	path := filepath.Join(dir, "src."+kind)
	format, opts := "raw", diskimage.CreateOptions{}
	switch kind {
	case "qcow2", "qcow2-compressed":
		format = "qcow2"
	case "qcow2-chain":
		format = "qcow2"
		base := filepath.Join(dir, "base.raw")
		b, err := diskimage.Create(base, "raw", size/2, diskimage.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		d := make([]byte, 100000)
		r.Read(d)
		b.WriteAt(d, 4096)
		copy(ref[4096:], d)
		b.Close()
		opts.BackingFile = "base.raw"
		opts.BackingFormat = "raw"
	}
	img, err := diskimage.Create(path, format, size, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ {
		d := make([]byte, 1+r.Intn(300000))
		if i%4 != 0 {
			r.Read(d)
		}
		off := r.Int63n(size - int64(len(d)))
		if kind == "qcow2-compressed" {
			cw := img.(diskimage.CompressedWriter)
			cs := cw.CompressedClusterSize()
			off = off / cs * cs
			d = bytes.Repeat([]byte{byte(i), 9}, int(cs/2))
			if err := cw.WriteCompressed(d, off); err != nil {
				t.Fatal(err)
			}
		} else if _, err := img.WriteAt(d, off); err != nil {
			t.Fatal(err)
		}
		copy(ref[off:], d)
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	return path, ref
}

func TestConvert(t *testing.T) {
	size := int64(24<<20 + 4096)
	cases := []struct {
		src, dst string
		opts     map[string]string
		compress bool
		workers  int
	}{
		{"raw", "raw", nil, false, 1},
		{"raw", "qcow2", nil, false, 4},
		{"raw", "qcow2", map[string]string{"compat": "0.10", "cluster_size": "512"}, false, 3},
		{"raw", "qcow2", map[string]string{"cluster_size": "2M"}, false, 2},
		{"qcow2", "raw", nil, false, 4},
		{"qcow2-chain", "raw", nil, false, 2},
		{"qcow2-chain", "qcow2", nil, false, 4},
		{"qcow2-compressed", "raw", nil, false, 4},
		{"raw", "qcow2", nil, true, 4},
		{"qcow2", "qcow2", map[string]string{"compression_type": "zstd"}, true, 2},
	}
	for _, tc := range cases {
		name := tc.src + "-" + tc.dst
		if tc.compress {
			name += "-compressed"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			srcPath, ref := source(t, dir, tc.src, size)
			src, err := diskimage.Open(srcPath, diskimage.OpenOptions{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			out := filepath.Join(dir, "out")
			dst, err := diskimage.Create(out, tc.dst, size, diskimage.CreateOptions{Options: tc.opts})
			if err != nil {
				t.Fatal(err)
			}
			var last int64
			err = Convert(context.Background(), src, dst, Options{Workers: tc.workers, Compress: tc.compress,
				Progress: func(done, total int64) {
					if done < last || total != size {
						t.Errorf("progress %d/%d after %d", done, total, last)
					}
					last = done
				}})
			if err != nil {
				t.Fatal(err)
			}
			if err := dst.Close(); err != nil {
				t.Fatal(err)
			}
			if last != size {
				t.Fatalf("progress ended at %d of %d", last, size)
			}
			got, err := diskimage.Open(out, diskimage.OpenOptions{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer got.Close()
			buf := make([]byte, size)
			if _, err := got.ReadAt(buf, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf, ref) {
				t.Fatal("converted image differs from the source")
			}
			// (2 MiB clusters are mostly touched by the random writes.)
			if actual := diskimage.ActualSize(out); actual > size/2 && tc.opts["cluster_size"] != "2M" {
				t.Fatalf("output not sparse: %d bytes allocated for %d", actual, size)
			}
			if c, ok := got.(diskimage.Checker); ok {
				res, err := c.Check(false)
				if err != nil || res.Corruptions+res.Leaks != 0 {
					t.Fatalf("check: %+v %v", res, err)
				}
			}
		})
	}
}

func TestConvertErrors(t *testing.T) {
	dir := t.TempDir()
	srcPath, _ := source(t, dir, "raw", 8<<20)
	src, _ := diskimage.Open(srcPath, diskimage.OpenOptions{ReadOnly: true})
	defer src.Close()
	small, _ := diskimage.Create(filepath.Join(dir, "small"), "raw", 1<<20, diskimage.CreateOptions{})
	defer small.Close()
	if err := Convert(context.Background(), src, small, Options{}); !errors.Is(err, ErrTooSmall) {
		t.Fatalf("small destination: %v", err)
	}
	raw, _ := diskimage.Create(filepath.Join(dir, "raw"), "raw", 8<<20, diskimage.CreateOptions{})
	defer raw.Close()
	if err := Convert(context.Background(), src, raw, Options{Compress: true}); !errors.Is(err, ErrNoCompression) {
		t.Fatalf("compressed raw: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Convert(ctx, src, raw, Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestIsZero(t *testing.T) {
	for _, n := range []int{0, 1, 4095, 64 << 10, 200000} {
		b := make([]byte, n)
		if !allzero.Is(b) {
			t.Fatalf("%d zeros not zero", n)
		}
		if n > 0 {
			b[n-1] = 1
			if allzero.Is(b) {
				t.Fatalf("%d bytes with a one at the end reported zero", n)
			}
		}
	}
}
