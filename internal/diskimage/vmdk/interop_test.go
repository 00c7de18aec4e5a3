package vmdk

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

func TestQemuCreatedImagesReadIdentically(t *testing.T) {
	q := qemuImg(t)
	dir := t.TempDir()
	src := make([]byte, 9<<20+5*512)
	randomSparse(rand.New(rand.NewPCG(1, 1)), src)
	raw := filepath.Join(dir, "src.raw")
	os.WriteFile(raw, src, 0o644)
	for _, sub := range []string{"monolithicSparse", "streamOptimized", "monolithicFlat", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat"} {
		t.Run(sub, func(t *testing.T) {
			d := t.TempDir()
			img := filepath.Join(d, "q.vmdk")
			back := filepath.Join(d, "back.raw")
			run(t, q, "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat="+sub, raw, img)
			run(t, q, "convert", "-f", "vmdk", "-O", "raw", img, back)
			want, _ := os.ReadFile(back)
			got, gimg := readAll(t, img)
			if !bytes.Equal(got, want) {
				t.Fatalf("govisor read %d bytes, qemu-img %d (equal=%v)", len(got), len(want), bytes.Equal(got, want))
			}
			if gimg.Subformat() != sub {
				t.Fatalf("subformat %q", gimg.Subformat())
			}
		})
	}
}

func TestGovisorImagesReadByQemu(t *testing.T) {
	q := qemuImg(t)
	for _, sub := range []string{"monolithicSparse", "streamOptimized"} {
		t.Run(sub, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "g.vmdk")
			r := rand.New(rand.NewPCG(2, 2))
			img, err := Create(path, 70<<20+512, CreateOptions{Subformat: sub})
			if err != nil {
				t.Fatal(err)
			}
			want := make([]byte, img.VirtualSize())
			randomSparse(r, want)
			writeShuffled(t, img, want, r)
			if err := img.Close(); err != nil {
				t.Fatal(err)
			}
			back := filepath.Join(dir, "back.raw")
			run(t, q, "convert", "-f", "vmdk", "-O", "raw", path, back)
			got, _ := os.ReadFile(back)
			if !bytes.Equal(got, want) {
				t.Fatalf("qemu-img read %d bytes, want %d (equal=%v)", len(got), len(want), bytes.Equal(got, want))
			}
			out := run(t, q, "check", "-f", "vmdk", path)
			if !strings.Contains(out, "No errors") {
				t.Fatalf("qemu-img check: %s", out)
			}
		})
	}
}
