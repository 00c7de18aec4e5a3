package linuxboot

import (
	"encoding/binary"
	"fmt"
	"testing"
)

// fakeMem is sparse guest memory backed by 4 KiB pages. Writes outside RAM
// regions are refused; bytes never written read as 0xAA, so tests can tell
// "zeroed" from "untouched".
type fakeMem struct {
	ram    []MemRegion
	pages  map[uint64]*[pageSize]byte
	writes int
}

func newFakeMem(regions []MemRegion) *fakeMem {
	m := &fakeMem{pages: map[uint64]*[pageSize]byte{}}
	for _, r := range regions {
		if r.Type == E820RAM {
			m.ram = append(m.ram, r)
		}
	}
	return m
}

func (m *fakeMem) inRAM(a uint64) bool {
	for _, r := range m.ram {
		if r.Start <= a && a < r.Start+r.Size {
			return true
		}
	}
	return false
}

func (m *fakeMem) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("fakeMem: negative offset %d", off)
	}
	a := uint64(off)
	// Every byte must be in RAM; walk region by region.
	for cur, end := a, a+uint64(len(p)); cur < end; {
		if !m.inRAM(cur) {
			return 0, fmt.Errorf("fakeMem: write of %d bytes at %#x leaves RAM at %#x", len(p), a, cur)
		}
		for _, r := range m.ram {
			if r.Start <= cur && cur < r.Start+r.Size {
				cur = r.Start + r.Size
				break
			}
		}
	}
	m.writes++
	for done := 0; done < len(p); {
		addr := a + uint64(done)
		done += copy(m.page(addr)[addr%pageSize:], p[done:])
	}
	return len(p), nil
}

func (m *fakeMem) page(a uint64) *[pageSize]byte {
	pg := m.pages[a/pageSize]
	if pg == nil {
		pg = new([pageSize]byte)
		for i := range pg {
			pg[i] = 0xAA
		}
		m.pages[a/pageSize] = pg
	}
	return pg
}

func (m *fakeMem) read(a, n uint64) []byte {
	out := make([]byte, n)
	for i := range out {
		if pg := m.pages[(a+uint64(i))/pageSize]; pg != nil {
			out[i] = pg[(a+uint64(i))%pageSize]
		} else {
			out[i] = 0xAA
		}
	}
	return out
}

func (m *fakeMem) u8(a uint64) uint8   { return m.read(a, 1)[0] }
func (m *fakeMem) u16(a uint64) uint16 { return binary.LittleEndian.Uint16(m.read(a, 2)) }
func (m *fakeMem) u32(a uint64) uint32 { return binary.LittleEndian.Uint32(m.read(a, 4)) }
func (m *fakeMem) u64(a uint64) uint64 { return binary.LittleEndian.Uint64(m.read(a, 8)) }

// stdMemory is a typical small guest: low RAM, EBDA and BIOS area reserved,
// 64 MiB of RAM from 1 MiB.
func stdMemory() []MemRegion {
	return []MemRegion{
		{Start: 0, Size: 0x9FC00, Type: E820RAM},
		{Start: 0x9FC00, Size: 0x400, Type: E820Reserved},
		{Start: 0xE0000, Size: 0x20000, Type: E820ACPI},
		{Start: 0x100000, Size: 63 << 20, Type: E820RAM},
	}
}

// testSeg is one PT_LOAD segment for buildELF.
type testSeg struct {
	paddr uint64
	data  []byte
	memsz uint64
}

// elfOpts describes a synthetic ELF64 vmlinux.
type elfOpts struct {
	entry       uint64
	segs        []testSeg
	note        []byte // contents of a PT_NOTE segment, if any
	sectionNote []byte // contents of an SHT_NOTE section (no PT_NOTE), if any
	class       byte   // default ELFCLASS64
	machine     uint16 // default EM_X86_64
}

// buildELF lays out: ELF header, program headers, section headers, data.
func buildELF(o elfOpts) []byte {
	le := binary.LittleEndian
	nph := len(o.segs)
	if o.note != nil {
		nph++
	}
	nsh := 0
	if o.sectionNote != nil {
		nsh = 2 // null section + the note
	}
	dataOff := uint64(elfHeaderSize + nph*elfPhdrSize + nsh*elfShdrSize)
	img := make([]byte, dataOff)
	copy(img, elfMagic)
	img[4], img[5], img[6] = elfClass64, elfDataLSB, 1
	if o.class != 0 {
		img[4] = o.class
	}
	machine := uint16(elfMachineX86)
	if o.machine != 0 {
		machine = o.machine
	}
	le.PutUint16(img[16:], elfTypeExec)
	le.PutUint16(img[18:], machine)
	le.PutUint32(img[20:], 1)
	le.PutUint64(img[24:], o.entry)
	le.PutUint64(img[32:], elfHeaderSize)
	le.PutUint16(img[52:], elfHeaderSize)
	le.PutUint16(img[54:], elfPhdrSize)
	le.PutUint16(img[56:], uint16(nph))
	if nsh > 0 {
		le.PutUint64(img[40:], uint64(elfHeaderSize+nph*elfPhdrSize))
		le.PutUint16(img[58:], elfShdrSize)
		le.PutUint16(img[60:], uint16(nsh))
	}
	ph := elfHeaderSize
	addPhdr := func(typ uint32, paddr uint64, data []byte, memsz uint64) {
		off := uint64(len(img))
		img = append(img, data...)
		h := img[ph:]
		le.PutUint32(h, typ)
		le.PutUint32(h[4:], 7)
		le.PutUint64(h[8:], off)
		le.PutUint64(h[16:], paddr+0xffffffff80000000)
		le.PutUint64(h[24:], paddr)
		le.PutUint64(h[32:], uint64(len(data)))
		le.PutUint64(h[40:], memsz)
		le.PutUint64(h[48:], 0x1000)
		ph += elfPhdrSize
	}
	for _, s := range o.segs {
		addPhdr(ptLoad, s.paddr, s.data, s.memsz)
	}
	if o.note != nil {
		addPhdr(ptNote, 0, o.note, uint64(len(o.note)))
	}
	if nsh > 0 {
		off := uint64(len(img))
		img = append(img, o.sectionNote...)
		sh := img[elfHeaderSize+nph*elfPhdrSize+elfShdrSize:]
		le.PutUint32(sh[4:], shtNote)
		le.PutUint64(sh[24:], off)
		le.PutUint64(sh[32:], uint64(len(o.sectionNote)))
	}
	return img
}

