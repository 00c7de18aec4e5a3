package linuxboot

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestRealBzImage loads the project's test-guest kernel when it has been
// built (a Linux 6.1 bzImage with an LZ4 payload).
func TestRealBzImage(t *testing.T) {
	path := filepath.Join("..", "..", "..", ".cache", "guest", "bzImage")
	img, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("no test-guest kernel at %s: %v", path, err)
	}
	info, err := Probe(img)
	if err != nil {
		t.Fatalf("Probe: %v", err)
	}
	t.Logf("Probe: %+v", info)
	if info.Format != "bzImage" || !info.Kernel64 || info.Compression == "" {
		t.Errorf("Probe = %+v, want a 64-bit bzImage with a known payload codec", info)
	}
	memory := []MemRegion{
		{Start: 0, Size: 0x9FC00, Type: E820RAM},
		{Start: 0x9FC00, Size: 0x400, Type: E820Reserved},
		{Start: 0xE0000, Size: 0x20000, Type: E820Reserved},
		{Start: 0x100000, Size: 256<<20 - 0x100000, Type: E820RAM},
	}
	for _, guest := range []bool{false, true} {
		cfg := Config{Kernel: img, Initrd: make([]byte, 1<<20), Cmdline: "console=ttyS0 quiet", Memory: memory, GuestDecompress: guest}
		l, mem := mustLoad(t, cfg)
		t.Logf("GuestDecompress=%v: %+v", guest, l)
		if l.Mode != Entry64 || l.Entry < l.KernelStart || l.Entry >= l.KernelEnd {
			t.Errorf("Loaded = %+v, want a 64-bit entry inside the kernel", l)
		}
		if !guest && l.Format != "bzImage+unpacked("+info.Compression+")" {
			t.Errorf("Format = %q", l.Format)
		}
		checkBootParams(t, mem, cfg, l)
		if !guest {
			cfg.PreferPVH = true
			if l, err := Load(newFakeMem(memory), cfg); err == nil {
				t.Logf("PVH: %+v", l)
			}
		}
	}
	checkAgainstVmlinux(t, img, filepath.Join(filepath.Dir(path), "vmlinux"))
}

// checkAgainstVmlinux compares the host-unpacked payload with the vmlinux
// the bzImage was built from: every PT_LOAD segment must match.
func checkAgainstVmlinux(t *testing.T, bz []byte, path string) {
	ref, err := os.ReadFile(path)
	if err != nil {
		t.Logf("no vmlinux beside the bzImage: %v", err)
		return
	}
	h, err := parseSetupHeader(bz)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := h.payload()
	if err != nil {
		t.Fatal(err)
	}
	unpacked, _, err := Unpack(payload)
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseELF(unpacked)
	if err != nil {
		t.Fatalf("unpacked payload: %v", err)
	}
	want, err := parseELF(ref)
	if err != nil {
		t.Fatalf("vmlinux: %v", err)
	}
	if got.entry != want.entry || got.hasPVH != want.hasPVH || got.pvhEntry != want.pvhEntry || len(got.segs) != len(want.segs) {
		t.Fatalf("unpacked ELF entry %#x pvh %v %#x, %d segments; vmlinux entry %#x pvh %v %#x, %d segments",
			got.entry, got.hasPVH, got.pvhEntry, len(got.segs), want.entry, want.hasPVH, want.pvhEntry, len(want.segs))
	}
	for i := range got.segs {
		g, w := got.segs[i], want.segs[i]
		if g.paddr != w.paddr || g.memsz != w.memsz || !bytes.Equal(g.data, w.data) {
			t.Errorf("segment %d differs: [%#x, +%#x) vs [%#x, +%#x)", i, g.paddr, g.memsz, w.paddr, w.memsz)
		}
	}
	info, err := Probe(ref)
	if err != nil || !info.HasPVH {
		t.Errorf("Probe(vmlinux) = %+v, %v; want a PVH note (CONFIG_PVH=y)", info, err)
	}
	l, _ := mustLoad(t, Config{Kernel: ref, Memory: []MemRegion{{Start: 0, Size: 0x9FC00, Type: E820RAM}, {Start: 0x100000, Size: 255 << 20, Type: E820RAM}}, PreferPVH: true})
	if l.Mode != EntryPVH || l.Entry != info.PVHEntry {
		t.Errorf("vmlinux PVH load = %+v", l)
	}
}
