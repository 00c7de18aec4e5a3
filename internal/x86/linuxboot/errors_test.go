package linuxboot

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

func TestLoadErrors(t *testing.T) {
	okELF := sampleKernelELF(nil)
	gzELF := gzipOf(t, okELF)
	mut := func(b []byte, f func(b []byte)) []byte {
		c := append([]byte(nil), b...)
		f(c)
		return c
	}
	manyRegions := make([]MemRegion, 129)
	for i := range manyRegions {
		manyRegions[i] = MemRegion{Start: uint64(i) << 24, Size: 1 << 24, Type: E820RAM}
	}
	tests := []struct {
		name    string
		cfg     Config
		wantErr error
		wantMsg string
	}{
		{"empty kernel", Config{}, ErrNotKernel, "empty file"},
		{"random bytes", Config{Kernel: []byte("this is not a kernel at all")}, ErrNotKernel, "not a Linux kernel image (bzImage or ELF vmlinux)"},
		{"gzip file", Config{Kernel: gzELF}, ErrNotKernel, "gzip-compressed"},
		{"ELF32", Config{Kernel: buildELF(elfOpts{class: 1, entry: 0x1000000, segs: []testSeg{{0x1000000, []byte{1}, 1}}})}, ErrUnsupported, "ELF64"},
		{"ELF arm64", Config{Kernel: buildELF(elfOpts{machine: 183, entry: 0x1000000, segs: []testSeg{{0x1000000, []byte{1}, 1}}})}, ErrUnsupported, "x86-64"},
		{"ELF truncated header", Config{Kernel: okELF[:40]}, ErrTruncated, "ELF header"},
		{"ELF phdrs past end", Config{Kernel: mut(okELF, func(b []byte) { binary.LittleEndian.PutUint64(b[32:], 1<<40) })}, ErrTruncated, "program headers"},
		{"ELF segment data past end", Config{Kernel: mut(okELF, func(b []byte) { binary.LittleEndian.PutUint64(b[64+32:], 1<<40) })}, ErrTruncated, "segment 0"},
		{"ELF filesz > memsz", Config{Kernel: buildELF(elfOpts{entry: 0x1000000, segs: []testSeg{{0x1000000, []byte{1, 2}, 1}}})}, ErrNotKernel, "filesz"},
		{"ELF segment wraps", Config{Kernel: buildELF(elfOpts{entry: 0x1000000, segs: []testSeg{{^uint64(0) - 1, []byte{1}, 16}}})}, ErrNotKernel, "wraps"},
		{"ELF segments overlap", Config{Kernel: buildELF(elfOpts{entry: 0x1000000, segs: []testSeg{{0x1000000, []byte{1}, 0x2000}, {0x1001000, []byte{1}, 1}}})}, ErrNotKernel, "overlap"},
		{"ELF segment outside RAM", Config{Kernel: buildELF(elfOpts{entry: 0x8000000, segs: []testSeg{{0x8000000, []byte{1}, 1}}})}, ErrNoFit, "not inside guest RAM"},
		{"ELF segment in reserved hole", Config{Kernel: buildELF(elfOpts{entry: 0x9FC00, segs: []testSeg{{0x9FC00, []byte{1}, 1}}})}, ErrNoFit, "not inside guest RAM"},
		{"ELF segment on page tables", Config{Kernel: buildELF(elfOpts{entry: 0x9000, segs: []testSeg{{0x9000, []byte{1}, 1}}})}, ErrNoFit, "page tables"},
		{"ELF segment on boot_params", Config{Kernel: buildELF(elfOpts{entry: 0x7800, segs: []testSeg{{0x7800, []byte{1}, 0x10}}})}, ErrNoFit, "boot_params"},
		{"ELF entry outside segments", Config{Kernel: buildELF(elfOpts{entry: 0x2000000, segs: []testSeg{{0x1000000, []byte{1}, 1}}})}, ErrNotKernel, "entry point 0x2000000"},
		{"ELF entry in bss", Config{Kernel: buildELF(elfOpts{entry: 0x1000010, segs: []testSeg{{0x1000000, []byte{1}, 0x100}}})}, ErrNotKernel, "entry point"},
		{"ELF no loadable segments", Config{Kernel: buildELF(elfOpts{entry: 0x1000000, note: pvhNote(1)})}, ErrNotKernel, "no loadable"},
		{"PVH without note", Config{Kernel: okELF, PreferPVH: true}, ErrUnsupported, "XEN_ELFNOTE_PHYS32_ENTRY"},
		{"PVH entry outside", Config{Kernel: sampleKernelELF(pvhNote(0x5000000)), PreferPVH: true}, ErrNotKernel, "pvh entry point"},
		{"bzImage protocol 2.05", Config{Kernel: buildBzImage(bzOpts{version: 0x0205, payload: gzELF})}, ErrUnsupported, "older than 2.06"},
		{"bzImage truncated header", Config{Kernel: buildBzImage(bzOpts{payload: gzELF})[:0x220]}, ErrTruncated, "setup header"},
		{"bzImage no pm code", Config{Kernel: buildBzImage(bzOpts{payload: gzELF})[:0x600]}, ErrTruncated, "protected-mode"},
		{"bzImage bad boot_flag", Config{Kernel: mut(buildBzImage(bzOpts{payload: gzELF}), func(b []byte) { b[hdrBootFlag] = 0 })}, ErrNotKernel, "boot_flag"},
		{"bzImage payload past end", Config{Kernel: mut(buildBzImage(bzOpts{payload: gzELF}), func(b []byte) { binary.LittleEndian.PutUint32(b[hdrPayloadLength:], 1<<30) })}, ErrTruncated, "payload"},
		{"bzImage protocol 2.07 host unpack", Config{Kernel: buildBzImage(bzOpts{version: 0x0207, payload: gzELF})}, ErrUnsupported, "guest decompression"},
		{"bzImage lzo payload", Config{Kernel: buildBzImage(bzOpts{payload: []byte{0x89, 'L', 'Z', 'O', 0, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0}})}, ErrUnsupported, "--guest-decompress"},
		{"bzImage corrupt payload", Config{Kernel: buildBzImage(bzOpts{payload: gzELF[:len(gzELF)/2]})}, nil, "unpack gzip payload"},
		{"bzImage payload not ELF", Config{Kernel: buildBzImage(bzOpts{payload: gzipOf(t, []byte("just text"))})}, ErrNotKernel, "not an ELF vmlinux"},
		{"bzImage no 64-bit entry", Config{GuestDecompress: true, Kernel: buildBzImage(bzOpts{xloadflags: xlfAbove4G, payload: gzELF})}, ErrUnsupported, "XLF_KERNEL_64"},
		{"bzImage init_size beyond RAM", Config{GuestDecompress: true, Kernel: buildBzImage(bzOpts{initSize: 1 << 30, payload: gzELF})}, ErrNoFit, "not inside guest RAM"},
		{"cmdline over cmdline_size", Config{Kernel: buildBzImage(bzOpts{cmdlineSize: 10, payload: gzELF}), Cmdline: "console=ttyS0"}, ErrCmdline, "at most 10"},
		{"cmdline over CmdlineMax", Config{Kernel: okELF, Cmdline: strings.Repeat("x", CmdlineMax)}, ErrCmdline, "65535"},
		{"cmdline with NUL", Config{Kernel: okELF, Cmdline: "a\x00b"}, ErrCmdline, "NUL"},
		{"memory map too long", Config{Kernel: okELF, Memory: manyRegions}, nil, "129 entries"},
		{"memory map without RAM", Config{Kernel: okELF, Memory: []MemRegion{{0, 1 << 30, E820Reserved}}}, nil, "no RAM"},
		{"memory region wraps", Config{Kernel: okELF, Memory: []MemRegion{{1 << 63, 1 << 63, E820RAM}}}, nil, "wraps"},
		{"boot areas not in RAM", Config{Kernel: okELF, Memory: []MemRegion{{0x100000, 63 << 20, E820RAM}}}, ErrNoFit, "not in guest RAM"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cfg.Memory == nil {
				tc.cfg.Memory = stdMemory()
			}
			mem := newFakeMem(tc.cfg.Memory)
			l, err := Load(mem, tc.cfg)
			if err == nil {
				t.Fatalf("Load succeeded: %+v", l)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("err = %q, want it to mention %q", err, tc.wantMsg)
			}
			if mem.writes != 0 {
				t.Errorf("%d writes to guest memory before the error", mem.writes)
			}
		})
	}
}

