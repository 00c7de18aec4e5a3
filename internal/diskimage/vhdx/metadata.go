package vhdx

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

const (
	metaSig        = "metadata"
	metaTableSize  = 64 * kib
	maxMetaEntries = 2047
	// Metadata entry flags ([MS-VHDX] 2.6.1.2).
	metaIsUser        = 1 << 0
	metaIsVirtualDisk = 1 << 1
	metaIsRequired    = 1 << 2
	// File Parameters flags ([MS-VHDX] 2.6.2.1).
	leaveBlocksAllocated = 1 << 0
	hasParent            = 1 << 1

	minBlockSize = 1 * mib
	maxBlockSize = 256 * mib
	// maxVirtualSize is the 64 TB limit of [MS-VHDX] 2.6.2.2.
	maxVirtualSize = 64 << 40
)

// Metadata holds the known metadata items ([MS-VHDX] 2.6.2).
type Metadata struct {
	BlockSize            uint32
	LeaveBlocksAllocated bool
	HasParent            bool
	VirtualSize          uint64
	LogicalSectorSize    uint32
	PhysicalSectorSize   uint32
	Page83               GUID
	// ParentLocator holds the key/value pairs of the parent locator item
	// of a differencing disk ([MS-VHDX] 2.6.2.6), in file order.
	ParentLocator []KeyValue
}

// KeyValue is one Parent Locator Entry's key and value ([MS-VHDX] 2.6.2.6.2).
type KeyValue struct{ Key, Value string }

type metaItem struct {
	id    GUID
	flags uint32
	data  []byte
}

func (m *Metadata) items() []metaItem {
	le := binary.LittleEndian
	fp := make([]byte, 8)
	le.PutUint32(fp, m.BlockSize)
	var flags uint32
	if m.LeaveBlocksAllocated {
		flags |= leaveBlocksAllocated
	}
	if m.HasParent {
		flags |= hasParent
	}
	le.PutUint32(fp[4:], flags)
	vs := le.AppendUint64(nil, m.VirtualSize)
	ls := le.AppendUint32(nil, m.LogicalSectorSize)
	ps := le.AppendUint32(nil, m.PhysicalSectorSize)
	items := []metaItem{
		{guidFileParams, metaIsRequired, fp},
		{guidVirtualSize, metaIsVirtualDisk | metaIsRequired, vs},
		{guidPage83, metaIsVirtualDisk | metaIsRequired, m.Page83[:]},
		{guidLogicalSect, metaIsVirtualDisk | metaIsRequired, ls},
		{guidPhysicalSect, metaIsVirtualDisk | metaIsRequired, ps},
	}
	if m.HasParent {
		items = append(items, metaItem{guidParentLocator, metaIsRequired, marshalLocator(m.ParentLocator)})
	}
	return items
}

// Marshal encodes the metadata region: the table at its start, then the
// items from offset 64 KiB (the spec requires items past the table).
func (m *Metadata) Marshal(regionLen int) []byte {
	b := make([]byte, regionLen)
	le := binary.LittleEndian
	copy(b, metaSig)
	items := m.items()
	le.PutUint16(b[10:], uint16(len(items)))
	off := metaTableSize
	for i, it := range items {
		e := 32 + 32*i
		copy(b[e:], it.id[:])
		le.PutUint32(b[e+16:], uint32(off))
		le.PutUint32(b[e+20:], uint32(len(it.data)))
		le.PutUint32(b[e+24:], it.flags)
		copy(b[off:], it.data)
		off += (len(it.data) + 7) / 8 * 8
	}
	return b
}

