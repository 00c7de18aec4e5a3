// Package vdi reads, writes and creates VirtualBox VDI disk images
// (dynamic and fixed), following the layout VirtualBox defines in
// src/VBox/Storage/VDICore.h: the pre-header (VDIPREHEADER), the version 1.1
// header (VDIHEADER1PLUS) and the block map, the same structures QEMU's
// block/vdi.c reads and writes.
package vdi

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/govisor/govisor/internal/diskimage"
)

// Layout constants from VDICore.h.
const (
	preHeaderSize = 72         // VDIPREHEADER: szFileInfo[64], u32Signature, u32Version
	signature     = 0xbeda107f // VDI_IMAGE_SIGNATURE
	version11     = 0x00010001 // VDI_IMAGE_VERSION (major 1, minor 1)
	header1Size   = 384        // sizeof(VDIHEADER1): what QEMU writes
	header1Plus   = 400        // sizeof(VDIHEADER1PLUS): VDIHEADER1 + LCHS geometry
	sectorSize    = 512

	typeNormal = 1 // VDI_IMAGE_TYPE_NORMAL: dynamic, blocks allocated on write
	typeFixed  = 2 // VDI_IMAGE_TYPE_FIXED: every block allocated at creation
	typeUndo   = 3 // VDI_IMAGE_TYPE_UNDO
	typeDiff   = 4 // VDI_IMAGE_TYPE_DIFF: a differencing image

	blockFree = 0xffffffff // VDI_IMAGE_BLOCK_FREE: not allocated, reads as zeros
	blockZero = 0xfffffffe // VDI_IMAGE_BLOCK_ZERO: allocated as "all zeros", no data

	// defaultBlockSize is VirtualBox's VDI_IMAGE_DEFAULT_BLOCK_SIZE, the
	// only block size QEMU accepts.
	defaultBlockSize = 1 << 20
	// dataAlign is where VirtualBox starts the data area (VDI_DATA_ALIGN),
	// so blocks stay aligned for the host's storage.
	dataAlign = 1 << 20
	// maxVirtualSize bounds what Open and Create accept (QEMU's limit is
	// 0x3fffffff 1 MiB blocks, just under 1 PiB).
	maxVirtualSize = 1 << 50
)

// fileInfo is the text VirtualBox writes at the start of a VDI (QEMU writes
// its own; neither is checked on open).
const fileInfo = "<<< Oracle VM VirtualBox Disk Image >>>\n"

// Errors Open reports.
var (
	ErrBadSignature = errors.New("vdi: no VDI signature")
	ErrBadHeader    = errors.New("vdi: bad header")
)

// Geometry is VDIDISKGEOMETRY: cylinders, heads, sectors and sector size.
type Geometry struct {
	Cylinders, Heads, Sectors, SectorSize uint32
}

// Header is the version 1.1 VDI header (VDIHEADER1PLUS) that follows the
// 72-byte pre-header. Offsets are from the start of the file.
type Header struct {
	Size           uint32 // cbHeader: 384 (QEMU) or 400 (VirtualBox)
	Type           uint32 // typeNormal, typeFixed, ...
	Flags          uint32
	Comment        [256]byte
	BlocksOffset   uint32 // offBlocks: where the block map starts
	DataOffset     uint32 // offData: where block 0 starts
	LegacyGeometry Geometry
	DiskSize       uint64 // cbDisk: the virtual size
	BlockSize      uint32 // cbBlock
	BlockExtra     uint32 // cbBlockExtra: per-block prefix, unused by VirtualBox and QEMU
	Blocks         uint32 // cBlocks: entries in the block map
	Allocated      uint32 // cBlocksAllocated
	UUIDCreate     [16]byte
	UUIDModify     [16]byte
	UUIDLinkage    [16]byte // the parent's UUIDCreate, for differencing images
	UUIDParentMod  [16]byte
	LCHSGeometry   Geometry // VDIHEADER1PLUS only
}

// Marshal encodes the pre-header and the header: the first 512 bytes of the file.
func (h *Header) Marshal() []byte {
	b := make([]byte, sectorSize)
	le := binary.LittleEndian
	copy(b, fileInfo)
	le.PutUint32(b[64:], signature)
	le.PutUint32(b[68:], version11)
	p := b[preHeaderSize:]
	le.PutUint32(p[0:], h.Size)
	le.PutUint32(p[4:], h.Type)
	le.PutUint32(p[8:], h.Flags)
	copy(p[12:268], h.Comment[:])
	le.PutUint32(p[268:], h.BlocksOffset)
	le.PutUint32(p[272:], h.DataOffset)
	putGeometry(p[276:], h.LegacyGeometry)
	// p[292:296] is u32Dummy, formerly the translation mode.
	le.PutUint64(p[296:], h.DiskSize)
	le.PutUint32(p[304:], h.BlockSize)
	le.PutUint32(p[308:], h.BlockExtra)
	le.PutUint32(p[312:], h.Blocks)
	le.PutUint32(p[316:], h.Allocated)
	copy(p[320:], h.UUIDCreate[:])
	copy(p[336:], h.UUIDModify[:])
	copy(p[352:], h.UUIDLinkage[:])
	copy(p[368:], h.UUIDParentMod[:])
	if h.Size >= header1Plus {
		putGeometry(p[384:], h.LCHSGeometry)
	}
	return b
}

