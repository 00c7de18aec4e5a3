package vhd

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/govisor/govisor/internal/diskimage/imagetest"
)

// Shared with the other formats' interop tests.
var (
	qemuImg = imagetest.QemuImg
	run     = imagetest.Run
)

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

func TestQemuCreatedImagesReadIdentically(t *testing.T) {
	q := qemuImg(t)
	dir := t.TempDir()
	src := make([]byte, 7<<20+3*512)
	randomSparse(rand.New(rand.NewPCG(3, 4)), src)
	raw := filepath.Join(dir, "src.raw")
	if err := os.WriteFile(raw, src, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, opts := range []string{"subformat=dynamic", "subformat=fixed", "subformat=dynamic,force_size=on", "subformat=fixed,force_size=on"} {
		t.Run(opts, func(t *testing.T) {
			img := filepath.Join(dir, "q.vhd")
			back := filepath.Join(dir, "back.raw")
			run(t, q, "convert", "-f", "raw", "-O", "vpc", "-o", opts, raw, img)
			run(t, q, "convert", "-f", "vpc", "-O", "raw", img, back)
			want, _ := os.ReadFile(back)
			got := readAll(t, img)
			if len(got) != len(want) || !bytes.Equal(got, want) {
				t.Fatalf("govisor read %d bytes, qemu-img %d; contents equal=%v", len(got), len(want), bytes.Equal(got, want))
			}
			if !bytes.Equal(got[:len(src)], src) {
				t.Fatal("data differs from the source")
			}
		})
	}
}

func TestGovisorImagesReadByQemu(t *testing.T) {
	q := qemuImg(t)
	for _, tc := range []struct {
		name string
		opts CreateOptions
	}{{"dynamic", CreateOptions{}}, {"fixed", CreateOptions{Fixed: true}}, {"azure", CreateOptions{AzureAlign: true}}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "g.vhd")
			img, err := Create(path, 6<<20+4096, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]byte, img.VirtualSize())
			randomSparse(rand.New(rand.NewPCG(5, 6)), want)
			if _, err := img.WriteAt(want, 0); err != nil {
				t.Fatal(err)
			}
			if err := img.Close(); err != nil {
				t.Fatal(err)
			}
			back := filepath.Join(dir, "back.raw")
			run(t, q, "convert", "-f", "vpc", "-O", "raw", path, back)
			got, _ := os.ReadFile(back)
			if !bytes.Equal(got, want) {
				t.Fatalf("qemu-img read %d bytes, want %d (equal=%v)", len(got), len(want), bytes.Equal(got, want))
			}
			// qemu-img has no consistency check for vpc; "info" must at
			// least accept the image and agree on the size.
			out := run(t, q, "info", "-f", "vpc", path)
			if !strings.Contains(out, "vpc") {
				t.Fatalf("qemu-img info: %s", out)
			}
		})
	}
}
