package linuxboot

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// ELF64 constants (System V gABI, "ELF Header" and "Program Header").
const (
	elfHeaderSize = 64
	elfPhdrSize   = 56
	elfShdrSize   = 64
	elfClass64    = 2
	elfDataLSB    = 1
	elfTypeExec   = 2
	elfMachineX86 = 62 // EM_X86_64
	ptLoad        = 1
	ptNote        = 4
	shtNote       = 7
	// xenElfnotePhys32Entry is XEN_ELFNOTE_PHYS32_ENTRY
	// (xen/include/public/elfnote.h): the 32-bit physical PVH entry point.
	xenElfnotePhys32Entry = 18
	maxNotesScanned       = 4096
)

var elfMagic = []byte{0x7f, 'E', 'L', 'F'}

// elfSegment is one PT_LOAD segment.
type elfSegment struct {
	paddr uint64
	memsz uint64
	data  []byte // the file part (filesz bytes); the rest is bss
}

// elfKernel is a parsed vmlinux.
type elfKernel struct {
	entry    uint64
	segs     []elfSegment
	pvhEntry uint64
	hasPVH   bool
}

func isELF(img []byte) bool { return bytes.HasPrefix(img, elfMagic) }

// parseELF validates an x86-64 vmlinux and extracts its loadable segments
// and PVH note. Trailing data (relocations after vmlinux.bin) is ignored.
func parseELF(img []byte) (*elfKernel, error) {
	if !isELF(img) {
		return nil, fmt.Errorf("%w: no ELF magic", ErrNotKernel)
	}
	if len(img) < elfHeaderSize {
		return nil, fmt.Errorf("%w: ELF header needs %d bytes, file has %d", ErrTruncated, elfHeaderSize, len(img))
	}
	if img[4] != elfClass64 {
		return nil, fmt.Errorf("%w: ELF class %d is not ELF64; only x86-64 kernels are supported", ErrUnsupported, img[4])
	}
	if img[5] != elfDataLSB {
		return nil, fmt.Errorf("%w: big-endian ELF", ErrUnsupported)
	}
	le := binary.LittleEndian
	if m := le.Uint16(img[18:]); m != elfMachineX86 {
		return nil, fmt.Errorf("%w: ELF machine %d is not x86-64 (62)", ErrUnsupported, m)
	}
	if t := le.Uint16(img[16:]); t != elfTypeExec {
		return nil, fmt.Errorf("%w: ELF type %d is not an executable (ET_EXEC); a vmlinux is ET_EXEC", ErrUnsupported, t)
	}
	k := &elfKernel{entry: le.Uint64(img[24:])}
	phoff, phentsize, phnum := le.Uint64(img[32:]), uint64(le.Uint16(img[54:])), uint64(le.Uint16(img[56:]))
	if phnum == 0 {
		return nil, fmt.Errorf("%w: ELF has no program headers", ErrNotKernel)
	}
	if phentsize != elfPhdrSize {
		return nil, fmt.Errorf("%w: ELF program header size %d, want %d", ErrNotKernel, phentsize, elfPhdrSize)
	}
	if phoff > uint64(len(img)) || phnum*elfPhdrSize > uint64(len(img))-phoff {
		return nil, fmt.Errorf("%w: ELF program headers [%#x, +%d*%d) past end of %d-byte file", ErrTruncated, phoff, phnum, elfPhdrSize, len(img))
	}
	for i := uint64(0); i < phnum; i++ {
		ph := img[phoff+i*elfPhdrSize:][:elfPhdrSize]
		typ := le.Uint32(ph)
		off, paddr := le.Uint64(ph[8:]), le.Uint64(ph[24:])
		filesz, memsz := le.Uint64(ph[32:]), le.Uint64(ph[40:])
		if typ != ptLoad && typ != ptNote {
			continue
		}
		if off > uint64(len(img)) || filesz > uint64(len(img))-off {
			return nil, fmt.Errorf("%w: ELF segment %d file range [%#x, +%#x) past end of %d-byte file", ErrTruncated, i, off, filesz, len(img))
		}
		data := img[off : off+filesz]
		if typ == ptNote {
			if e, ok := findPVHNote(data); ok && !k.hasPVH {
				k.pvhEntry, k.hasPVH = e, true
			}
			continue
		}
		if filesz > memsz {
			return nil, fmt.Errorf("%w: ELF segment %d has filesz %#x > memsz %#x", ErrNotKernel, i, filesz, memsz)
		}
		if paddr+memsz < paddr {
			return nil, fmt.Errorf("%w: ELF segment %d [%#x, +%#x) wraps around", ErrNotKernel, i, paddr, memsz)
		}
		if memsz == 0 {
			continue
		}
		k.segs = append(k.segs, elfSegment{paddr: paddr, memsz: memsz, data: data})
	}
	if len(k.segs) == 0 {
		return nil, fmt.Errorf("%w: ELF has no loadable segments", ErrNotKernel)
	}
	for i, a := range k.segs {
		for _, b := range k.segs[i+1:] {
			if a.paddr < b.paddr+b.memsz && b.paddr < a.paddr+a.memsz {
				return nil, fmt.Errorf("%w: ELF segments [%#x, +%#x) and [%#x, +%#x) overlap", ErrNotKernel, a.paddr, a.memsz, b.paddr, b.memsz)
			}
		}
	}
	if !k.hasPVH {
		k.pvhEntry, k.hasPVH = findPVHInSections(img)
	}
	return k, nil
}

