package kvmtest

import "encoding/binary"

// PVHELF wraps 32-bit code in a minimal ELF64 executable that loads it at
// addr and names addr as its PVH entry (a Xen ELF note of type 18,
// XEN_ELFNOTE_PHYS32_ENTRY), so that govisor (--boot pvh) and QEMU (-kernel)
// boot the same test guest the same way.
func PVHELF(code []byte, addr uint64) []byte {
	const (
		ehsize   = 64
		phsize   = 56
		noteOff  = ehsize + 2*phsize
		noteSize = 12 + 4 + 8
		codeOff  = 0x1000
	)
	f := make([]byte, codeOff+len(code))
	copy(f, []byte{0x7F, 'E', 'L', 'F', 2, 1, 1})
	le := binary.LittleEndian
	le.PutUint16(f[16:], 2)  // ET_EXEC
	le.PutUint16(f[18:], 62) // EM_X86_64
	le.PutUint32(f[20:], 1)
	le.PutUint64(f[24:], addr) // e_entry
	le.PutUint64(f[32:], ehsize)
	le.PutUint16(f[52:], ehsize)
	le.PutUint16(f[54:], phsize)
	le.PutUint16(f[56:], 2)
	le.PutUint16(f[58:], 64)
	ph := func(i int, typ, flags uint32, off, vaddr, size, align uint64) {
		p := f[ehsize+i*phsize:]
		le.PutUint32(p[0:], typ)
		le.PutUint32(p[4:], flags)
		le.PutUint64(p[8:], off)
		le.PutUint64(p[16:], vaddr)
		le.PutUint64(p[24:], vaddr)
		le.PutUint64(p[32:], size)
		le.PutUint64(p[40:], size)
		le.PutUint64(p[48:], align)
	}
	ph(0, 1, 7, codeOff, addr, uint64(len(code)), 0x1000) // PT_LOAD, RWX
	ph(1, 4, 4, noteOff, 0, noteSize, 4)                  // PT_NOTE
	n := f[noteOff:]
	le.PutUint32(n[0:], 4)  // namesz
	le.PutUint32(n[4:], 8)  // descsz
	le.PutUint32(n[8:], 18) // XEN_ELFNOTE_PHYS32_ENTRY
	copy(n[12:], "Xen\x00")
	le.PutUint64(n[16:], addr)
	copy(f[codeOff:], code)
	return f
}

// MarkerGuest is 32-bit protected-mode code (the PVH entry state) that
// prints marker on COM1 and writes 0 to the debug-exit port 0xF4. The
// instruction encodings used by Print and Exit are the same in 32-bit mode.
func MarkerGuest(marker string) []byte {
	var a Asm
	a.Print(marker).Exit(0)
	return a.B
}
