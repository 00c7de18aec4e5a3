package vhd

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

const (
	dynHeaderSize   = 1024
	dynCookie       = "cxsparse"
	unusedBATEntry  = 0xFFFFFFFF
	defaultBlockSz  = 2 << 20
	maxBlockSize    = 256 << 20
	dynHeaderVerion = 0x00010000
)

// DynamicHeader is the 1024-byte "Dynamic Disk Header" (spec section
// "Dynamic Disk Header Format") that dynamic and differencing disks keep at
// the footer's Data Offset.
type DynamicHeader struct {
	DataOffset      uint64
	TableOffset     uint64
	HeaderVersion   uint32
	MaxTableEntries uint32
	BlockSize       uint32
	Checksum        uint32
	ParentUniqueID  [16]byte
	ParentTimestamp uint32
	// ParentName is the parent's file name (spec: Parent Unicode Name,
	// UTF-16 big-endian); differencing disks only.
	ParentName string
	// Locators are the Parent Locator Entries; differencing disks only.
	Locators [8]Locator
}

// Marshal encodes the header, computing its checksum.
func (h *DynamicHeader) Marshal() []byte {
	b := make([]byte, dynHeaderSize)
	be := binary.BigEndian
	copy(b[0:8], dynCookie)
	be.PutUint64(b[8:], h.DataOffset)
	be.PutUint64(b[16:], h.TableOffset)
	be.PutUint32(b[24:], h.HeaderVersion)
	be.PutUint32(b[28:], h.MaxTableEntries)
	be.PutUint32(b[32:], h.BlockSize)
	copy(b[40:56], h.ParentUniqueID[:])
	be.PutUint32(b[56:], h.ParentTimestamp)
	putUTF16(b[64:576], h.ParentName, binary.BigEndian)
	for i, l := range h.Locators {
		l.marshal(b[576+24*i:])
	}
	h.Checksum = checksum(b, 36)
	be.PutUint32(b[36:], h.Checksum)
	return b
}

// ParseDynamicHeader decodes and validates a dynamic disk header: cookie,
// checksum, and a block size that is a power of two sectors no larger than
// 256 MiB (the spec fixes 2 MiB as the default; absurd values are refused so
// no allocation is driven by them).
func ParseDynamicHeader(b []byte) (*DynamicHeader, error) {
	if len(b) < dynHeaderSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadHeader, len(b))
	}
	if !bytes.Equal(b[0:8], []byte(dynCookie)) {
		return nil, fmt.Errorf("%w: no %q cookie", ErrBadHeader, dynCookie)
	}
	be := binary.BigEndian
	h := &DynamicHeader{
		DataOffset:      be.Uint64(b[8:]),
		TableOffset:     be.Uint64(b[16:]),
		HeaderVersion:   be.Uint32(b[24:]),
		MaxTableEntries: be.Uint32(b[28:]),
		BlockSize:       be.Uint32(b[32:]),
		Checksum:        be.Uint32(b[36:]),
		ParentTimestamp: be.Uint32(b[56:]),
	}
	copy(h.ParentUniqueID[:], b[40:56])
	h.ParentName = getUTF16(b[64:576], binary.BigEndian)
	for i := range h.Locators {
		h.Locators[i] = parseLocator(b[576+24*i:])
	}
	if got := checksum(b[:dynHeaderSize], 36); got != h.Checksum {
		return nil, fmt.Errorf("%w: dynamic header has %#x, computed %#x", ErrBadChecksum, h.Checksum, got)
	}
	bs := h.BlockSize
	if bs < sectorSize || bs > maxBlockSize || bs&(bs-1) != 0 {
		return nil, fmt.Errorf("%w: block size %d", ErrBadHeader, bs)
	}
	if h.TableOffset%sectorSize != 0 || h.TableOffset > 1<<50 {
		return nil, fmt.Errorf("%w: BAT offset %#x", ErrBadHeader, h.TableOffset)
	}
	return h, nil
}

// bitmapSize is the size of a block's sector bitmap, padded to a sector
// boundary (spec "Block Allocation Table and Data Blocks").
func bitmapSize(blockSize uint32) int64 {
	bits := int64(blockSize) / sectorSize
	bytes := (bits + 7) / 8
	return (bytes + sectorSize - 1) / sectorSize * sectorSize
}