// elfNote encodes one ELF note.
func elfNote(name string, typ uint32, desc []byte) []byte {
	le := binary.LittleEndian
	var b []byte
	b = le.AppendUint32(b, uint32(len(name)+1))
	b = le.AppendUint32(b, uint32(len(desc)))
	b = le.AppendUint32(b, typ)
	b = append(b, name...)
	b = append(b, 0)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	b = append(b, desc...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// pvhNote is Linux's PVH note: "Xen", type 18, an 8-byte (_ASM_PTR) entry.
func pvhNote(entry uint64) []byte {
	return elfNote("Xen", xenElfnotePhys32Entry, binary.LittleEndian.AppendUint64(nil, entry))
}

// sampleKernelELF is a vmlinux-like ELF: text at 16 MiB, data with bss after.
func sampleKernelELF(note []byte) []byte {
	text := make([]byte, 0x3000)
	for i := range text {
		text[i] = byte(i*7 + 1)
	}
	data := []byte("kernel data segment")
	return buildELF(elfOpts{
		entry: 0x1000000,
		segs: []testSeg{
			{paddr: 0x1000000, data: text, memsz: uint64(len(text))},
			{paddr: 0x1200000, data: data, memsz: 0x5000},
		},
		note: note,
	})
}

// bzOpts describes a synthetic bzImage.
type bzOpts struct {
	version     uint16 // default 0x020f
	setupSects  byte   // default 4 (0 is written as 0 when zeroSects)
	zeroSects   bool
	payload     []byte // placed at payloadOffset inside the protected-mode code
	xloadflags  uint16 // default XLF_KERNEL_64|XLF_CAN_BE_LOADED_ABOVE_4G
	cmdlineSize uint32 // default 2047
	initrdMax   uint32 // default 0x7fffffff
	initSize    uint32
	prefAddress uint64 // default 0x1000000
	versionStr  string
}

const testPayloadOffset = 0x300

// buildBzImage lays out a boot sector + setup sectors with the header, then
// the protected-mode code: 0x300 bytes of "code" and the payload.
func buildBzImage(o bzOpts) []byte {
	le := binary.LittleEndian
	if o.version == 0 {
		o.version = 0x020f
	}
	if o.setupSects == 0 && !o.zeroSects {
		o.setupSects = 4
	}
	if o.xloadflags == 0 {
		o.xloadflags = xlfKernel64 | xlfAbove4G
	}
	if o.cmdlineSize == 0 {
		o.cmdlineSize = 2047
	}
	if o.initrdMax == 0 {
		o.initrdMax = 0x7fffffff
	}
	if o.prefAddress == 0 {
		o.prefAddress = 0x1000000
	}
	sects := int(o.setupSects)
	if sects == 0 {
		sects = 4
	}
	img := make([]byte, (sects+1)*512)
	img[hdrSetupSects] = o.setupSects
	le.PutUint16(img[hdrVidMode:], 0xffff)
	le.PutUint16(img[hdrBootFlag:], bootFlagValue)
	img[hdrJump] = 0xeb
	img[hdrJump+1] = byte(0x26c - hdrMagic) // header ends at 0x26c (protocol 2.15)
	le.PutUint32(img[hdrMagic:], hdrMagicValue)
	le.PutUint16(img[hdrVersion:], o.version)
	if o.versionStr != "" {
		copy(img[0x400:], o.versionStr+"\x00")
		le.PutUint16(img[hdrKernelVersion:], 0x400-0x200)
	}
	img[hdrLoadflags] = loadedHigh
	le.PutUint32(img[hdrCode32Start:], 0x100000)
	le.PutUint32(img[hdrInitrdAddrMax:], o.initrdMax)
	le.PutUint32(img[hdrKernelAlignment:], 0x200000)
	img[hdrRelocatable] = 1
	img[hdrMinAlignment] = 21
	le.PutUint16(img[hdrXLoadflags:], o.xloadflags)
	le.PutUint32(img[hdrCmdlineSize:], o.cmdlineSize)
	le.PutUint32(img[hdrPayloadOffset:], testPayloadOffset)
	le.PutUint32(img[hdrPayloadLength:], uint32(len(o.payload)))
	le.PutUint64(img[hdrPrefAddress:], o.prefAddress)
	le.PutUint32(img[hdrInitSize:], o.initSize)
	pm := make([]byte, testPayloadOffset)
	for i := range pm {
		pm[i] = 0x90 // nop sled standing in for the decompressor
	}
	img = append(img, pm...)
	return append(img, o.payload...)
}

// mustLoad runs Load and fails the test on error.
func mustLoad(t *testing.T, cfg Config) (*Loaded, *fakeMem) {
	t.Helper()
	mem := newFakeMem(cfg.Memory)
	l, err := Load(mem, cfg)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return l, mem
}
