package exporter

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/govisor/govisor/internal/diskimage/imagetest"
	"github.com/govisor/govisor/internal/vmimport"
)

// sparseRaw writes a raw disk of size bytes with random data in a few
// places, zeros elsewhere.
func sparseRaw(t *testing.T, path string, size int64, seed uint64) []byte {
	t.Helper()
	b := make([]byte, size)
	r := rand.New(rand.NewPCG(seed, seed))
	for range 8 {
		off := r.Int64N(size - 70000)
		for i := range 70000 {
			b[off+int64(i)] = byte(r.Uint32())
		}
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOVALayout checks the archive against DSP0243 section 5.3 and
// qemu-img's reading of its streamOptimized VMDK.
func TestOVALayout(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "d.raw")
	want := sparseRaw(t, raw, 3<<20+512*7, 1)
	out := filepath.Join(dir, "vm.ova")
	vm := &vmimport.VM{Name: "vm", CPUs: 1, MemoryMiB: 128, Firmware: "bios"}
	var calls int
	if err := Export(context.Background(), Options{VM: vm, Images: []string{raw}, Out: out,
		Progress: func(i, n int, done, total int64) { calls++ }}); err != nil {
		t.Fatal(err)
	}
	if calls == 0 {
		t.Error("no progress reported")
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var names []string
	vmdk := filepath.Join(dir, "x.vmdk")
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if strings.HasSuffix(h.Name, ".vmdk") {
			b, _ := io.ReadAll(tr)
			os.WriteFile(vmdk, b, 0o644)
		}
		if strings.HasSuffix(h.Name, ".mf") {
			b, _ := io.ReadAll(tr)
			if !strings.Contains(string(b), "SHA256(vm.ovf)= ") || !strings.Contains(string(b), "SHA256(vm-disk1.vmdk)= ") {
				t.Errorf("manifest:\n%s", b)
			}
		}
	}
	if strings.Join(names, " ") != "vm.ovf vm.mf vm-disk1.vmdk" {
		t.Errorf("members %q: want the descriptor, the manifest, then the disk", names)
	}
	if entries, _ := filepath.Glob(filepath.Join(dir, ".gv-export-*")); len(entries) != 0 {
		t.Errorf("left behind: %q", entries)
	}

	q := imagetest.QemuImg(t)
	info := imagetest.Run(t, q, "info", "-f", "vmdk", vmdk)
	if !strings.Contains(info, "create type: streamOptimized") {
		t.Errorf("qemu-img info:\n%s", info)
	}
	back := filepath.Join(dir, "back.raw")
	imagetest.Run(t, q, "convert", "-f", "vmdk", "-O", "raw", vmdk, back)
	got, _ := os.ReadFile(back)
	if !bytes.Equal(got, want) {
		t.Errorf("qemu-img reads the exported disk differently (%d bytes, want %d)", len(got), len(want))
	}
}
