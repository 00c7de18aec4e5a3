// Package linuxboot loads a Linux kernel (bzImage or ELF vmlinux) and its
// initrd into guest memory and fills the boot structures the kernel reads at
// entry: the zero page (struct boot_params) of the Linux x86 boot protocol
// (Documentation/arch/x86/boot.rst) or the hvm_start_info of the PVH boot ABI
// (xen/include/public/arch-x86/hvm/start_info.h).
//
// The package is pure: guest memory is an io.WriterAt addressed by
// guest-physical address, so it is tested without KVM. Every offset and size
// read from a kernel image is bounds-checked; images are untrusted input.
package linuxboot

import "errors"

// Fixed low-memory layout shared with the VMM. The VMM owns this map; the
// loader writes only to the areas named here, to the kernel's own segments
// and to the initrd.
const (
	// PVHStartInfoAddr is the GPA of struct hvm_start_info (PVH boot).
	PVHStartInfoAddr = 0x6000
	// PVHMemmapAddr is the GPA of the hvm_memmap_table_entry array.
	PVHMemmapAddr = 0x6040
	// PVHModlistAddr is the GPA of the hvm_modlist_entry array (the initrd).
	PVHModlistAddr = 0x6F00
	// BootParamsAddr is the GPA of the zero page (struct boot_params).
	BootParamsAddr = 0x7000
	// BootParamsSize is the size of struct boot_params.
	BootParamsSize = 0x1000
	// CmdlineAddr is the GPA of the NUL-terminated kernel command line.
	CmdlineAddr = 0x20000
	// CmdlineMax is the size of the command-line area, terminator included.
	CmdlineMax = 0x10000
	// HighMemStart is where a bzImage's protected-mode code is loaded.
	HighMemStart = 0x100000
)

// E820 memory types (boot_params.e820_table[].type, ACPI address range types).
const (
	// E820RAM is usable RAM.
	E820RAM = 1
	// E820Reserved is memory the OS must not use.
	E820Reserved = 2
	// E820ACPI is ACPI tables, reclaimable once parsed.
	E820ACPI = 3
)

// MaxE820Entries is the capacity of boot_params.e820_table
// (E820_MAX_ENTRIES_ZEROPAGE).
const MaxE820Entries = 128

// MaxUnpackedSize bounds the size of a decompressed kernel payload, so a
// hostile image cannot make the host allocate without limit. Distribution
// kernels unpack to well under 100 MiB.
const MaxUnpackedSize = 256 << 20

// MemRegion is one entry of the guest's physical memory map.
type MemRegion struct {
	Start, Size uint64
	Type        uint32 // E820RAM, E820Reserved, E820ACPI, ...
}

// End returns the first address after the region (saturating).
func (r MemRegion) End() uint64 {
	e := r.Start + r.Size
	if e < r.Start {
		return ^uint64(0)
	}
	return e
}

// Config describes what to load.
type Config struct {
	Kernel          []byte      // bzImage or ELF vmlinux
	Initrd          []byte      // may be nil
	Cmdline         string      // kernel command line, without terminator
	Memory          []MemRegion // the guest's e820 map (RAM and reserved regions)
	GuestDecompress bool        // bzImage only: load the compressed kernel, let the guest decompress it
	ACPIRSDP        uint64      // if non-zero: boot_params.acpi_rsdp_addr and PVH rsdp_paddr
	// PreferPVH selects the PVH entry (EntryPVH) when the kernel ELF carries
	// a XEN_ELFNOTE_PHYS32_ENTRY note; it is an error if it has none.
	PreferPVH bool
}

// EntryMode says how the vCPU must be set up to enter the kernel.
type EntryMode int

const (
	// Entry64 is 64-bit long mode with identity paging, RSI = BootParamsAddr
	// (boot.rst "64-bit BOOT PROTOCOL").
	Entry64 EntryMode = iota
	// EntryPVH is 32-bit protected mode, paging off, EBX = PVHStartInfoAddr
	// (Xen PVH boot ABI, docs/misc/pvh.pandoc).
	EntryPVH
)

// String names the entry mode.
func (m EntryMode) String() string {
	switch m {
	case Entry64:
		return "64-bit"
	case EntryPVH:
		return "pvh"
	}
	return "unknown"
}

// Loaded reports where things were placed and how to enter the kernel.
type Loaded struct {
	Entry                  uint64    // GPA of the first kernel instruction
	Mode                   EntryMode // CPU mode at Entry
	KernelStart, KernelEnd uint64    // GPA range the kernel occupies, including bss/init space
	InitrdAddr, InitrdSize uint64    // zero size when there is no initrd
	Format                 string    // "bzImage", "bzImage+unpacked(lz4)", "elf", "elf+pvh", ...
}

// Sentinel errors, matched with errors.Is.
var (
	// ErrNotKernel means the image is neither a bzImage nor an ELF vmlinux.
	ErrNotKernel = errors.New("linuxboot: not a Linux kernel image (bzImage or ELF vmlinux)")
	// ErrTruncated means an offset or size in the image points past its end.
	ErrTruncated = errors.New("linuxboot: truncated image")
	// ErrUnsupported means a valid image uses something this loader cannot do.
	ErrUnsupported = errors.New("linuxboot: unsupported")
	// ErrNoFit means something does not fit in guest memory.
	ErrNoFit = errors.New("linuxboot: does not fit in guest memory")
	// ErrCmdline means the command line is too long.
	ErrCmdline = errors.New("linuxboot: command line too long")
)
