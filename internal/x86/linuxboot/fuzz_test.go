package linuxboot

import (
	"os"
	"path/filepath"
	"testing"
)

// fuzzMemory is a small guest so that fuzzed segments stay cheap to zero.
func fuzzMemory() []MemRegion {
	return []MemRegion{
		{Start: 0, Size: 0x9FC00, Type: E820RAM},
		{Start: 0x9FC00, Size: 0x400, Type: E820Reserved},
		{Start: 0x100000, Size: 7 << 20, Type: E820RAM},
	}
}

func fuzzSeeds(f *testing.F) {
	small := buildELF(elfOpts{entry: 0x200000, segs: []testSeg{{0x200000, []byte("code"), 0x100}}, note: pvhNote(0x200001)})
	f.Add(small)
	f.Add(sampleKernelELF(pvhNote(0x1000040))[:200])
	f.Add(buildBzImage(bzOpts{payload: gzipOf(f, small)}))
	f.Add(buildBzImage(bzOpts{payload: lz4LegacyOf(f, small, 64)}))
	f.Add(buildBzImage(bzOpts{zeroSects: true, payload: zstdOf(f, small)}))
	f.Add(buildBzImage(bzOpts{version: 0x0206}))
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	f.Add([]byte{})
}

func FuzzProbe(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, img []byte) {
		info, err := Probe(img)
		if err == nil && info.Format != "bzImage" && info.Format != "elf" {
			t.Fatalf("Probe accepted an image with format %q", info.Format)
		}
	})
}

func FuzzLoad(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, img []byte) {
		for _, cfg := range []Config{
			{Kernel: img, Initrd: []byte("initrd"), Cmdline: "console=ttyS0", Memory: fuzzMemory()},
			{Kernel: img, Memory: fuzzMemory(), PreferPVH: true},
			{Kernel: img, Memory: fuzzMemory(), GuestDecompress: true},
		} {
			mem := newFakeMem(cfg.Memory)
			l, err := Load(mem, cfg)
			if err != nil {
				if mem.writes != 0 {
					t.Fatalf("error %v after %d writes", err, mem.writes)
				}
				continue
			}
			if l.KernelStart > l.KernelEnd || l.Entry < l.KernelStart || l.Entry >= l.KernelEnd {
				t.Fatalf("inconsistent result %+v", l)
			}
			if l.InitrdSize > 0 && l.InitrdAddr < l.KernelEnd {
				t.Fatalf("initrd at %#x below kernel end %#x", l.InitrdAddr, l.KernelEnd)
			}
		}
	})
}

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
		if info.HasPVH || !guest {
			cfg.PreferPVH = true
			if l, err := Load(newFakeMem(memory), cfg); err == nil {
				t.Logf("PVH: %+v", l)
			}
		}
	}
}
