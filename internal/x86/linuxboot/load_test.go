package linuxboot

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// checkBootParams checks the zero-page fields every Load must fill.
func checkBootParams(t *testing.T, mem *fakeMem, cfg Config, l *Loaded) {
	t.Helper()
	bp := uint64(BootParamsAddr)
	if got := mem.u16(bp + hdrBootFlag); got != 0xaa55 {
		t.Errorf("boot_flag = %#x", got)
	}
	if got := mem.u32(bp + hdrMagic); got != hdrMagicValue {
		t.Errorf("header magic = %#x", got)
	}
	if got := mem.u8(bp + hdrTypeOfLoader); got != 0xff {
		t.Errorf("type_of_loader = %#x", got)
	}
	if got := mem.u8(bp + hdrLoadflags); got&(loadedHigh|canUseHeap) != loadedHigh|canUseHeap {
		t.Errorf("loadflags = %#x, want LOADED_HIGH|CAN_USE_HEAP", got)
	}
	if got := mem.u16(bp + hdrHeapEndPtr); got != heapEndPtr {
		t.Errorf("heap_end_ptr = %#x", got)
	}
	if got := mem.u32(bp + hdrCmdLinePtr); got != CmdlineAddr {
		t.Errorf("cmd_line_ptr = %#x", got)
	}
	if got := mem.u32(bp + bpExtCmdLinePtr); got != 0 {
		t.Errorf("ext_cmd_line_ptr = %#x", got)
	}
	if got := mem.read(CmdlineAddr, uint64(len(cfg.Cmdline)+1)); string(got) != cfg.Cmdline+"\x00" {
		t.Errorf("command line = %q", got)
	}
	if got := mem.u32(bp + hdrRamdiskImage); uint64(got) != l.InitrdAddr {
		t.Errorf("ramdisk_image = %#x, want %#x", got, l.InitrdAddr)
	}
	if got := mem.u32(bp + hdrRamdiskSize); uint64(got) != uint64(len(cfg.Initrd)) {
		t.Errorf("ramdisk_size = %#x, want %#x", got, len(cfg.Initrd))
	}
	if got := mem.u32(bp+bpExtRamdiskImage) | mem.u32(bp+bpExtRamdiskSize); got != 0 {
		t.Errorf("ext_ramdisk_image/size = %#x, want 0 below 4 GiB", got)
	}
	if got := mem.u8(bp + bpE820Entries); int(got) != len(cfg.Memory) {
		t.Fatalf("e820_entries = %d, want %d", got, len(cfg.Memory))
	}
	for i, r := range cfg.Memory {
		e := bp + bpE820Table + uint64(i)*e820EntrySize
		if a, s, ty := mem.u64(e), mem.u64(e+8), mem.u32(e+16); a != r.Start || s != r.Size || ty != r.Type {
			t.Errorf("e820[%d] = {%#x %#x %d}, want %+v", i, a, s, ty, r)
		}
	}
	if got := mem.u64(bp + bpACPIRSDPAddr); got != cfg.ACPIRSDP {
		t.Errorf("acpi_rsdp_addr = %#x, want %#x", got, cfg.ACPIRSDP)
	}
	if len(cfg.Initrd) > 0 {
		if l.InitrdAddr%pageSize != 0 || l.InitrdAddr < l.KernelEnd {
			t.Errorf("initrd at %#x: not page aligned or below kernel end %#x", l.InitrdAddr, l.KernelEnd)
		}
		if !bytes.Equal(mem.read(l.InitrdAddr, uint64(len(cfg.Initrd))), cfg.Initrd) {
			t.Errorf("initrd bytes at %#x differ", l.InitrdAddr)
		}
	}
}