// findPVHInSections looks for the PVH note in SHT_NOTE sections, for images
// whose notes are not covered by a PT_NOTE segment.
func findPVHInSections(img []byte) (uint64, bool) {
	le := binary.LittleEndian
	shoff, shentsize, shnum := le.Uint64(img[40:]), uint64(le.Uint16(img[58:])), uint64(le.Uint16(img[60:]))
	if shentsize != elfShdrSize || shoff > uint64(len(img)) || shnum*elfShdrSize > uint64(len(img))-shoff {
		return 0, false
	}
	for i := uint64(0); i < shnum; i++ {
		sh := img[shoff+i*elfShdrSize:][:elfShdrSize]
		if le.Uint32(sh[4:]) != shtNote {
			continue
		}
		off, size := le.Uint64(sh[24:]), le.Uint64(sh[32:])
		if off > uint64(len(img)) || size > uint64(len(img))-off {
			continue
		}
		if e, ok := findPVHNote(img[off : off+size]); ok {
			return e, true
		}
	}
	return 0, false
}

// findPVHNote scans ELF notes (namesz, descsz, type, name, desc; each padded
// to 4 bytes) for XEN_ELFNOTE_PHYS32_ENTRY owned by "Xen". Linux emits its
// descriptor with _ASM_PTR, so it is 8 bytes on x86-64; 4 is accepted too.
func findPVHNote(notes []byte) (uint64, bool) {
	le := binary.LittleEndian
	pos := uint64(0)
	n := uint64(len(notes))
	for i := 0; i < maxNotesScanned && pos+12 <= n; i++ {
		namesz, descsz, typ := uint64(le.Uint32(notes[pos:])), uint64(le.Uint32(notes[pos+4:])), le.Uint32(notes[pos+8:])
		nameOff := pos + 12
		descOff := nameOff + (namesz+3)&^3
		next := descOff + (descsz+3)&^3
		if descOff > n || next > n || descOff+descsz > n {
			return 0, false
		}
		name := notes[nameOff : nameOff+namesz]
		if typ == xenElfnotePhys32Entry && string(bytes.TrimRight(name, "\x00")) == "Xen" {
			desc := notes[descOff : descOff+descsz]
			switch {
			case descsz == 4:
				return uint64(le.Uint32(desc)), true
			case descsz == 8 && le.Uint64(desc) <= 0xffffffff:
				return le.Uint64(desc), true
			}
		}
		pos = next
	}
	return 0, false
}
