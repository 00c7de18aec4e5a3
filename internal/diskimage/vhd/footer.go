// Package vhd reads and writes Microsoft Virtual Hard Disk images (VHD,
// "vpc" in qemu): fixed and dynamic disks, following the "Virtual Hard Disk
// Image Format Specification" (October 2006).
package vhd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Sentinel errors of the vhd package.
var (
	ErrBadFooter   = errors.New("vhd: bad footer")
	ErrBadChecksum = errors.New("vhd: checksum mismatch")
	ErrBadHeader   = errors.New("vhd: bad dynamic disk header")
)

// Disk types (spec "Hard Disk Footer Format", field Disk Type).
const (
	TypeFixed        = 2
	TypeDynamic      = 3
	TypeDifferencing = 4
)

const (
	footerSize    = 512
	sectorSize    = 512
	cookie        = "conectix"
	noDataOffset  = ^uint64(0)
	formatVersion = 0x00010000
	// featureReserved is the Features bit the spec says must always be set.
	featureReserved = 0x2
	creatorHostWi2k = 0x5769326B // "Wi2k"
	// maxCHSSectors is 65535 cylinders * 16 heads * 255 sectors, the largest
	// geometry the footer can express (spec appendix "CHS Calculation").
	maxCHSSectors = 65535 * 16 * 255
	// MaxSize is the largest virtual size the format allows (2040 GiB, the
	// limit the spec and Hyper-V put on VHD).
	MaxSize = 2040 << 30
)

// vhdEpoch is the zero of the footer Time Stamp (spec: seconds since
// January 1, 2000 12:00:00 AM UTC).
var vhdEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// Geometry is a disk's cylinder/head/sector geometry.
type Geometry struct {
	Cylinders uint16
	Heads     uint8
	Sectors   uint8
}

// Size is the byte size the geometry addresses.
func (g Geometry) Size() int64 {
	return int64(g.Cylinders) * int64(g.Heads) * int64(g.Sectors) * sectorSize
}

// CHS computes the geometry of a disk of size bytes with the algorithm of the
// spec appendix "CHS Calculation".
func CHS(size int64) Geometry {
	total := size / sectorSize
	if total > maxCHSSectors {
		total = maxCHSSectors
	}
	var spt, heads, cth int64
	if total >= 65535*16*63 {
		spt, heads = 255, 16
		cth = total / spt
	} else {
		spt = 17
		cth = total / spt
		heads = (cth + 1023) / 1024
		if heads < 4 {
			heads = 4
		}
		if cth >= heads*1024 || heads > 16 {
			spt, heads = 31, 16
			cth = total / spt
		}
		if cth >= heads*1024 {
			spt, heads = 63, 16
			cth = total / spt
		}
	}
	return Geometry{Cylinders: uint16(cth / heads), Heads: uint8(heads), Sectors: uint8(spt)}
}

// Footer is the 512-byte "Hard Disk Footer" (spec section "Hard Disk Footer
// Format"), stored at the end of every VHD and, for dynamic disks, copied at
// offset 0.
type Footer struct {
	Features       uint32
	Version        uint32
	DataOffset     uint64
	Timestamp      uint32
	CreatorApp     [4]byte
	CreatorVersion uint32
	CreatorHostOS  uint32
	OriginalSize   uint64
	CurrentSize    uint64
	Geometry       Geometry
	DiskType       uint32
	Checksum       uint32
	UniqueID       [16]byte
	SavedState     uint8
}

// checksum is the spec's checksum: the one's complement of the byte sum of
// the structure with its checksum field taken as zero.
func checksum(b []byte, csumOff int) uint32 {
	var sum uint32
	for i, c := range b {
		if i >= csumOff && i < csumOff+4 {
			continue
		}
		sum += uint32(c)
	}
	return ^sum
}

// Marshal encodes the footer, computing its checksum.
func (f *Footer) Marshal() []byte {
	b := make([]byte, footerSize)
	be := binary.BigEndian
	copy(b[0:8], cookie)
	be.PutUint32(b[8:], f.Features)
	be.PutUint32(b[12:], f.Version)
	be.PutUint64(b[16:], f.DataOffset)
	be.PutUint32(b[24:], f.Timestamp)
	copy(b[28:32], f.CreatorApp[:])
	be.PutUint32(b[32:], f.CreatorVersion)
	be.PutUint32(b[36:], f.CreatorHostOS)
	be.PutUint64(b[40:], f.OriginalSize)
	be.PutUint64(b[48:], f.CurrentSize)
	be.PutUint16(b[56:], f.Geometry.Cylinders)
	b[58] = f.Geometry.Heads
	b[59] = f.Geometry.Sectors
	be.PutUint32(b[60:], f.DiskType)
	copy(b[68:84], f.UniqueID[:])
	b[84] = f.SavedState
	f.Checksum = checksum(b, 64)
	be.PutUint32(b[64:], f.Checksum)
	return b
}

// ParseFooter decodes and validates a footer (cookie, checksum, disk type).
func ParseFooter(b []byte) (*Footer, error) {
	if len(b) < footerSize-1 {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadFooter, len(b))
	}
	if len(b) > footerSize {
		b = b[:footerSize]
	}
	if !bytes.Equal(b[0:8], []byte(cookie)) {
		return nil, fmt.Errorf("%w: no %q cookie", ErrBadFooter, cookie)
	}
	be := binary.BigEndian
	f := &Footer{
		Features:       be.Uint32(b[8:]),
		Version:        be.Uint32(b[12:]),
		DataOffset:     be.Uint64(b[16:]),
		Timestamp:      be.Uint32(b[24:]),
		CreatorVersion: be.Uint32(b[32:]),
		CreatorHostOS:  be.Uint32(b[36:]),
		OriginalSize:   be.Uint64(b[40:]),
		CurrentSize:    be.Uint64(b[48:]),
		Geometry:       Geometry{be.Uint16(b[56:]), b[58], b[59]},
		DiskType:       be.Uint32(b[60:]),
		Checksum:       be.Uint32(b[64:]),
		SavedState:     b[84],
	}
	copy(f.CreatorApp[:], b[28:32])
	copy(f.UniqueID[:], b[68:84])
	if got := checksum(b, 64); got != f.Checksum {
		return nil, fmt.Errorf("%w: footer has %#x, computed %#x", ErrBadChecksum, f.Checksum, got)
	}
	switch f.DiskType {
	case TypeFixed, TypeDynamic, TypeDifferencing:
	default:
		return nil, fmt.Errorf("%w: disk type %d", ErrBadFooter, f.DiskType)
	}
	return f, nil
}

// VirtualSize is the guest-visible size. The footer holds two sizes: Current
// Size and the CHS geometry. Virtual PC (and qemu's legacy "qemu" creator)
// size the disk by CHS (cylinders*heads*sectors*512), while Hyper-V, Azure,
// Disk2vhd, XenServer, XenConverter and qemu's force_size "qem2" use Current
// Size. The creator app is the only hint, so we follow qemu's "vpc" driver
// and both read the same bytes: Current Size for the creators known to use
// it or when the geometry is the maximum (CHS would truncate), CHS
// otherwise. govisor writes creator "win " with Current Size exactly the
// requested size, the Hyper-V semantics Azure expects.
func (f *Footer) VirtualSize() int64 {
	g := f.Geometry
	isMax := g.Cylinders == 65535 && g.Heads == 16 && g.Sectors == 255
	switch string(f.CreatorApp[:]) {
	case "win ", "qem2", "d2v ", "tap\x00", "CTXS":
		return int64(f.CurrentSize)
	}
	if isMax {
		return int64(f.CurrentSize)
	}
	return g.Size()
}