// ParseMetadata decodes the metadata region r and validates the items:
// block size a power of two in 1..256 MiB, sector sizes 512 or 4096,
// virtual size within 64 TB and a multiple of the logical sector size.
// Unknown items marked required are refused, as the spec demands.
func ParseMetadata(r []byte) (*Metadata, error) {
	if len(r) < metaTableSize || !bytes.HasPrefix(r, []byte(metaSig)) {
		return nil, fmt.Errorf("%w: no metadata table signature", ErrBadMetadata)
	}
	le := binary.LittleEndian
	n := int(le.Uint16(r[10:]))
	if n > maxMetaEntries {
		return nil, fmt.Errorf("%w: %d entries", ErrBadMetadata, n)
	}
	m := &Metadata{}
	seen := map[GUID]bool{}
	for i := 0; i < n; i++ {
		e := 32 + 32*i
		var id GUID
		copy(id[:], r[e:])
		off, length, flags := le.Uint32(r[e+16:]), le.Uint32(r[e+20:]), le.Uint32(r[e+24:])
		if length == 0 {
			continue
		}
		if off < metaTableSize || uint64(off)+uint64(length) > uint64(len(r)) {
			return nil, fmt.Errorf("%w: item %d at %#x+%#x outside the region", ErrBadMetadata, i, off, length)
		}
		d := r[off : off+length]
		need := func(k uint32) error {
			if length < k {
				return fmt.Errorf("%w: item %d is %d bytes, want %d", ErrBadMetadata, i, length, k)
			}
			return nil
		}
		var err error
		switch id {
		case guidFileParams:
			if err = need(8); err == nil {
				m.BlockSize = le.Uint32(d)
				m.LeaveBlocksAllocated = le.Uint32(d[4:])&leaveBlocksAllocated != 0
				m.HasParent = le.Uint32(d[4:])&hasParent != 0
			}
		case guidVirtualSize:
			if err = need(8); err == nil {
				m.VirtualSize = le.Uint64(d)
			}
		case guidLogicalSect:
			if err = need(4); err == nil {
				m.LogicalSectorSize = le.Uint32(d)
			}
		case guidPhysicalSect:
			if err = need(4); err == nil {
				m.PhysicalSectorSize = le.Uint32(d)
			}
		case guidPage83:
			if err = need(16); err == nil {
				copy(m.Page83[:], d)
			}
		case guidParentLocator:
			m.ParentLocator, err = parseLocator(d)
		default:
			if flags&metaIsRequired != 0 {
				return nil, fmt.Errorf("%w: unknown required metadata item", ErrBadMetadata)
			}
		}
		if err != nil {
			return nil, err
		}
		seen[id] = true
	}
	for _, id := range []GUID{guidFileParams, guidVirtualSize, guidLogicalSect, guidPhysicalSect} {
		if !seen[id] {
			return nil, fmt.Errorf("%w: a required item is missing", ErrBadMetadata)
		}
	}
	bs := m.BlockSize
	switch {
	case bs < minBlockSize || bs > maxBlockSize || bs&(bs-1) != 0:
		return nil, fmt.Errorf("%w: block size %d", ErrBadMetadata, bs)
	case m.LogicalSectorSize != 512 && m.LogicalSectorSize != 4096:
		return nil, fmt.Errorf("%w: logical sector size %d", ErrBadMetadata, m.LogicalSectorSize)
	case m.PhysicalSectorSize != 512 && m.PhysicalSectorSize != 4096:
		return nil, fmt.Errorf("%w: physical sector size %d", ErrBadMetadata, m.PhysicalSectorSize)
	case m.VirtualSize == 0 || m.VirtualSize > maxVirtualSize || m.VirtualSize%uint64(m.LogicalSectorSize) != 0:
		return nil, fmt.Errorf("%w: virtual size %d", ErrBadMetadata, m.VirtualSize)
	case m.HasParent && !seen[guidParentLocator]:
		return nil, fmt.Errorf("%w: differencing disk without a parent locator", ErrBadMetadata)
	}
	return m, nil
}

// chunkRatio is the number of payload blocks per sector bitmap block
// ([MS-VHDX] 2.5.1: 2^23 sectors covered by one bitmap block).
func (m *Metadata) chunkRatio() int64 {
	return (1 << 23) * int64(m.LogicalSectorSize) / int64(m.BlockSize)
}

// dataBlocks is the number of payload blocks.
func (m *Metadata) dataBlocks() int64 {
	return (int64(m.VirtualSize) + int64(m.BlockSize) - 1) / int64(m.BlockSize)
}

// batEntries is the BAT length in entries ([MS-VHDX] 2.5: payload entries
// interleaved with one sector bitmap entry after every chunkRatio of them;
// a differencing disk has the bitmap entry of its last, partial chunk too).
func (m *Metadata) batEntries() int64 {
	d := m.dataBlocks()
	if m.HasParent {
		chunks := (d + m.chunkRatio() - 1) / m.chunkRatio()
		return chunks * (m.chunkRatio() + 1)
	}
	return d + (d-1)/m.chunkRatio()
}
