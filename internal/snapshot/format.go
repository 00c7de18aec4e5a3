// Package snapshot stores a paused VM's state on disk: a versioned,
// checksummed state file of named sections (vCPUs, irqchip, devices, ...)
// plus a sparse memory file that restore maps lazily with MAP_PRIVATE.
//
// The state file ("state") is, all integers little-endian:
//
//	header:  magic "GOVISNAP" | format version uint32 | flags uint32 (0)
//	section: name length uint16 | name | section version uint32 |
//	         payload length uint64 | CRC-32C(payload) uint32 | payload
//	         ... repeated ...
//	trailer: magic "GOVIEND\x00" | section count uint32 |
//	         CRC-32C of every byte before the trailer uint32
//
// The memory index (region GPA, size and offset in the memory file) is the
// reserved section ".memory". The memory file ("memory") holds each region
// at a page-aligned offset, all-zero pages left as holes. A State is the
// same encoding held in memory. Section payloads are opaque to this
// package; Encoder/Decoder help write hand-made little-endian encodings
// (fast and strict), and each section carries its own version so that a
// device can change its state struct and still read (or clearly refuse)
// older snapshots.
package snapshot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// FormatVersion is the state-file format version this package writes and the
// newest one it reads.
const FormatVersion uint32 = 1

// PageSize is the alignment of memory regions in the memory file.
const PageSize = 4096

const (
	stateMagic   = "GOVISNAP"
	trailerMagic = "GOVIEND\x00"
	headerSize   = 16
	trailerSize  = 16
	sectionFixed = 2 + 4 + 8 + 4 // name length, version, payload length, CRC
	maxNameLen   = 255

	// memorySection is the reserved section holding the memory index.
	memorySection = ".memory"
	// memoryIndexVersion is the version of the memory index section.
	memoryIndexVersion = 1
	// maxRegions bounds the memory index (real VMs have a handful of regions).
	maxRegions = 1024
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Sentinel errors; match them with errors.Is.
var (
	// ErrBadMagic means the file is not a govisor snapshot.
	ErrBadMagic = errors.New("snapshot: not a govisor snapshot (bad magic)")
	// ErrVersion means the snapshot was written by a newer format version.
	ErrVersion = errors.New("snapshot: unsupported format version")
	// ErrCorrupt means a checksum, length or structural check failed.
	ErrCorrupt = errors.New("snapshot: corrupt snapshot")
	// ErrTruncated means the file ends before its trailer.
	ErrTruncated = errors.New("snapshot: truncated snapshot")
	// ErrNoSection is returned by Section for a name the snapshot lacks.
	ErrNoSection = errors.New("snapshot: no such section")
	// ErrNoMemory is returned by MapMemory for a snapshot without memory.
	ErrNoMemory = errors.New("snapshot: snapshot has no memory")
	// ErrBadName means a section name is empty, too long, reserved or repeated.
	ErrBadName = errors.New("snapshot: bad section name")
	// ErrStateFormat means a saved or migrated state is in an encoding
	// this govisor does not read (an older or newer govisor made it).
	ErrStateFormat = errors.New("vm: machine state in another format")
)

// section is one parsed section of the state file.
type section struct {
	name    string
	version uint32
	payload []byte
}

// memRegion is one entry of the memory index.
type memRegion struct {
	GPA, Size, Offset uint64
}

// checkName reports whether name is acceptable for a caller's section:
// 1..255 printable ASCII bytes, not starting with '.' (reserved).
func checkName(name string) error {
	if len(name) == 0 || len(name) > maxNameLen {
		return fmt.Errorf("%w: %q must be 1..%d bytes", ErrBadName, name, maxNameLen)
	}
	if name[0] == '.' {
		return fmt.Errorf("%w: %q: names starting with '.' are reserved", ErrBadName, name)
	}
	for i := 0; i < len(name); i++ {
		if name[i] < 0x21 || name[i] > 0x7e {
			return fmt.Errorf("%w: %q: only printable ASCII without spaces", ErrBadName, name)
		}
	}
	return nil
}

// appendHeader appends the state file header.
func appendHeader(b []byte, version uint32) []byte {
	b = append(b, stateMagic...)
	b = binary.LittleEndian.AppendUint32(b, version)
	return binary.LittleEndian.AppendUint32(b, 0)
}

// appendSection appends one encoded section.
func appendSection(b []byte, name string, version uint32, payload []byte) []byte {
	b = binary.LittleEndian.AppendUint16(b, uint16(len(name)))
	b = append(b, name...)
	b = binary.LittleEndian.AppendUint32(b, version)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(payload)))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(payload, castagnoli))
	return append(b, payload...)
}

// appendTrailer appends the trailer; b must hold everything before it.
func appendTrailer(b []byte, count uint32) []byte {
	sum := crc32.Checksum(b, castagnoli)
	b = append(b, trailerMagic...)
	b = binary.LittleEndian.AppendUint32(b, count)
	return binary.LittleEndian.AppendUint32(b, sum)
}

