package vdi

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/diskimage/convert"
	"github.com/govisor/govisor/internal/diskimage/imagetest"
	_ "github.com/govisor/govisor/internal/diskimage/raw"
)

// TestQemuWrittenImagesRead reads VDIs qemu-img made by convert (compared
// with the source) and by create (written by govisor, then read back and
// checked by qemu-img), dynamic and fixed (static=on).
func TestQemuWrittenImagesRead(t *testing.T) {
	q := imagetest.QemuImg(t)
	dir := t.TempDir()
	src := make([]byte, 7<<20+3*512)
	randomSparse(rand.New(rand.NewPCG(3, 4)), src)
	raw := filepath.Join(dir, "src.raw")
	if err := os.WriteFile(raw, src, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, opts := range []string{"static=off", "static=on"} {
		t.Run("convert "+opts, func(t *testing.T) {
			img := filepath.Join(dir, "q.vdi")
			imagetest.Run(t, q, "convert", "-f", "raw", "-O", "vdi", "-o", opts, raw, img)
			got := readAll(t, img)
			if !bytes.Equal(got[:len(src)], src) || len(got) < len(src) {
				t.Fatalf("govisor read %d bytes; data equal=%v", len(got), bytes.Equal(got[:min(len(got), len(src))], src))
			}
			sub := map[string]string{"static=off": "dynamic", "static=on": "fixed"}[opts]
			if info, err := diskimage.InfoOf(img, ""); err != nil || info.Format != "vdi" || info.Subformat != sub {
				t.Fatalf("info %+v %v", info, err)
			}
		})
		t.Run("create "+opts, func(t *testing.T) {
			img := filepath.Join(dir, "c.vdi")
			imagetest.Run(t, q, "create", "-f", "vdi", "-o", opts, img, "5M")
			got := readAll(t, img)
			if len(got) != 5<<20 || !bytes.Equal(got, make([]byte, 5<<20)) {
				t.Fatalf("new image reads %d bytes, not all zero", len(got))
			}
			// Write into qemu's image, then let qemu read it back.
			w, err := Open(img, false)
			if err != nil {
				t.Fatal(err)
			}
			w.WriteAt(src[:5<<20], 0)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			back := filepath.Join(dir, "back.raw")
			imagetest.Run(t, q, "convert", "-f", "vdi", "-O", "raw", img, back)
			if b, _ := os.ReadFile(back); !bytes.Equal(b, src[:5<<20]) {
				t.Fatal("qemu-img reads govisor's writes into its image differently")
			}
			imagetest.Run(t, q, "check", "-f", "vdi", img)
		})
	}
}

// TestGovisorImagesReadByQemu converts a raw image to VDI with govisor's
// converter and has qemu-img compare it with the source and check it.
func TestGovisorImagesReadByQemu(t *testing.T) {
	q := imagetest.QemuImg(t)
	dir := t.TempDir()
	src := make([]byte, 9<<20+512)
	randomSparse(rand.New(rand.NewPCG(5, 6)), src)
	raw := filepath.Join(dir, "src.raw")
	if err := os.WriteFile(raw, src, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"dynamic", "fixed"} {
		t.Run(sub, func(t *testing.T) {
			out := filepath.Join(dir, sub+".vdi")
			in, err := diskimage.Open(raw, diskimage.OpenOptions{Format: "raw", ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			dst, err := diskimage.Create(out, "vdi", in.VirtualSize(), diskimage.CreateOptions{Options: map[string]string{"subformat": sub}})
			if err != nil {
				t.Fatal(err)
			}
			if err := convert.Convert(context.Background(), in, dst, convert.Options{}); err != nil {
				t.Fatal(err)
			}
			if err := dst.Close(); err != nil {
				t.Fatal(err)
			}
			res := imagetest.Run(t, q, "compare", "-f", "raw", "-F", "vdi", raw, out)
			if !strings.Contains(res, "identical") {
				t.Fatalf("qemu-img compare: %s", res)
			}
			imagetest.Run(t, q, "check", "-f", "vdi", out)
			info := imagetest.Run(t, q, "info", "--output=json", "-f", "vdi", out)
			if !strings.Contains(info, `"virtual-size": 9437696`) {
				t.Fatalf("qemu-img info: %s", info)
			}
		})
	}
}

// TestMixedWriters has govisor and qemu-io take turns allocating blocks in
// one dynamic image: each must find the other's blocks and append after
// them, and the result must read the same both ways and pass qemu-img check.
func TestMixedWriters(t *testing.T) {
	q := imagetest.QemuImg(t)
	qio := filepath.Join(filepath.Dir(q), "qemu-io")
	if _, err := os.Stat(qio); err != nil {
		t.Skip("SKIPPING: qemu-io not installed (qemu-utils)")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "m.vdi")
	img, err := Create(path, 8<<20, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 8<<20)
	put := func(b byte, off, n int) { copy(want[off:off+n], bytes.Repeat([]byte{b}, n)) }
	img.WriteAt(bytes.Repeat([]byte{0x11}, 4096), 3<<20)
	put(0x11, 3<<20, 4096)
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	imagetest.Run(t, qio, "-f", "vdi", "-c", "write -P 0x22 1M 64k", "-c", "write -P 0x33 3145728 512", path)
	put(0x22, 1<<20, 64<<10)
	put(0x33, 3<<20, 512)
	img, err = Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	img.WriteAt(bytes.Repeat([]byte{0x44}, 8192), 7<<20-4096)
	put(0x44, 7<<20-4096, 8192)
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, path); !bytes.Equal(got, want) {
		t.Fatal("govisor reads the mixed image wrong")
	}
	back := filepath.Join(dir, "back.raw")
	imagetest.Run(t, q, "convert", "-f", "vdi", "-O", "raw", path, back)
	if b, _ := os.ReadFile(back); !bytes.Equal(b, want) {
		t.Fatal("qemu-img reads the mixed image wrong")
	}
	imagetest.Run(t, q, "check", "-f", "vdi", path)
}
