package linuxboot

import (
	"fmt"
	"io"
	"strings"
)

// entry64Offset is the offset of the 64-bit entry point in the protected-mode
// code of a bzImage with XLF_KERNEL_64 (boot.rst "64-bit BOOT PROTOCOL").
const entry64Offset = 0x200

// elfInitrdMax is initrd_addr_max for an ELF kernel without a setup header:
// the value x86-64 kernels put in their own header (arch/x86/boot/header.S).
const elfInitrdMax = 0x7fffffff

// plan is everything Load decided before it writes anything.
type plan struct {
	loaded      Loaded
	segs        []elfSegment // kernel pieces to write
	header      []byte       // setup header to copy into the zero page, if any
	version     uint16
	cmdlineMax  uint64 // longest command line the kernel accepts, terminator excluded
	initrdMax   uint64 // last byte the initrd may occupy
	code32      uint64
	pvh         bool
	elfHasPVH   bool
	elfPVHEntry uint64
}

// Load places the kernel, initrd, command line and boot structures in guest
// memory and returns how to enter the kernel. Everything is validated before
// the first write, so an error leaves guest memory untouched.
func Load(mem io.WriterAt, cfg Config) (*Loaded, error) {
	mm, err := newMemMap(cfg.Memory)
	if err != nil {
		return nil, err
	}
	var p *plan
	switch {
	case isBzImage(cfg.Kernel):
		p, err = planBzImage(cfg)
	case isELF(cfg.Kernel):
		p, err = planELF(cfg.Kernel, "elf")
	default:
		err = fmt.Errorf("%w: %s", ErrNotKernel, describe(cfg.Kernel))
	}
	if err != nil {
		return nil, err
	}
	if err := p.choseEntry(cfg); err != nil {
		return nil, err
	}
	for _, s := range p.segs {
		if err := mm.checkKernelRange(s.paddr, s.memsz, "kernel segment"); err != nil {
			return nil, err
		}
	}
	if err := p.checkCmdline(cfg.Cmdline); err != nil {
		return nil, err
	}
	for _, a := range []area{
		{CmdlineAddr, CmdlineAddr + uint64(len(cfg.Cmdline)) + 1, "command line"},
		{BootParamsAddr, BootParamsAddr + BootParamsSize, "boot_params"},
		{PVHStartInfoAddr, BootParamsAddr, "PVH start info"},
	} {
		if !mm.inRAM(a.start, a.end-a.start) {
			return nil, fmt.Errorf("%w: the %s area [%#x, %#x) is not in guest RAM (%s)", ErrNoFit, a.name, a.start, a.end, mm.describeRAM())
		}
	}
	l := &p.loaded
	if len(cfg.Initrd) > 0 {
		ceiling := min(p.initrdMax+1, 1<<32)
		addr, err := mm.placeInitrd(uint64(len(cfg.Initrd)), l.KernelEnd, ceiling)
		if err != nil {
			return nil, err
		}
		l.InitrdAddr, l.InitrdSize = addr, uint64(len(cfg.Initrd))
	}
	return l, p.write(mem, cfg)
}

