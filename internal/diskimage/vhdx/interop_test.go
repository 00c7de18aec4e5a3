package vhdx

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
	src := make([]byte, 11<<20+512)
	randomSparse(rand.New(rand.NewPCG(4, 4)), src)
	raw := filepath.Join(dir, "src.raw")
	os.WriteFile(raw, src, 0o644)
	for _, opts := range []string{"subformat=dynamic", "subformat=fixed", "subformat=dynamic,block_size=1M"} {
		t.Run(opts, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "q.vhdx")
			back := filepath.Join(t.TempDir(), "back.raw")
			run(t, q, "convert", "-f", "raw", "-O", "vhdx", "-o", opts, raw, img)
			run(t, q, "convert", "-f", "vhdx", "-O", "raw", img, back)
			want, _ := os.ReadFile(back)
			got, gimg := readAll(t, img, true)
			if !bytes.Equal(got, want) {
				t.Fatalf("govisor read %d bytes, qemu-img %d (equal=%v)", len(got), len(want), bytes.Equal(got, want))
			}
			wantSub := "dynamic"
			if strings.Contains(opts, "fixed") {
				wantSub = "fixed"
			}
			if gimg.Subformat() != wantSub {
				t.Fatalf("subformat %s", gimg.Subformat())
			}
		})
	}
}

func TestGovisorImagesReadByQemu(t *testing.T) {
	q := qemuImg(t)
	for _, tc := range []struct {
		name string
		opts CreateOptions
	}{{"dynamic", CreateOptions{}}, {"dynamic-1M", CreateOptions{BlockSize: mib}}, {"fixed", CreateOptions{Fixed: true}}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "g.vhdx")
			img, err := Create(path, 40<<20+4096, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]byte, img.VirtualSize())
			randomSparse(rand.New(rand.NewPCG(5, 5)), want)
			if _, err := img.WriteAt(want, 0); err != nil {
				t.Fatal(err)
			}
			if err := img.Close(); err != nil {
				t.Fatal(err)
			}
			out := run(t, q, "check", "-f", "vhdx", path)
			if !strings.Contains(out, "No errors") {
				t.Fatalf("qemu-img check: %s", out)
			}
			back := filepath.Join(dir, "back.raw")
			run(t, q, "convert", "-f", "vhdx", "-O", "raw", path, back)
			got, _ := os.ReadFile(back)
			if !bytes.Equal(got, want) {
				t.Fatalf("qemu-img read %d bytes, want %d (equal=%v)", len(got), len(want), bytes.Equal(got, want))
			}
		})
	}
}

// TestHandcraftedLogMatchesQemu replays the same dirty log with govisor and
// with qemu-img (check -r all replays it) and compares the results.
func TestHandcraftedLogMatchesQemu(t *testing.T) {
	q := qemuImg(t)
	dir := t.TempDir()
	path, want := dirtyImage(t, dir)
	qpath := filepath.Join(dir, "qemu.vhdx")
	b, _ := os.ReadFile(path)
	os.WriteFile(qpath, b, 0o644)
	run(t, q, "check", "-r", "all", "-f", "vhdx", qpath)
	back := filepath.Join(dir, "back.raw")
	run(t, q, "convert", "-f", "vhdx", "-O", "raw", qpath, back)
	qgot, _ := os.ReadFile(back)
	if !bytes.Equal(qgot, want) {
		t.Fatal("qemu-img's replay differs from the expected contents")
	}
	got, _ := readAll(t, path, false)
	if !bytes.Equal(got, qgot) {
		t.Fatal("govisor's replay differs from qemu-img's")
	}
}
