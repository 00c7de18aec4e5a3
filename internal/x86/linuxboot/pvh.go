package linuxboot

import "encoding/binary"

// struct hvm_start_info, version 1 (xen/include/public/arch-x86/hvm/start_info.h).
const (
	pvhMagic          = 0x336ec578 // XEN_HVM_START_MAGIC_VALUE
	pvhVersion        = 1          // version 1 adds memmap_paddr/memmap_entries
	pvhStartInfoSize  = 56
	pvhMemmapEntrySz  = 24 // struct hvm_memmap_table_entry
	pvhModlistEntrySz = 32 // struct hvm_modlist_entry
)

// pvhInfo describes what goes into the PVH start info area.
type pvhInfo struct {
	initrdAddr, initrdSize uint64
	acpiRSDP               uint64
	memory                 []MemRegion
}

// startInfo returns struct hvm_start_info for PVHStartInfoAddr.
func (p *pvhInfo) startInfo() []byte {
	le := binary.LittleEndian
	b := make([]byte, pvhStartInfoSize)
	le.PutUint32(b[0:], pvhMagic)
	le.PutUint32(b[4:], pvhVersion)
	if p.initrdSize > 0 {
		le.PutUint32(b[12:], 1) // nr_modules
		le.PutUint64(b[16:], PVHModlistAddr)
	}
	le.PutUint64(b[24:], CmdlineAddr)
	le.PutUint64(b[32:], p.acpiRSDP)
	le.PutUint64(b[40:], PVHMemmapAddr)
	le.PutUint32(b[48:], uint32(len(p.memory)))
	return b
}

// memmap returns the hvm_memmap_table_entry array for PVHMemmapAddr. The
// entry types are the E820 ones.
func (p *pvhInfo) memmap() []byte {
	le := binary.LittleEndian
	b := make([]byte, len(p.memory)*pvhMemmapEntrySz)
	for i, r := range p.memory {
		e := b[i*pvhMemmapEntrySz:]
		le.PutUint64(e, r.Start)
		le.PutUint64(e[8:], r.Size)
		le.PutUint32(e[16:], r.Type)
	}
	return b
}

// modlist returns the hvm_modlist_entry for the initrd, or nil.
func (p *pvhInfo) modlist() []byte {
	if p.initrdSize == 0 {
		return nil
	}
	b := make([]byte, pvhModlistEntrySz)
	binary.LittleEndian.PutUint64(b, p.initrdAddr)
	binary.LittleEndian.PutUint64(b[8:], p.initrdSize)
	return b
}

// The memmap array must end before the modlist: a compile-time check.
const _ = uint(PVHModlistAddr - PVHMemmapAddr - MaxE820Entries*pvhMemmapEntrySz)
