// Package vhdx reads and writes Microsoft VHDX images, following the
// [MS-VHDX] specification v1.0: both headers, region tables, metadata, BAT,
// fixed and dynamic disks, and log replay on open.
package vhdx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Sentinel errors of the vhdx package.
var (
	ErrBadSignature = errors.New("vhdx: bad file type identifier")
	ErrNoHeader     = errors.New("vhdx: no valid header")
	ErrBadRegion    = errors.New("vhdx: bad region table")
	ErrBadMetadata  = errors.New("vhdx: bad metadata")
	ErrBadLog       = errors.New("vhdx: bad log")
)

const (
	kib = 1 << 10
	mib = 1 << 20

	fileIDSig    = "vhdxfile"
	header1Off   = 64 * kib
	header2Off   = 128 * kib
	headerSize   = 4 * kib
	region1Off   = 192 * kib
	region2Off   = 256 * kib
	regionSize   = 64 * kib
	headerSig    = 0x64616568 // "head"
	regionSig    = 0x69676572 // "regi"
	maxRegions   = 2047
	maxLogLength = 16 * mib // real logs are 1 MiB; refuse anything absurd
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32c is the CRC-32C (Castagnoli) checksum [MS-VHDX] uses everywhere,
// computed over b with the 4-byte checksum field at csumOff taken as zero.
func crc32c(b []byte, csumOff int) uint32 {
	c := crc32.Update(0, castagnoli, b[:csumOff])
	c = crc32.Update(c, castagnoli, []byte{0, 0, 0, 0})
	return crc32.Update(c, castagnoli, b[csumOff+4:])
}

// GUID is a GUID in the on-disk (little-endian Data1..Data3) byte order.
type GUID [16]byte

// parseGUID turns "8B7CA206-4790-4B9A-B8FE-575F050F886E" into on-disk
// bytes; it is only used on the constants below.
func parseGUID(s string) GUID {
	var g GUID
	var raw []byte
	for i := 0; i < len(s); i++ {
		if s[i] == '-' {
			continue
		}
		var v byte
		fmt.Sscanf(s[i:i+2], "%02x", &v)
		raw = append(raw, v)
		i++
	}
	// Data1 (4 bytes), Data2, Data3 (2 bytes) are little-endian.
	g[0], g[1], g[2], g[3] = raw[3], raw[2], raw[1], raw[0]
	g[4], g[5] = raw[5], raw[4]
	g[6], g[7] = raw[7], raw[6]
	copy(g[8:], raw[8:16])
	return g
}

// Well-known GUIDs ([MS-VHDX] 2.2.3.1 regions, 2.6.2 metadata items).
var (
	guidBAT           = parseGUID("2DC27766-F623-4200-9D64-115E9BFD4A08")
	guidMetadata      = parseGUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")
	guidFileParams    = parseGUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
	guidVirtualSize   = parseGUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
	guidPage83        = parseGUID("BECA12AB-B2E6-4523-93EF-C309E000C746")
	guidLogicalSect   = parseGUID("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
	guidPhysicalSect  = parseGUID("CDA348C7-445D-4471-9CC9-E9885251C556")
	guidParentLocator = parseGUID("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
)

// Header is the 4 KiB VHDX header ([MS-VHDX] 2.2.2); the file holds two and
// the valid one with the highest SequenceNumber is current.
type Header struct {
	SequenceNumber uint64
	FileWriteGUID  GUID
	DataWriteGUID  GUID
	LogGUID        GUID
	LogVersion     uint16
	Version        uint16
	LogLength      uint32
	LogOffset      uint64
}

// Marshal encodes the header with its CRC-32C.
func (h *Header) Marshal() []byte {
	b := make([]byte, headerSize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], headerSig)
	le.PutUint64(b[8:], h.SequenceNumber)
	copy(b[16:], h.FileWriteGUID[:])
	copy(b[32:], h.DataWriteGUID[:])
	copy(b[48:], h.LogGUID[:])
	le.PutUint16(b[64:], h.LogVersion)
	le.PutUint16(b[66:], h.Version)
	le.PutUint32(b[68:], h.LogLength)
	le.PutUint64(b[72:], h.LogOffset)
	le.PutUint32(b[4:], crc32c(b, 4))
	return b
}

// ParseHeader decodes a header, checking signature, CRC-32C and version.
func ParseHeader(b []byte) (*Header, error) {
	if len(b) < headerSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrNoHeader, len(b))
	}
	b = b[:headerSize]
	le := binary.LittleEndian
	if le.Uint32(b) != headerSig {
		return nil, fmt.Errorf("%w: signature %#x", ErrNoHeader, le.Uint32(b))
	}
	if got, want := crc32c(b, 4), le.Uint32(b[4:]); got != want {
		return nil, fmt.Errorf("%w: checksum %#x, computed %#x", ErrNoHeader, want, got)
	}
	h := &Header{
		SequenceNumber: le.Uint64(b[8:]),
		LogVersion:     le.Uint16(b[64:]),
		Version:        le.Uint16(b[66:]),
		LogLength:      le.Uint32(b[68:]),
		LogOffset:      le.Uint64(b[72:]),
	}
	copy(h.FileWriteGUID[:], b[16:])
	copy(h.DataWriteGUID[:], b[32:])
	copy(h.LogGUID[:], b[48:])
	if h.Version != 1 {
		return nil, fmt.Errorf("%w: version %d", ErrNoHeader, h.Version)
	}
	return h, nil
}