// choseEntry picks the 64-bit or the PVH entry and checks it lies inside
// the loaded kernel.
func (p *plan) choseEntry(cfg Config) error {
	l := &p.loaded
	if cfg.PreferPVH {
		if !p.elfHasPVH {
			return fmt.Errorf("%w: PVH entry requested but the kernel has no XEN_ELFNOTE_PHYS32_ENTRY note (needs CONFIG_PVH, and an unpacked bzImage or a vmlinux)", ErrUnsupported)
		}
		p.pvh, l.Entry, l.Mode = true, p.elfPVHEntry, EntryPVH
		l.Format += "+pvh"
	}
	for _, s := range p.segs {
		if s.paddr <= l.Entry && l.Entry-s.paddr < uint64(len(s.data)) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s entry point %#x is outside the kernel's loaded code", ErrNotKernel, l.Mode, l.Entry)
}

func (p *plan) checkCmdline(c string) error {
	if strings.IndexByte(c, 0) >= 0 {
		return fmt.Errorf("%w: command line contains a NUL byte", ErrCmdline)
	}
	limit := min(p.cmdlineMax, CmdlineMax-1)
	if uint64(len(c)) > limit {
		return fmt.Errorf("%w: %d bytes, the kernel accepts at most %d", ErrCmdline, len(c), limit)
	}
	return nil
}

// planELF plans loading a vmlinux at its physical addresses, entered at
// e_entry in 64-bit mode (the x86-64 e_entry is phys_startup_64).
func planELF(img []byte, format string) (*plan, error) {
	k, err := parseELF(img)
	if err != nil {
		return nil, err
	}
	p := &plan{
		segs:        k.segs,
		cmdlineMax:  CmdlineMax - 1,
		initrdMax:   elfInitrdMax,
		elfHasPVH:   k.hasPVH,
		elfPVHEntry: k.pvhEntry,
	}
	p.loaded = Loaded{Entry: k.entry, Mode: Entry64, Format: format, KernelStart: ^uint64(0)}
	for _, s := range k.segs {
		p.loaded.KernelStart = min(p.loaded.KernelStart, s.paddr)
		p.loaded.KernelEnd = max(p.loaded.KernelEnd, s.paddr+s.memsz)
	}
	return p, nil
}

// planBzImage plans loading a bzImage: unpacked on the host into its vmlinux
// by default, or as is for the guest to decompress.
func planBzImage(cfg Config) (*plan, error) {
	h, err := parseSetupHeader(cfg.Kernel)
	if err != nil {
		return nil, err
	}
	var p *plan
	if cfg.GuestDecompress {
		if p, err = planCompressed(h); err != nil {
			return nil, err
		}
	} else {
		payload, err := h.payload()
		if err != nil {
			return nil, err
		}
		vmlinux, codec, err := Unpack(payload)
		if err != nil {
			return nil, err
		}
		if !isELF(vmlinux) {
			return nil, fmt.Errorf("%w: unpacked %s payload is not an ELF vmlinux: %s", ErrNotKernel, codec, describe(vmlinux))
		}
		if p, err = planELF(vmlinux, "bzImage+unpacked("+codec+")"); err != nil {
			return nil, fmt.Errorf("unpacked %s payload: %w", codec, err)
		}
	}
	p.header = h.raw
	p.version = h.version
	p.cmdlineMax = uint64(h.cmdlineSize)
	p.initrdMax = uint64(h.initrdAddrMax)
	return p, nil
}

// planCompressed loads the protected-mode code at HighMemStart and enters
// its 64-bit entry; the kernel decompresses itself to
// max(align_up(load address, kernel_alignment), pref_address) and needs
// init_size bytes there (boot.rst, "init_size" and "pref_address").
func planCompressed(h *setupHeader) (*plan, error) {
	if h.xloadflags&xlfKernel64 == 0 {
		return nil, fmt.Errorf("%w: bzImage has no 64-bit entry point (XLF_KERNEL_64 not set in xloadflags %#x)", ErrUnsupported, h.xloadflags)
	}
	if !h.relocatable && h.prefAddress != 0 && h.prefAddress != HighMemStart && h.prefAddress < HighMemStart+uint64(len(h.pmCode)) {
		return nil, fmt.Errorf("%w: non-relocatable bzImage wants address %#x, which overlaps its compressed code at %#x", ErrUnsupported, h.prefAddress, HighMemStart)
	}
	end := uint64(HighMemStart) + uint64(len(h.pmCode))
	out := h.prefAddress
	if h.relocatable && h.kernelAlign != 0 && h.kernelAlign&(h.kernelAlign-1) == 0 {
		a := uint64(h.kernelAlign)
		out = max(out, (HighMemStart+a-1)&^(a-1))
	}
	if out == 0 {
		out = HighMemStart
	}
	end = max(end, out+uint64(h.initSize))
	p := &plan{
		segs:   []elfSegment{{paddr: HighMemStart, memsz: end - HighMemStart, data: h.pmCode}},
		code32: HighMemStart,
	}
	p.loaded = Loaded{
		Entry: HighMemStart + entry64Offset, Mode: Entry64, Format: "bzImage",
		KernelStart: HighMemStart, KernelEnd: end,
	}
	if uint64(len(h.pmCode)) <= entry64Offset {
		return nil, fmt.Errorf("%w: bzImage protected-mode code of %d bytes has no 64-bit entry at +0x200", ErrTruncated, len(h.pmCode))
	}
	return p, nil
}

// write performs the planned writes.
func (p *plan) write(mem io.WriterAt, cfg Config) error {
	l := &p.loaded
	for _, s := range p.segs {
		if err := writeAt(mem, s.paddr, s.data, "kernel segment"); err != nil {
			return err
		}
		// The bss part (memsz - filesz) must read as zero.
		if !cfg.GuestDecompress {
			if err := zeroAt(mem, s.paddr+uint64(len(s.data)), s.memsz-uint64(len(s.data)), "kernel bss"); err != nil {
				return err
			}
		}
	}
	if err := writeAt(mem, l.InitrdAddr, cfg.Initrd, "initrd"); err != nil {
		return err
	}
	if err := writeAt(mem, CmdlineAddr, append([]byte(cfg.Cmdline), 0), "command line"); err != nil {
		return err
	}
	if p.pvh {
		info := pvhInfo{initrdAddr: l.InitrdAddr, initrdSize: l.InitrdSize, acpiRSDP: cfg.ACPIRSDP, memory: cfg.Memory}
		if err := writeAt(mem, PVHStartInfoAddr, info.startInfo(), "PVH start info"); err != nil {
			return err
		}
		if err := writeAt(mem, PVHMemmapAddr, info.memmap(), "PVH memory map"); err != nil {
			return err
		}
		return writeAt(mem, PVHModlistAddr, info.modlist(), "PVH module list")
	}
	bp := bootParams{
		header: p.header, version: p.version,
		initrdAddr: l.InitrdAddr, initrdSize: l.InitrdSize,
		acpiRSDP: cfg.ACPIRSDP, memory: cfg.Memory, code32: p.code32,
	}
	return writeAt(mem, BootParamsAddr, bp.build(), "boot_params")
}
