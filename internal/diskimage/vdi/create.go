package vdi

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"

	"github.com/govisor/govisor/internal/diskimage"
)

// CreateOptions selects the kind of image Create makes.
type CreateOptions struct {
	// Fixed allocates every block at creation (VirtualBox's "fixed size",
	// QEMU's static=on); the data area is a sparse file until written.
	Fixed bool
}

// Create makes a new VDI of size bytes (rounded up to a sector) with
// VirtualBox's default 1 MiB blocks, replacing any file at path.
func Create(path string, size int64, opts CreateOptions) (*Image, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("vdi: %w", err)
	}
	img, err := create(f, size, opts)
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("vdi: create %s: %w", path, err)
	}
	return img, nil
}

// create writes a new image into the empty file f and opens it.
func create(f diskimage.File, size int64, opts CreateOptions) (*Image, error) {
	size = (size + sectorSize - 1) &^ (sectorSize - 1)
	if size < 0 || size > maxVirtualSize {
		return nil, fmt.Errorf("size %d out of range (at most %d)", size, int64(maxVirtualSize))
	}
	blocks := (size + defaultBlockSize - 1) / defaultBlockSize
	// The layout VirtualBox's vdiCreateImage uses: the block map in the
	// sector after the header, the data area aligned to VDI_DATA_ALIGN.
	mapOff := int64(sectorSize)
	dataOff := (mapOff + blocks*4 + dataAlign - 1) / dataAlign * dataAlign
	if dataOff > 0xffffffff {
		return nil, fmt.Errorf("a block map of %d entries does not fit a VDI header", blocks)
	}
	h := &Header{
		Size:           header1Plus,
		Type:           typeNormal,
		BlocksOffset:   uint32(mapOff),
		DataOffset:     uint32(dataOff),
		LegacyGeometry: Geometry{SectorSize: sectorSize},
		DiskSize:       uint64(size),
		BlockSize:      defaultBlockSize,
		Blocks:         uint32(blocks),
		LCHSGeometry:   Geometry{SectorSize: sectorSize},
	}
	newUUID(&h.UUIDCreate)
	newUUID(&h.UUIDModify)
	bmap := make([]byte, blocks*4)
	for i := range blocks {
		e := uint32(blockFree)
		if opts.Fixed {
			e = uint32(i)
		}
		binary.LittleEndian.PutUint32(bmap[i*4:], e)
	}
	end := dataOff
	if opts.Fixed {
		h.Type = typeFixed
		h.Allocated = uint32(blocks)
		end += blocks * defaultBlockSize
	}
	if _, err := f.WriteAt(h.Marshal(), 0); err != nil {
		return nil, fmt.Errorf("write header: %w", err)
	}
	if _, err := f.WriteAt(bmap, mapOff); err != nil {
		return nil, fmt.Errorf("write block map: %w", err)
	}
	if err := f.Truncate(end); err != nil {
		return nil, fmt.Errorf("size the file to %d bytes: %w", end, err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("sync: %w", err)
	}
	return openFile(f, false)
}

// newUUID fills u with a random RFC 4122 version 4 UUID, stored as
// VirtualBox's RTUUID is (the first three fields little-endian, so the
// version nibble is in byte 7).
func newUUID(u *[16]byte) {
	rand.Read(u[:])
	u[7] = u[7]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
}
