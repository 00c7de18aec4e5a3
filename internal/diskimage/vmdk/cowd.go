package vmdk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/govisor/govisor/internal/diskimage"
)

// The ESX Server sparse extent ("COWD", the -delta.vmdk of a vmfsSparse
// snapshot), after VMware's "Virtual Disk Format 1.1", section "ESX Server
// Sparse Extents" (and "ESXi Host Sparse Extents" in Virtual Disk Format
// 5.0): a 2048-byte COWDisk_Header, then a grain directory of 32-bit sector
// offsets of grain tables, each of 4096 32-bit sector offsets of grains.
const (
	cowdMagic      = "COWD"
	cowdHeaderSize = 2048
	cowdVersion    = 1
	cowdGTEntries  = 4096
	// cowdMaxGDEntries bounds the directory as qemu does (32 Mi entries):
	// far beyond the 2 TiB a 32-bit numSectors can describe.
	cowdMaxGDEntries = 32 << 20
)

// cowdHeader holds the COWDisk_Header fields the reader uses (spec "ESX
// Server Sparse Extent Header"); the union of root geometry and child
// parent name, the generation, name and description fields follow
// freeSector and are not needed: the descriptor names the parent.
type cowdHeader struct {
	version, flags  uint32
	numSectors      uint32 // capacity in sectors
	grainSize       uint32 // sectors
	gdOffset        uint32 // sectors
	numGDEntries    uint32
	freeSector      uint32
	uncleanShutdown bool
}

// parseCOWDHeader decodes and validates a COWDisk_Header. name is the
// extent file, for errors.
func parseCOWDHeader(b []byte, name string) (*cowdHeader, error) {
	if len(b) < cowdHeaderSize {
		return nil, fmt.Errorf("%w: %s: %d bytes, shorter than the %d-byte COWD header", ErrBadHeader, name, len(b), cowdHeaderSize)
	}
	if string(b[:4]) != cowdMagic {
		return nil, fmt.Errorf("%w: %s: no COWD magic", ErrBadHeader, name)
	}
	le := binary.LittleEndian
	h := &cowdHeader{
		version: le.Uint32(b[4:]), flags: le.Uint32(b[8:]),
		numSectors: le.Uint32(b[12:]), grainSize: le.Uint32(b[16:]),
		gdOffset: le.Uint32(b[20:]), numGDEntries: le.Uint32(b[24:]), freeSector: le.Uint32(b[28:]),
		// uncleanShutdown follows the 1028-byte union, generation, the
		// 60-byte name, the 512-byte description, savedGeneration and
		// 8 reserved bytes.
		uncleanShutdown: le.Uint32(b[1648:]) != 0,
	}
	switch {
	case h.version != cowdVersion:
		return nil, fmt.Errorf("%w: %s: COWD version %d (only version %d, ESX's, is known)", ErrBadHeader, name, h.version, cowdVersion)
	case h.grainSize == 0 || h.grainSize > maxGrainSectors:
		return nil, fmt.Errorf("%w: %s: COWD grainSize %d sectors (want 1 to %d)", ErrBadHeader, name, h.grainSize, maxGrainSectors)
	case h.numGDEntries > cowdMaxGDEntries:
		return nil, fmt.Errorf("%w: %s: COWD numGDEntries %d (at most %d)", ErrBadHeader, name, h.numGDEntries, cowdMaxGDEntries)
	case uint64(h.gdOffset)*sectorSize < cowdHeaderSize:
		return nil, fmt.Errorf("%w: %s: COWD gdOffset %d lies inside the header", ErrBadHeader, name, h.gdOffset)
	}
	return h, nil
}

// openCOWD opens a COWD extent read-only. name is its file name, for errors.
func openCOWD(f diskimage.File, name string) (*esxExtent, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	b := make([]byte, cowdHeaderSize)
	n, err := f.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: read header: %w", name, err)
	}
	h, err := parseCOWDHeader(b[:n], name)
	if err != nil {
		return nil, err
	}
	e := &esxExtent{
		f: f, name: name, fileSize: st.Size(),
		capacity:   int64(h.numSectors) * sectorSize,
		grainBytes: int64(h.grainSize) * sectorSize,
		gtEntries:  cowdGTEntries, entryBytes: 4,
		dirty: h.uncleanShutdown,
	}
	e.gtCover = e.grainBytes * e.gtEntries
	e.decode = e.decodeCOWD
	gdOff := int64(h.gdOffset) * sectorSize
	if err := e.gdBounds("COWD grain directory (gdOffset, numGDEntries)", gdOff, int64(h.numGDEntries)); err != nil {
		return nil, err
	}
	e.gd = make([]int64, (e.capacity+e.gtCover-1)/e.gtCover)
	// A directory entry is the sector of a grain table; 0: none yet.
	err = e.readGD(gdOff, func(_ int64, raw uint64) (int64, error) { return int64(raw) * sectorSize, nil })
	if err != nil {
		return nil, err
	}
	return e, nil
}

// decodeCOWD maps a COWD grain table entry: the grain's sector, or 0 for a
// grain not in this extent (spec "ESX Server Sparse Extents": a child's
// unallocated grain is read from its parent). COWD has no zeroed-grain
// entry; qemu reads the entry the same way.
func (e *esxExtent) decodeCOWD(raw uint64) (grainKind, int64, error) {
	if raw == 0 {
		return grainParent, 0, nil
	}
	at := int64(raw) * sectorSize
	if at >= e.fileSize {
		return 0, 0, fmt.Errorf("%w: grain table entry: grain at sector %d lies past the end of the %d-byte file", diskimage.ErrCorrupt, raw, e.fileSize)
	}
	return grainData, at, nil
}