// parseState decodes a whole state file. Payloads alias data. Every length
// is checked against the bytes actually present, so a hostile file cannot
// cause an allocation larger than itself.
func parseState(data []byte) ([]section, error) {
	if len(data) < len(stateMagic) || string(data[:len(stateMagic)]) != stateMagic {
		return nil, ErrBadMagic
	}
	if len(data) < headerSize {
		return nil, fmt.Errorf("%w: %d-byte header", ErrTruncated, len(data))
	}
	if v := binary.LittleEndian.Uint32(data[8:]); v > FormatVersion || v == 0 {
		return nil, fmt.Errorf("%w: snapshot format version %d, this govisor reads versions 1 to %d",
			ErrVersion, v, FormatVersion)
	}
	if f := binary.LittleEndian.Uint32(data[12:]); f != 0 {
		return nil, fmt.Errorf("%w: unknown header flags %#x", ErrCorrupt, f)
	}
	var secs []section
	seen := map[string]bool{}
	off := headerSize
	for {
		rest := data[off:]
		if len(rest) >= len(trailerMagic) && string(rest[:len(trailerMagic)]) == trailerMagic {
			break
		}
		if len(rest) < sectionFixed {
			return nil, fmt.Errorf("%w: section header at offset %d", ErrTruncated, off)
		}
		n := int(binary.LittleEndian.Uint16(rest))
		if n == 0 || n > maxNameLen {
			return nil, fmt.Errorf("%w: section name length %d at offset %d", ErrCorrupt, n, off)
		}
		if len(rest) < sectionFixed+n {
			return nil, fmt.Errorf("%w: section name at offset %d", ErrTruncated, off)
		}
		name := string(rest[2 : 2+n])
		p := rest[2+n:]
		version := binary.LittleEndian.Uint32(p)
		length := binary.LittleEndian.Uint64(p[4:])
		sum := binary.LittleEndian.Uint32(p[12:])
		p = p[16:]
		if length > uint64(len(p)) {
			return nil, fmt.Errorf("%w: section %q claims %d bytes, %d remain", ErrTruncated, name, length, len(p))
		}
		payload := p[:length:length]
		if got := crc32.Checksum(payload, castagnoli); got != sum {
			return nil, fmt.Errorf("%w: section %q: CRC-32C mismatch (stored %#08x, computed %#08x)", ErrCorrupt, name, sum, got)
		}
		if seen[name] {
			return nil, fmt.Errorf("%w: section %q appears twice", ErrCorrupt, name)
		}
		seen[name] = true
		secs = append(secs, section{name: name, version: version, payload: payload})
		off += sectionFixed + n + int(length)
	}
	if len(data)-off < trailerSize {
		return nil, fmt.Errorf("%w: trailer at offset %d", ErrTruncated, off)
	}
	if len(data)-off > trailerSize {
		return nil, fmt.Errorf("%w: %d bytes after the trailer", ErrCorrupt, len(data)-off-trailerSize)
	}
	t := data[off:]
	if c := binary.LittleEndian.Uint32(t[8:]); c != uint32(len(secs)) {
		return nil, fmt.Errorf("%w: trailer counts %d sections, file has %d", ErrCorrupt, c, len(secs))
	}
	if sum, got := binary.LittleEndian.Uint32(t[12:]), crc32.Checksum(data[:off], castagnoli); sum != got {
		return nil, fmt.Errorf("%w: file CRC-32C mismatch (stored %#08x, computed %#08x)", ErrCorrupt, sum, got)
	}
	return secs, nil
}

// encodeIndex encodes the memory index section payload.
func encodeIndex(regs []memRegion, fileSize uint64) []byte {
	b := binary.LittleEndian.AppendUint64(nil, fileSize)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(regs)))
	for _, r := range regs {
		b = binary.LittleEndian.AppendUint64(b, r.GPA)
		b = binary.LittleEndian.AppendUint64(b, r.Size)
		b = binary.LittleEndian.AppendUint64(b, r.Offset)
	}
	return b
}

// decodeIndex decodes and validates the memory index: page-aligned,
// non-empty, non-overlapping regions inside a memory file of fileSize bytes.
func decodeIndex(p []byte) (regs []memRegion, fileSize uint64, err error) {
	if len(p) < 12 {
		return nil, 0, fmt.Errorf("%w: memory index is %d bytes", ErrCorrupt, len(p))
	}
	fileSize = binary.LittleEndian.Uint64(p)
	n := binary.LittleEndian.Uint32(p[8:])
	p = p[12:]
	if n > maxRegions || uint64(len(p)) != uint64(n)*24 {
		return nil, 0, fmt.Errorf("%w: memory index of %d regions in %d bytes", ErrCorrupt, n, len(p))
	}
	const maxInt = int(^uint(0) >> 1)
	for i := uint32(0); i < n; i++ {
		r := memRegion{
			GPA:    binary.LittleEndian.Uint64(p[i*24:]),
			Size:   binary.LittleEndian.Uint64(p[i*24+8:]),
			Offset: binary.LittleEndian.Uint64(p[i*24+16:]),
		}
		switch {
		case r.Size == 0 || r.Size%PageSize != 0 || r.GPA%PageSize != 0 || r.Offset%PageSize != 0:
			return nil, 0, fmt.Errorf("%w: memory region %d (%#x+%#x at %#x) is not page-aligned", ErrCorrupt, i, r.GPA, r.Size, r.Offset)
		case r.GPA+r.Size < r.GPA || r.Offset+r.Size < r.Offset || r.Offset+r.Size > fileSize || r.Size > uint64(maxInt):
			return nil, 0, fmt.Errorf("%w: memory region %d (%#x+%#x at %#x) exceeds the %d-byte memory file", ErrCorrupt, i, r.GPA, r.Size, r.Offset, fileSize)
		}
		for _, q := range regs {
			if r.GPA < q.GPA+q.Size && q.GPA < r.GPA+r.Size {
				return nil, 0, fmt.Errorf("%w: memory regions at %#x and %#x overlap", ErrCorrupt, q.GPA, r.GPA)
			}
			if r.Offset < q.Offset+q.Size && q.Offset < r.Offset+r.Size {
				return nil, 0, fmt.Errorf("%w: memory regions at file offsets %#x and %#x overlap", ErrCorrupt, q.Offset, r.Offset)
			}
		}
		regs = append(regs, r)
	}
	return regs, fileSize, nil
}
