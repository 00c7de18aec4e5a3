package vmdk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/govisor/govisor/internal/diskimage"
)

// The space-efficient sparse extent ("seSparse", the -sesparse.vmdk ESXi
// 6.5+ writes for snapshots on VMFS 6 and of disks of 2 TB and more).
// VMware has not published the format; what is public is the read-only
// support in qemu's vmdk driver (block/vmdk.c, "ESXi seSparse Extent"),
// which these facts follow:
//   - a 512-byte constant header at offset 0 of 64-bit little-endian fields
//     (magic 0xcafebabe, version 0x200000001, capacity, grain size 8
//     sectors, grain table size 64 sectors, flags 0, four reserved words,
//     then offset/size pairs in sectors: volatile header, journal header,
//     journal, grain directory, grain tables, free bitmap, backmap, grains);
//   - a 512-byte volatile header (magic 0xcafecafe, free GT number, next
//     transaction sequence number, replay-journal flag);
//   - a grain directory of 64-bit entries: 0 for no table, else 0x1 in the
//     top nibble (top 32 bits 0x10000000) and the table's index in the
//     grain tables area in the low 32 bits;
//   - grain tables of 4096 64-bit entries whose top nibble says: 0
//     unallocated (the whole entry 0), 1 unmapped (SCSI UNMAP) or 2 zero
//     (both read as zeros), 3 allocated, the grain's index in the grains
//     area split as bits 48-59 (low 12 bits) and bits 0-47 (the rest).
const (
	seConstMagic     = 0xcafebabe
	seVolatileMagic  = 0xcafecafe
	seVersion        = 0x0000000200000001
	seGrainSectors   = 8
	seGTSectors      = 64 // 32 KiB: 4096 entries of 8 bytes
	seHeaderSize     = 512
	seGDAllocated    = 0x10000000 // top 32 bits of a used directory entry
	seEntryKindShift = 60
)

// seHeader holds the constant-header fields the reader uses, in sectors.
type seHeader struct {
	capacity                    uint64
	volatileOff                 uint64
	gdOff, gdSize               uint64
	gtOff, gtSize               uint64
	grainsOff, grainsSize       uint64
	version, grainSize, gtSects uint64
}

// parseSEHeader decodes and validates the constant header; like qemu it
// refuses what it was not written for (other versions, grain or table
// sizes, flags, reserved words).
func parseSEHeader(b []byte, name string) (*seHeader, error) {
	if len(b) < seHeaderSize {
		return nil, fmt.Errorf("%w: %s: %d bytes, shorter than the %d-byte seSparse header", ErrBadHeader, name, len(b), seHeaderSize)
	}
	u := func(i int) uint64 { return binary.LittleEndian.Uint64(b[i*8:]) }
	if u(0) != seConstMagic {
		return nil, fmt.Errorf("%w: %s: no seSparse magic", ErrBadHeader, name)
	}
	h := &seHeader{
		version: u(1), capacity: u(2), grainSize: u(3), gtSects: u(4),
		volatileOff: u(10),
		gdOff:       u(16), gdSize: u(17),
		gtOff: u(18), gtSize: u(19),
		grainsOff: u(24), grainsSize: u(25),
	}
	switch {
	case h.version != seVersion:
		return nil, fmt.Errorf("%w: %s: seSparse version %#x (only %#x is known)", ErrBadHeader, name, h.version, uint64(seVersion))
	case h.grainSize != seGrainSectors:
		return nil, fmt.Errorf("%w: %s: seSparse grain size %d sectors (only %d is known)", ErrBadHeader, name, h.grainSize, seGrainSectors)
	case h.gtSects != seGTSectors:
		return nil, fmt.Errorf("%w: %s: seSparse grain table size %d sectors (only %d is known)", ErrBadHeader, name, h.gtSects, seGTSectors)
	case u(5) != 0:
		return nil, fmt.Errorf("%w: %s: seSparse flags %#x (none are known)", ErrBadHeader, name, u(5))
	case u(6)|u(7)|u(8)|u(9) != 0:
		return nil, fmt.Errorf("%w: %s: seSparse reserved header words are not zero", ErrBadHeader, name)
	case h.capacity > maxSectors:
		return nil, fmt.Errorf("%w: %s: seSparse capacity %d sectors (at most %d)", ErrBadHeader, name, h.capacity, int64(maxSectors))
	}
	return h, nil
}

// sectorsAt turns a header offset in sectors into bytes, refusing one past
// the end of the file (which also keeps the product from overflowing).
func sectorsAt(field string, sectors uint64, fileSize int64, name string) (int64, error) {
	if sectors > uint64(fileSize)/sectorSize {
		return 0, fmt.Errorf("%w: %s: seSparse %s %d sectors lies past the end of the %d-byte file", ErrBadHeader, name, field, sectors, fileSize)
	}
	return int64(sectors) * sectorSize, nil
}

