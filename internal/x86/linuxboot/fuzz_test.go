package linuxboot

import "testing"

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
