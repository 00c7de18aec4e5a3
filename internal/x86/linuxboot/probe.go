package linuxboot

import (
	"bytes"
	"errors"
	"fmt"
)

// KernelInfo describes a kernel image without loading it.
type KernelInfo struct {
	Format        string // "bzImage" or "elf"
	Protocol      uint16 // boot protocol version, e.g. 0x020f (bzImage only)
	Version       string // kernel version string from the setup header (bzImage only)
	Compression   string // codec of the bzImage payload ("lz4", "zstd", ...), "" if unknown
	Kernel64      bool   // a 64-bit entry point exists
	Relocatable   bool   // bzImage relocatable_kernel
	CmdlineSize   uint32 // longest command line the kernel accepts (bzImage cmdline_size)
	PayloadLength uint32 // size of the compressed payload (bzImage)
	InitSize      uint32 // memory the kernel needs from its load address while booting (bzImage)
	PrefAddress   uint64 // preferred load address (bzImage)
	UnpackedSize  int    // size of the unpacked bzImage payload, 0 if not unpacked
	Entry         uint64 // e_entry of the ELF (for a bzImage: of the vmlinux inside)
	HasPVH        bool   // the ELF has a XEN_ELFNOTE_PHYS32_ENTRY note
	PVHEntry      uint64 // that note's 32-bit physical entry point
}

// ProtocolString formats the boot protocol version as "2.15" ("" for ELF).
func (k KernelInfo) ProtocolString() string {
	if k.Protocol == 0 {
		return ""
	}
	return fmt.Sprintf("%d.%02d", k.Protocol>>8, k.Protocol&0xff)
}

// Probe identifies a kernel image: its format, boot protocol version,
// payload compression and PVH entry. For a bzImage whose payload codec is
// supported it unpacks the payload to read the vmlinux's entry points; a
// payload that fails to unpack is an error, an unsupported codec is not
// (the guest can still decompress it).
func Probe(kernel []byte) (KernelInfo, error) {
	switch {
	case isBzImage(kernel):
		h, err := parseSetupHeader(kernel)
		if err != nil {
			return KernelInfo{}, err
		}
		k := KernelInfo{
			Format: "bzImage", Protocol: h.version, Version: h.kernelVersion,
			Kernel64: h.xloadflags&xlfKernel64 != 0, Relocatable: h.relocatable,
			CmdlineSize: h.cmdlineSize, PayloadLength: h.payloadLength,
			InitSize: h.initSize, PrefAddress: h.prefAddress,
		}
		payload, err := h.payload()
		if err != nil {
			return k, nil // protocol < 2.08: only guest decompression
		}
		k.Compression = DetectCodec(payload)
		vmlinux, codec, err := Unpack(payload)
		if errors.Is(err, ErrUnsupported) {
			return k, nil
		}
		if err != nil {
			return KernelInfo{}, err
		}
		e, err := parseELF(vmlinux)
		if err != nil {
			return KernelInfo{}, fmt.Errorf("unpacked %s payload: %w", codec, err)
		}
		k.UnpackedSize = len(vmlinux)
		k.Entry, k.HasPVH, k.PVHEntry = e.entry, e.hasPVH, e.pvhEntry
		return k, nil
	case isELF(kernel):
		e, err := parseELF(kernel)
		if err != nil {
			return KernelInfo{}, err
		}
		return KernelInfo{Format: "elf", Kernel64: true, Entry: e.entry, HasPVH: e.hasPVH, PVHEntry: e.pvhEntry}, nil
	}
	return KernelInfo{}, fmt.Errorf("%w: %s", ErrNotKernel, describe(kernel))
}

// describe says in a few words what a file that is not a kernel looks like.
func describe(b []byte) string {
	if len(b) == 0 {
		return "empty file"
	}
	if c := DetectCodec(b); c != "" {
		return fmt.Sprintf("%s-compressed data (decompress it first, or give the bzImage)", c)
	}
	switch {
	case bytes.HasPrefix(b, []byte("MZ")):
		return "a PE/COFF (MZ) file without a Linux setup header"
	case bytes.HasPrefix(b, []byte("#!")):
		return "a script"
	case bytes.HasPrefix(b, []byte("070701")) || bytes.HasPrefix(b, []byte("070702")):
		return "a cpio archive (an initramfs? give it as the initrd)"
	case len(b) >= 0x43a && b[0x438] == 0x53 && b[0x439] == 0xef:
		return "an ext2/3/4 file system image (give it as a disk)"
	case bytes.HasPrefix(b, []byte("QFI\xfb")):
		return "a qcow2 disk image"
	}
	n := min(len(b), 8)
	return fmt.Sprintf("%d bytes starting % x", len(b), b[:n])
}