func TestLoadELF(t *testing.T) {
	initrd := bytes.Repeat([]byte("initrd!"), 10000)
	cfg := Config{
		Kernel:   sampleKernelELF(nil),
		Initrd:   initrd,
		Cmdline:  "console=ttyS0 quiet",
		Memory:   stdMemory(),
		ACPIRSDP: 0xE0000,
	}
	l, mem := mustLoad(t, cfg)
	if l.Entry != 0x1000000 || l.Mode != Entry64 || l.Format != "elf" {
		t.Errorf("Loaded = %+v", l)
	}
	if l.KernelStart != 0x1000000 || l.KernelEnd != 0x1205000 {
		t.Errorf("kernel range [%#x, %#x)", l.KernelStart, l.KernelEnd)
	}
	// The initrd sits at the top of RAM, page aligned.
	if want := uint64(64<<20-len(initrd)) &^ (pageSize - 1); l.InitrdAddr != want {
		t.Errorf("initrd at %#x, want %#x", l.InitrdAddr, want)
	}
	checkBootParams(t, mem, cfg, l)
	text := mem.read(0x1000000, 0x3000)
	for i, b := range text {
		if b != byte(i*7+1) {
			t.Fatalf("text byte %#x = %#x", i, b)
		}
	}
	if got := mem.read(0x1200000, 19); string(got) != "kernel data segment" {
		t.Errorf("data segment = %q", got)
	}
	if bss := mem.read(0x1200000+19, 0x5000-19); !bytes.Equal(bss, make([]byte, len(bss))) {
		t.Errorf("bss not zeroed")
	}
	if got := mem.u8(0x1205000); got != 0xAA {
		t.Errorf("byte after bss written: %#x", got)
	}
	// The minimal header of an ELF kernel.
	bp := uint64(BootParamsAddr)
	if v := mem.u16(bp + hdrVersion); v != 0x020f {
		t.Errorf("version = %#x", v)
	}
	if a := mem.u32(bp + hdrKernelAlignment); a != 0x1000000 {
		t.Errorf("kernel_alignment = %#x", a)
	}
	// Nothing in the areas owned by others.
	for _, a := range []area{{0x500, 0x600, ""}, {0x9000, 0xF000, ""}, {0x9FC00, 0xA0000, ""}, {0xE0000, 0x100000, ""}, {0x6000, 0x7000, ""}} {
		if got := mem.read(a.start, a.end-a.start); !bytes.Equal(got, bytes.Repeat([]byte{0xAA}, len(got))) {
			t.Errorf("area [%#x, %#x) was written", a.start, a.end)
		}
	}
}

func TestLoadPVH(t *testing.T) {
	tests := []struct {
		name string
		img  []byte
	}{
		{"PT_NOTE 8-byte desc", sampleKernelELF(pvhNote(0x1000040))},
		{"PT_NOTE 4-byte desc among others", sampleKernelELF(append(elfNote("GNU", 3, []byte{1, 2, 3, 4, 5}),
			elfNote("Xen", xenElfnotePhys32Entry, []byte{0x40, 0, 0, 1})...))},
		{"SHT_NOTE only", buildELF(elfOpts{
			entry:       0x1000000,
			segs:        []testSeg{{paddr: 0x1000000, data: make([]byte, 0x100), memsz: 0x100}},
			sectionNote: pvhNote(0x1000040),
		})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info, err := Probe(tc.img)
			if err != nil || !info.HasPVH || info.PVHEntry != 0x1000040 {
				t.Fatalf("Probe = %+v, %v", info, err)
			}
			initrd := []byte("cpio archive")
			cfg := Config{Kernel: tc.img, Initrd: initrd, Cmdline: "root=/dev/vda", Memory: stdMemory(), ACPIRSDP: 0xE0000, PreferPVH: true}
			l, mem := mustLoad(t, cfg)
			if l.Mode != EntryPVH || l.Entry != 0x1000040 || l.Format != "elf+pvh" {
				t.Fatalf("Loaded = %+v", l)
			}
			si := uint64(PVHStartInfoAddr)
			checks := []struct {
				name      string
				got, want uint64
			}{
				{"magic", uint64(mem.u32(si)), 0x336ec578},
				{"version", uint64(mem.u32(si + 4)), 1},
				{"flags", uint64(mem.u32(si + 8)), 0},
				{"nr_modules", uint64(mem.u32(si + 12)), 1},
				{"modlist_paddr", mem.u64(si + 16), PVHModlistAddr},
				{"cmdline_paddr", mem.u64(si + 24), CmdlineAddr},
				{"rsdp_paddr", mem.u64(si + 32), 0xE0000},
				{"memmap_paddr", mem.u64(si + 40), PVHMemmapAddr},
				{"memmap_entries", uint64(mem.u32(si + 48)), uint64(len(cfg.Memory))},
				{"mod paddr", mem.u64(PVHModlistAddr), l.InitrdAddr},
				{"mod size", mem.u64(PVHModlistAddr + 8), uint64(len(initrd))},
				{"mod cmdline", mem.u64(PVHModlistAddr + 16), 0},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
				}
			}
			for i, r := range cfg.Memory {
				e := uint64(PVHMemmapAddr + i*pvhMemmapEntrySz)
				if mem.u64(e) != r.Start || mem.u64(e+8) != r.Size || mem.u32(e+16) != r.Type || mem.u32(e+20) != 0 {
					t.Errorf("memmap[%d] wrong", i)
				}
			}
			if got := string(mem.read(CmdlineAddr, 14)); got != "root=/dev/vda\x00" {
				t.Errorf("cmdline = %q", got)
			}
			if !bytes.Equal(mem.read(l.InitrdAddr, uint64(len(initrd))), initrd) {
				t.Errorf("initrd not written")
			}
		})
	}
}