// pickHeader returns the current header of the two ([MS-VHDX] 2.2.2.1: the
// valid one with the larger sequence number) and its slot (0 or 1).
func pickHeader(h1, h2 []byte) (*Header, int, error) {
	a, errA := ParseHeader(h1)
	b, errB := ParseHeader(h2)
	switch {
	case errA != nil && errB != nil:
		return nil, 0, fmt.Errorf("%w: header 1: %v; header 2: %v", ErrNoHeader, errA, errB)
	case errB != nil || (errA == nil && a.SequenceNumber >= b.SequenceNumber):
		return a, 0, nil
	default:
		return b, 1, nil
	}
}

// RegionEntry is one region table entry ([MS-VHDX] 2.2.3.2).
type RegionEntry struct {
	GUID       GUID
	FileOffset uint64
	Length     uint32
	Required   bool
}

// marshalRegionTable encodes a 64 KiB region table with its CRC-32C.
func marshalRegionTable(entries []RegionEntry) []byte {
	b := make([]byte, regionSize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], regionSig)
	le.PutUint32(b[8:], uint32(len(entries)))
	for i, e := range entries {
		o := 16 + 32*i
		copy(b[o:], e.GUID[:])
		le.PutUint64(b[o+16:], e.FileOffset)
		le.PutUint32(b[o+24:], e.Length)
		if e.Required {
			le.PutUint32(b[o+28:], 1)
		}
	}
	le.PutUint32(b[4:], crc32c(b, 4))
	return b
}

// ParseRegionTable decodes a region table, checking signature, CRC-32C,
// entry count, and that every region is 1 MiB aligned and inside fileSize.
func ParseRegionTable(b []byte, fileSize int64) ([]RegionEntry, error) {
	if len(b) < regionSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadRegion, len(b))
	}
	b = b[:regionSize]
	le := binary.LittleEndian
	if le.Uint32(b) != regionSig {
		return nil, fmt.Errorf("%w: signature %#x", ErrBadRegion, le.Uint32(b))
	}
	if got, want := crc32c(b, 4), le.Uint32(b[4:]); got != want {
		return nil, fmt.Errorf("%w: checksum %#x, computed %#x", ErrBadRegion, want, got)
	}
	n := le.Uint32(b[8:])
	if n > maxRegions {
		return nil, fmt.Errorf("%w: %d entries", ErrBadRegion, n)
	}
	var out []RegionEntry
	for i := 0; i < int(n); i++ {
		o := 16 + 32*i
		var e RegionEntry
		copy(e.GUID[:], b[o:])
		e.FileOffset = le.Uint64(b[o+16:])
		e.Length = le.Uint32(b[o+24:])
		e.Required = le.Uint32(b[o+28:])&1 != 0
		if e.FileOffset%mib != 0 || e.FileOffset < mib || e.Length%mib != 0 ||
			e.FileOffset > uint64(fileSize) || uint64(e.Length) > uint64(fileSize)-e.FileOffset {
			return nil, fmt.Errorf("%w: region at %#x+%#x in a %d-byte file", ErrBadRegion, e.FileOffset, e.Length, fileSize)
		}
		out = append(out, e)
	}
	return out, nil
}

// checkFileID checks the file type identifier ([MS-VHDX] 2.2.1).
func checkFileID(b []byte) error {
	if !bytes.HasPrefix(b, []byte(fileIDSig)) {
		return ErrBadSignature
	}
	return nil
}