func putGeometry(b []byte, g Geometry) {
	le := binary.LittleEndian
	le.PutUint32(b[0:], g.Cylinders)
	le.PutUint32(b[4:], g.Heads)
	le.PutUint32(b[8:], g.Sectors)
	le.PutUint32(b[12:], g.SectorSize)
}

func getGeometry(b []byte) Geometry {
	le := binary.LittleEndian
	return Geometry{le.Uint32(b[0:]), le.Uint32(b[4:]), le.Uint32(b[8:]), le.Uint32(b[12:])}
}

// Probe reports whether header starts with a VDI pre-header (VDIPREHEADER):
// the signature at offset 64, whatever the informational text before it.
func Probe(header []byte) bool {
	return len(header) >= preHeaderSize && binary.LittleEndian.Uint32(header[64:]) == signature
}

// ParseHeader decodes the first 512 bytes of a VDI file and checks what
// the block map and data layout depend on; the file-size checks are Open's.
func ParseHeader(b []byte) (*Header, error) {
	if !Probe(b) {
		return nil, ErrBadSignature
	}
	if len(b) < preHeaderSize+header1Size {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadHeader, len(b))
	}
	le := binary.LittleEndian
	// VDICore.h: major version 0 headers (VDIHEADER0) predate VirtualBox 1.x;
	// only major 1 is read, as VirtualBox's vdiOpenImage and QEMU do.
	if v := le.Uint32(b[68:]); v>>16 != 1 {
		return nil, fmt.Errorf("%w: version %d.%d (want 1.x)", diskimage.ErrUnsupported, v>>16, v&0xffff)
	}
	p := b[preHeaderSize:]
	h := &Header{
		Size:           le.Uint32(p[0:]),
		Type:           le.Uint32(p[4:]),
		Flags:          le.Uint32(p[8:]),
		BlocksOffset:   le.Uint32(p[268:]),
		DataOffset:     le.Uint32(p[272:]),
		LegacyGeometry: getGeometry(p[276:]),
		DiskSize:       le.Uint64(p[296:]),
		BlockSize:      le.Uint32(p[304:]),
		BlockExtra:     le.Uint32(p[308:]),
		Blocks:         le.Uint32(p[312:]),
		Allocated:      le.Uint32(p[316:]),
	}
	copy(h.Comment[:], p[12:268])
	copy(h.UUIDCreate[:], p[320:])
	copy(h.UUIDModify[:], p[336:])
	copy(h.UUIDLinkage[:], p[352:])
	copy(h.UUIDParentMod[:], p[368:])
	if h.Size >= header1Plus && len(b) >= preHeaderSize+header1Plus {
		h.LCHSGeometry = getGeometry(p[384:])
	}
	return h, h.validate()
}

func (h *Header) validate() error {
	if h.Size < header1Size {
		return fmt.Errorf("%w: header size %d (want at least %d)", ErrBadHeader, h.Size, header1Size)
	}
	switch h.Type {
	case typeNormal, typeFixed, typeDiff:
		// A differencing image opens only with its parent (OpenDiff).
	case typeUndo:
		return fmt.Errorf("%w: VDI undo image", diskimage.ErrUnsupported)
	default:
		return fmt.Errorf("%w: image type %d", ErrBadHeader, h.Type)
	}
	bs := h.BlockSize
	if bs < sectorSize || bs > 256<<20 || bs&(bs-1) != 0 {
		return fmt.Errorf("%w: block size %d", ErrBadHeader, bs)
	}
	if h.BlockExtra != 0 {
		return fmt.Errorf("%w: %d extra bytes per block", diskimage.ErrUnsupported, h.BlockExtra)
	}
	if h.DiskSize > maxVirtualSize || h.DiskSize > uint64(h.Blocks)*uint64(bs) {
		return fmt.Errorf("%w: disk of %d bytes in %d blocks of %d", ErrBadHeader, h.DiskSize, h.Blocks, bs)
	}
	if h.BlocksOffset < preHeaderSize+header1Size || h.BlocksOffset%sectorSize != 0 || h.DataOffset%sectorSize != 0 {
		return fmt.Errorf("%w: block map at %#x, data at %#x", ErrBadHeader, h.BlocksOffset, h.DataOffset)
	}
	if uint64(h.BlocksOffset)+uint64(h.Blocks)*4 > uint64(h.DataOffset) {
		return fmt.Errorf("%w: block map of %d entries at %#x runs into the data at %#x", ErrBadHeader, h.Blocks, h.BlocksOffset, h.DataOffset)
	}
	return nil
}