func TestLoadBzImageUnpacked(t *testing.T) {
	vmlinux := sampleKernelELF(pvhNote(0x1000040))
	vmlinux = append(vmlinux, "relocation table after vmlinux.bin"...)
	packs := []struct {
		codec string
		pack  func(t *testing.T) []byte
	}{
		{"gzip", func(t *testing.T) []byte { return gzipOf(t, vmlinux) }},
		{"zstd", func(t *testing.T) []byte { return zstdOf(t, vmlinux) }},
		{"lz4", func(t *testing.T) []byte { return lz4LegacyOf(t, vmlinux, 8<<20) }},
		{"lzma", func(t *testing.T) []byte { return lzmaOf(t, vmlinux) }},
	}
	for _, pk := range packs {
		t.Run(pk.codec, func(t *testing.T) {
			payload := append(pk.pack(t), sizeTrailer(len(vmlinux))...)
			img := buildBzImage(bzOpts{payload: payload, versionStr: "6.1.0-test (builder@host) #1"})
			info, err := Probe(img)
			if err != nil {
				t.Fatal(err)
			}
			if info.Format != "bzImage" || info.Compression != pk.codec || info.Protocol != 0x020f ||
				info.ProtocolString() != "2.15" || info.Version != "6.1.0-test (builder@host) #1" || !info.Kernel64 {
				t.Errorf("Probe = %+v", info)
			}
			cfg := Config{Kernel: img, Initrd: []byte("initramfs"), Cmdline: "console=ttyS0", Memory: stdMemory(), ACPIRSDP: 0xF0000}
			l, mem := mustLoad(t, cfg)
			if l.Entry != 0x1000000 || l.Mode != Entry64 || l.Format != "bzImage+unpacked("+pk.codec+")" {
				t.Errorf("Loaded = %+v", l)
			}
			checkBootParams(t, mem, cfg, l)
			// The kernel's own setup header was copied.
			if got, want := mem.read(BootParamsAddr+hdrSetupSects, 0x1f), img[hdrSetupSects:hdrSetupSects+0x1f]; !bytes.Equal(got, want) {
				t.Errorf("setup header start = % x, want % x", got, want)
			}
			for _, off := range []uint64{hdrVersion, hdrKernelVersion, hdrXLoadflags, hdrCmdlineSize, hdrInitrdAddrMax, hdrPayloadOffset, hdrPrefAddress} {
				if got, want := mem.u16(BootParamsAddr+off), uint16(img[off])|uint16(img[off+1])<<8; got != want {
					t.Errorf("header field %#x = %#x, want %#x", off, got, want)
				}
			}
			if mem.u8(0x1000000) != 1 || mem.u8(0x1000001) != 8 {
				t.Errorf("vmlinux text not loaded")
			}
			// With PreferPVH the unpacked vmlinux's note is used.
			cfg.PreferPVH = true
			l, mem = mustLoad(t, cfg)
			if l.Mode != EntryPVH || l.Entry != 0x1000040 || !strings.HasSuffix(l.Format, "+pvh") {
				t.Errorf("PVH Loaded = %+v", l)
			}
			if mem.u32(PVHStartInfoAddr) != pvhMagic {
				t.Errorf("no PVH start info")
			}
		})
	}
}