func TestProbe(t *testing.T) {
	inner := sampleKernelELF(pvhNote(0x1000040))
	lz := append(lz4LegacyOf(t, inner, 8<<20), sizeTrailer(len(inner))...)
	tests := []struct {
		name    string
		img     []byte
		want    KernelInfo
		wantErr error
	}{
		{"elf", sampleKernelELF(nil), KernelInfo{Format: "elf", Kernel64: true, Entry: 0x1000000}, nil},
		{"elf pvh", sampleKernelELF(pvhNote(0x1000123)), KernelInfo{Format: "elf", Kernel64: true, Entry: 0x1000000, HasPVH: true, PVHEntry: 0x1000123}, nil},
		{"bzImage zero setup_sects", buildBzImage(bzOpts{zeroSects: true, payload: lz, initSize: 0x1234000}),
			KernelInfo{Format: "bzImage", Protocol: 0x020f, Compression: "lz4", Kernel64: true, Relocatable: true,
				CmdlineSize: 2047, PayloadLength: uint32(len(lz)), InitSize: 0x1234000, PrefAddress: 0x1000000,
				UnpackedSize: len(inner), Entry: 0x1000000, HasPVH: true, PVHEntry: 0x1000040}, nil},
		{"bzImage lzo", buildBzImage(bzOpts{payload: []byte{0x89, 'L', 'Z', 'O', 0, 0x0d, 0x0a, 0x1a, 0x0a}}),
			KernelInfo{Format: "bzImage", Protocol: 0x020f, Compression: "lzo", Kernel64: true, Relocatable: true,
				CmdlineSize: 2047, PayloadLength: 9, PrefAddress: 0x1000000}, nil},
		{"bzImage corrupt lz4", buildBzImage(bzOpts{payload: []byte{0x02, 0x21, 0x4c, 0x18, 0, 0}}), KernelInfo{}, errTooBigOrCorrupt},
		{"bzImage payload not ELF", buildBzImage(bzOpts{payload: gzipOf(t, []byte("text"))}), KernelInfo{}, ErrNotKernel},
		{"bzImage 2.06 without payload fields", buildBzImage(bzOpts{version: 0x0206, payload: []byte{0x1f, 0x8b}}),
			KernelInfo{Format: "bzImage", Protocol: 0x0206, Kernel64: true, Relocatable: true, CmdlineSize: 2047}, nil},
		{"bzImage unknown codec", buildBzImage(bzOpts{payload: []byte("????")}),
			KernelInfo{Format: "bzImage", Protocol: 0x020f, Kernel64: true, Relocatable: true, CmdlineSize: 2047, PayloadLength: 4, PrefAddress: 0x1000000}, nil},
		{"cpio", []byte("070701000000"), KernelInfo{}, ErrNotKernel},
		{"old bzImage", buildBzImage(bzOpts{version: 0x0204}), KernelInfo{}, ErrUnsupported},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Probe(tc.img)
			if tc.wantErr == errTooBigOrCorrupt {
				if err == nil {
					t.Fatalf("Probe = %+v, want an error", got)
				}
				return
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("Probe =\n %+v, want\n %+v", got, tc.want)
			}
		})
	}
}

// errTooBigOrCorrupt marks a case where any error will do.
var errTooBigOrCorrupt = errors.New("any error")

func TestEntryModeString(t *testing.T) {
	for m, want := range map[EntryMode]string{Entry64: "64-bit", EntryPVH: "pvh", EntryMode(7): "unknown"} {
		if got := m.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", m, got, want)
		}
	}
}