// openSESparse opens a seSparse extent read-only. name is its file name,
// for errors.
func openSESparse(f diskimage.File, name string) (*esxExtent, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	fileSize := st.Size()
	b := make([]byte, seHeaderSize)
	n, err := f.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: read header: %w", name, err)
	}
	h, err := parseSEHeader(b[:n], name)
	if err != nil {
		return nil, err
	}
	if err := checkSEVolatile(f, h, fileSize, name); err != nil {
		return nil, err
	}
	e := &esxExtent{
		f: f, name: name, fileSize: fileSize,
		capacity:   int64(h.capacity) * sectorSize,
		grainBytes: seGrainSectors * sectorSize,
		gtEntries:  seGTSectors * sectorSize / 8, entryBytes: 8,
	}
	e.gtCover = e.grainBytes * e.gtEntries
	gdOff, err := sectorsAt("grain directory offset", h.gdOff, fileSize, name)
	if err != nil {
		return nil, err
	}
	if h.gdSize > uint64(fileSize)/sectorSize {
		return nil, fmt.Errorf("%w: %s: seSparse grain directory size %d sectors exceeds the %d-byte file", ErrBadHeader, name, h.gdSize, fileSize)
	}
	if err := e.gdBounds("seSparse grain directory (offset, size)", gdOff, int64(h.gdSize)*sectorSize/8); err != nil {
		return nil, err
	}
	gtArea, err := sectorsAt("grain tables offset", h.gtOff, fileSize, name)
	if err != nil {
		return nil, err
	}
	grains, err := sectorsAt("grains offset", h.grainsOff, fileSize, name)
	if err != nil {
		return nil, err
	}
	// The grain tables area holds gtSize/64 tables; the grains area
	// grainsSize/8 grains (both sizes in sectors).
	maxGT, maxGrain := h.gtSize/seGTSectors, h.grainsSize/seGrainSectors
	e.gd = make([]int64, (e.capacity+e.gtCover-1)/e.gtCover)
	err = e.readGD(gdOff, func(_ int64, raw uint64) (int64, error) {
		if raw == 0 {
			return 0, nil
		}
		if raw>>32 != seGDAllocated {
			return 0, fmt.Errorf("%w: seSparse grain directory entry %#x is neither 0 nor an allocated table", diskimage.ErrCorrupt, raw)
		}
		if idx := raw & 0xffffffff; idx < maxGT {
			return gtArea + int64(idx)*seGTSectors*sectorSize, nil
		}
		return 0, fmt.Errorf("%w: seSparse grain table %d lies outside the %d-table area", diskimage.ErrCorrupt, raw&0xffffffff, maxGT)
	})
	if err != nil {
		return nil, err
	}
	e.decode = func(raw uint64) (grainKind, int64, error) {
		switch raw >> seEntryKindShift {
		case 0:
			if raw != 0 {
				return 0, 0, fmt.Errorf("%w: seSparse grain table entry %#x: unallocated with bits set", diskimage.ErrCorrupt, raw)
			}
			return grainParent, 0, nil
		case 1, 2: // unmapped, zero
			return grainZero, 0, nil
		case 3:
			idx := (raw>>48)&0xfff | (raw&0xffffffffffff)<<12
			if idx >= maxGrain || idx >= uint64(fileSize-grains+seGrainSectors*sectorSize-1)/(seGrainSectors*sectorSize) {
				return 0, 0, fmt.Errorf("%w: seSparse grain table entry %#x: grain %d lies outside the grains area or the %d-byte file", diskimage.ErrCorrupt, raw, idx, fileSize)
			}
			return grainData, grains + int64(idx)*seGrainSectors*sectorSize, nil
		}
		return 0, 0, fmt.Errorf("%w: seSparse grain table entry %#x of unknown kind %d", diskimage.ErrCorrupt, raw, raw>>seEntryKindShift)
	}
	return e, nil
}

// checkSEVolatile reads the volatile header and refuses an extent whose
// journal still needs replaying: ESXi crashed with changes only in the
// journal, which this reader (like qemu's) does not apply.
func checkSEVolatile(f diskimage.File, h *seHeader, fileSize int64, name string) error {
	off, err := sectorsAt("volatile header offset", h.volatileOff, fileSize, name)
	if err != nil {
		return err
	}
	if off > fileSize-seHeaderSize || off < seHeaderSize {
		return fmt.Errorf("%w: %s: seSparse volatile header at %#x outside the %d-byte file's body", ErrBadHeader, name, off, fileSize)
	}
	b := make([]byte, seHeaderSize)
	if _, err := f.ReadAt(b, off); err != nil {
		return fmt.Errorf("%s: read seSparse volatile header: %w", name, err)
	}
	if binary.LittleEndian.Uint64(b) != seVolatileMagic {
		return fmt.Errorf("%w: %s: no seSparse volatile header magic at %#x", ErrBadHeader, name, off)
	}
	if binary.LittleEndian.Uint64(b[24:]) != 0 {
		return fmt.Errorf("%w: %s: seSparse journal needs replaying (ESXi did not close the snapshot cleanly); consolidate or power the VM on and off in ESXi first", diskimage.ErrUnsupported, name)
	}
	return nil
}