func TestLoadBzImageGuestDecompress(t *testing.T) {
	payload := []byte("\x28\xb5\x2f\xfdcompressed kernel that the guest will unpack itself")
	img := buildBzImage(bzOpts{payload: payload, initSize: 0x2000000})
	cfg := Config{Kernel: img, Cmdline: "quiet", Memory: stdMemory(), GuestDecompress: true}
	l, mem := mustLoad(t, cfg)
	if l.Entry != HighMemStart+0x200 || l.Mode != Entry64 || l.Format != "bzImage" {
		t.Errorf("Loaded = %+v", l)
	}
	// Output at max(align_up(1 MiB, 2 MiB), pref_address 16 MiB) + init_size.
	if l.KernelStart != HighMemStart || l.KernelEnd != 0x1000000+0x2000000 {
		t.Errorf("kernel range [%#x, %#x)", l.KernelStart, l.KernelEnd)
	}
	pm := img[5*512:]
	if got := mem.read(HighMemStart, uint64(len(pm))); !bytes.Equal(got, pm) {
		t.Errorf("protected-mode code not at 1 MiB")
	}
	if got := mem.u32(BootParamsAddr + hdrCode32Start); got != HighMemStart {
		t.Errorf("code32_start = %#x", got)
	}
	checkBootParams(t, mem, cfg, l)
}

func TestInitrdPlacement(t *testing.T) {
	big := []MemRegion{
		{Start: 0, Size: 0x9FC00, Type: E820RAM},
		{Start: 0x100000, Size: 0xC0000000 - 0x100000, Type: E820RAM},
		{Start: 0xC0000000, Size: 0x40000000, Type: E820Reserved},
		{Start: 0x100000000, Size: 0x40000000, Type: E820RAM},
	}
	tests := []struct {
		name      string
		kernel    []byte
		memory    []MemRegion
		size      int
		want      uint64
		wantNoFit bool
	}{
		{"top of RAM", sampleKernelELF(nil), stdMemory(), 5000, 0x4000000 - 0x2000, false},
		{"exact page", sampleKernelELF(nil), stdMemory(), 4096, 0x4000000 - 0x1000, false},
		{"below 4 GiB hole", sampleKernelELF(nil), big, 1 << 20, 0x7fffffff + 1 - 1<<20, false},
		{"bzImage initrd_addr_max", buildBzImage(bzOpts{payload: gzipOf(t, sampleKernelELF(nil)), initrdMax: 0x2ffffff}), stdMemory(), 1 << 20, 0x3000000 - 1<<20, false},
		{"too big", sampleKernelELF(nil), stdMemory(), 63 << 20, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Kernel: tc.kernel, Initrd: make([]byte, tc.size), Memory: tc.memory}
			mem := newFakeMem(cfg.Memory)
			l, err := Load(mem, cfg)
			if tc.wantNoFit {
				if !errors.Is(err, ErrNoFit) || !strings.Contains(err.Error(), "more memory") || !strings.Contains(err.Error(), "66060288 bytes") {
					t.Fatalf("err = %v, want a no-fit error naming the size", err)
				}
				if mem.writes != 0 {
					t.Errorf("%d writes before the error", mem.writes)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if l.InitrdAddr != tc.want || l.InitrdSize != uint64(tc.size) {
				t.Errorf("initrd at %#x+%#x, want %#x", l.InitrdAddr, l.InitrdSize, tc.want)
			}
		})
	}
}
