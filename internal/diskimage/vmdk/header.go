package vmdk

import (
	"encoding/binary"
	"fmt"
)

const (
	sectorSize = 512
	magic      = 0x564d444b // "KDMV" little-endian (spec "Header")
	// maxSectors caps virtual sizes at 64 TiB (VMware's own limit is 62 TB).
	maxSectors = 64 << 40 / sectorSize
	// gdAtEnd in gdOffset means the real header is the footer (spec
	// "Stream-Optimized Compressed Sparse Extents", footer).
	gdAtEnd = ^uint64(0)

	flagNewlineTest  = 1 << 0
	flagRedundantGT  = 1 << 1
	flagZeroedGrain  = 1 << 2
	flagCompressed   = 1 << 16
	flagMarkers      = 1 << 17
	compressDeflate  = 1
	defaultGrain     = 128 // sectors: 64 KiB
	gtesPerGT        = 512
	maxGrainSectors  = 2048 // 1 MiB: VMware writes 64 KiB, qemu refuses > 128 MiB
	descriptorSecs   = 20   // room reserved for an embedded descriptor
	markerEOS        = 0
	markerGT         = 1
	markerGD         = 2
	markerFooter     = 3
	grainMarkerBytes = 12 // uint64 lba + uint32 size (spec "Grain Marker")
)

// SparseHeader is the 512-byte SparseExtentHeader at the start of hosted
// sparse extents (spec "Hosted Sparse Extent Header").
type SparseHeader struct {
	Version           uint32
	Flags             uint32
	Capacity          uint64 // sectors
	GrainSize         uint64 // sectors
	DescriptorOffset  uint64 // sectors
	DescriptorSize    uint64 // sectors
	NumGTEsPerGT      uint32
	RGDOffset         uint64 // sectors
	GDOffset          uint64 // sectors
	OverHead          uint64 // sectors
	UncleanShutdown   bool
	CompressAlgorithm uint16
}

// Marshal encodes the header with the newline-detection characters the spec
// requires ("\n", " ", "\r", "\n").
func (h *SparseHeader) Marshal() []byte {
	b := make([]byte, sectorSize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], magic)
	le.PutUint32(b[4:], h.Version)
	le.PutUint32(b[8:], h.Flags)
	le.PutUint64(b[12:], h.Capacity)
	le.PutUint64(b[20:], h.GrainSize)
	le.PutUint64(b[28:], h.DescriptorOffset)
	le.PutUint64(b[36:], h.DescriptorSize)
	le.PutUint32(b[44:], h.NumGTEsPerGT)
	le.PutUint64(b[48:], h.RGDOffset)
	le.PutUint64(b[56:], h.GDOffset)
	le.PutUint64(b[64:], h.OverHead)
	if h.UncleanShutdown {
		b[72] = 1
	}
	b[73], b[74], b[75], b[76] = '\n', ' ', '\r', '\n'
	le.PutUint16(b[77:], h.CompressAlgorithm)
	return b
}

// ParseSparseHeader decodes and validates a sparse extent header: grain
// size a power of two up to 1 MiB, at most 512 entries per grain table,
// capacity within 64 TiB, and a known compression algorithm.
func ParseSparseHeader(b []byte) (*SparseHeader, error) {
	if len(b) < sectorSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadHeader, len(b))
	}
	le := binary.LittleEndian
	if le.Uint32(b) != magic {
		return nil, fmt.Errorf("%w: no KDMV magic", ErrBadHeader)
	}
	h := &SparseHeader{
		Version:           le.Uint32(b[4:]),
		Flags:             le.Uint32(b[8:]),
		Capacity:          le.Uint64(b[12:]),
		GrainSize:         le.Uint64(b[20:]),
		DescriptorOffset:  le.Uint64(b[28:]),
		DescriptorSize:    le.Uint64(b[36:]),
		NumGTEsPerGT:      le.Uint32(b[44:]),
		RGDOffset:         le.Uint64(b[48:]),
		GDOffset:          le.Uint64(b[56:]),
		OverHead:          le.Uint64(b[64:]),
		UncleanShutdown:   b[72] != 0,
		CompressAlgorithm: le.Uint16(b[77:]),
	}
	switch {
	case h.Version < 1 || h.Version > 3:
		return nil, fmt.Errorf("%w: version %d", ErrBadHeader, h.Version)
	case h.GrainSize == 0 || h.GrainSize > maxGrainSectors || h.GrainSize&(h.GrainSize-1) != 0:
		return nil, fmt.Errorf("%w: grain size %d sectors", ErrBadHeader, h.GrainSize)
	case h.NumGTEsPerGT == 0 || h.NumGTEsPerGT > gtesPerGT:
		return nil, fmt.Errorf("%w: %d entries per grain table", ErrBadHeader, h.NumGTEsPerGT)
	case h.Capacity > maxSectors:
		return nil, fmt.Errorf("%w: capacity %d sectors", ErrBadHeader, h.Capacity)
	case h.Flags&flagCompressed != 0 && h.CompressAlgorithm != compressDeflate:
		return nil, fmt.Errorf("%w: compression algorithm %d", ErrBadHeader, h.CompressAlgorithm)
	case h.Flags&flagNewlineTest != 0 && (b[73] != '\n' || b[74] != ' ' || b[75] != '\r' || b[76] != '\n'):
		return nil, fmt.Errorf("%w: newline characters mangled (file transferred in text mode?)", ErrBadHeader)
	}
	return h, nil
}

// marker encodes a metadata marker (spec "Stream-Optimized Compressed
// Sparse Extents"): numSectors, size 0, type, padded to a sector.
func marker(numSectors uint64, typ uint32) []byte {
	b := make([]byte, sectorSize)
	binary.LittleEndian.PutUint64(b[0:], numSectors)
	binary.LittleEndian.PutUint32(b[12:], typ)
	return b
}
