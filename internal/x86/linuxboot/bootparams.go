package linuxboot

import "encoding/binary"

// Offsets in struct boot_params outside the setup header
// (Documentation/arch/x86/zero-page.rst).
const (
	bpACPIRSDPAddr     = 0x070
	bpExtRamdiskImage  = 0x0c0
	bpExtRamdiskSize   = 0x0c4
	bpExtCmdLinePtr    = 0x0c8
	bpE820Entries      = 0x1e8
	bpSentinel         = 0x1ef
	bpE820Table        = 0x2d0
	e820EntrySize      = 20
	heapEndPtr         = 0xfe00 // heap_end - 0x200, as boot.rst's example layout
	minimalHdrVersion  = 0x020f
	minimalKernelAlign = 0x01000000
	normalVGA          = 0xffff // vid_mode "normal"
)

// bootParams describes what goes into the zero page.
type bootParams struct {
	header     []byte // setup header bytes from 0x1f1, nil for an ELF kernel
	version    uint16 // boot protocol version the kernel supports
	initrdAddr uint64
	initrdSize uint64
	acpiRSDP   uint64
	memory     []MemRegion
	code32     uint64 // code32_start, 0 to leave the header's value
}

// build returns the 4096-byte zero page.
func (p *bootParams) build() []byte {
	le := binary.LittleEndian
	bp := make([]byte, BootParamsSize)
	if p.header != nil {
		// boot.rst: the boot loader copies the kernel's setup header into
		// boot_params and then fills in the fields it owns.
		copy(bp[hdrSetupSects:hdrEnd], p.header)
	} else {
		// An ELF vmlinux has no setup header; the kernel still reads a few
		// fields, so give it a minimal valid one, as Firecracker does.
		le.PutUint16(bp[hdrBootFlag:], bootFlagValue)
		le.PutUint32(bp[hdrMagic:], hdrMagicValue)
		le.PutUint16(bp[hdrVersion:], minimalHdrVersion)
		le.PutUint16(bp[hdrVidMode:], normalVGA)
		le.PutUint32(bp[hdrKernelAlignment:], minimalKernelAlign)
		le.PutUint32(bp[hdrCmdlineSize:], CmdlineMax-1)
		bp[hdrLoadflags] = loadedHigh
	}
	bp[hdrTypeOfLoader] = loaderUnknown
	bp[hdrLoadflags] |= canUseHeap
	le.PutUint16(bp[hdrHeapEndPtr:], heapEndPtr)
	le.PutUint32(bp[hdrCmdLinePtr:], uint32(CmdlineAddr))
	le.PutUint32(bp[bpExtCmdLinePtr:], uint32(uint64(CmdlineAddr)>>32))
	le.PutUint32(bp[hdrRamdiskImage:], uint32(p.initrdAddr))
	le.PutUint32(bp[hdrRamdiskSize:], uint32(p.initrdSize))
	le.PutUint32(bp[bpExtRamdiskImage:], uint32(p.initrdAddr>>32))
	le.PutUint32(bp[bpExtRamdiskSize:], uint32(p.initrdSize>>32))
	if p.code32 != 0 {
		le.PutUint32(bp[hdrCode32Start:], uint32(p.code32))
	}
	// acpi_rsdp_addr exists from boot protocol 2.14 on.
	if p.acpiRSDP != 0 && (p.header == nil || p.version >= 0x020e) {
		le.PutUint64(bp[bpACPIRSDPAddr:], p.acpiRSDP)
	}
	bp[bpE820Entries] = byte(len(p.memory))
	for i, r := range p.memory {
		e := bp[bpE820Table+i*e820EntrySize:]
		le.PutUint64(e, r.Start)
		le.PutUint64(e[8:], r.Size)
		le.PutUint32(e[16:], r.Type)
	}
	bp[bpSentinel] = 0
	return bp
}
