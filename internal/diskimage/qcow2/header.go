package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Layout constants from qemu docs/interop/qcow2.txt, "Header".
const (
	magic            = 0x514649fb // "QFI\xfb"
	v2HeaderLen      = 72
	v3HeaderLen      = 104
	minClusterBits   = 9
	maxClusterBits   = 21
	maxL1Bytes       = 32 << 20 // qemu's QCOW_MAX_L1_SIZE
	maxRefTableBytes = 8 << 20  // qemu's QCOW_MAX_REFTABLE_SIZE
	maxBackingName   = 1023
	maxVirtualSize   = 1 << 61

	// Incompatible feature bits ("incompatible_features").
	incDirty       = 1 << 0
	incCorrupt     = 1 << 1
	incDataFile    = 1 << 2
	incCompression = 1 << 3
	incExtL2       = 1 << 4
	incKnown       = incDirty | incCorrupt | incDataFile | incCompression | incExtL2

	// Compatible feature bits: bit 0 is lazy refcounts.
	compatLazyRefcounts = 1 << 0

	// Header extension types ("Header extensions").
	extEnd          = 0x00000000
	extBackingFmt   = 0xe2792aca
	extFeatureNames = 0x6803f857
	extBitmaps      = 0x23852875
	extEncryption   = 0x0537be77
	extDataFile     = 0x44415441

	// Header field offsets we update in place.
	offSize      = 24
	offL1        = 36 // l1_size (4) then l1_table_offset (8)
	offRefTable  = 48 // refcount_table_offset (8) then clusters (4)
	offIncompat  = 72
	offAutoclear = 88
)

// ErrBadHeader reports a qcow2 header that is malformed.
var ErrBadHeader = errors.New("qcow2: invalid header")

// header is the parsed image header and its extensions.
type header struct {
	version         uint32
	backingOff      uint64
	backingSize     uint32
	clusterBits     uint32
	size            uint64
	cryptMethod     uint32
	l1Size          uint32
	l1Off           uint64
	rtOff           uint64
	rtClusters      uint32
	nbSnapshots     uint32
	snapOff         uint64
	incompat        uint64
	compat          uint64
	autoclear       uint64
	refcountOrder   uint32
	headerLen       uint32
	compressionType uint8

	backingFile   string
	backingFormat string
	featureNames  map[[2]byte]string // (type, bit) -> name
	hasBitmaps    bool
}

// parseHeader decodes the header from buf, which holds the start of the
// file (at least the first cluster, or the whole file if shorter).
func parseHeader(buf []byte, fileSize int64) (*header, error) {
	if len(buf) < v2HeaderLen {
		return nil, fmt.Errorf("%w: file too short", ErrBadHeader)
	}
	be := binary.BigEndian
	if be.Uint32(buf) != magic {
		return nil, fmt.Errorf("%w: bad magic", ErrBadHeader)
	}
	h := &header{
		version:       be.Uint32(buf[4:]),
		backingOff:    be.Uint64(buf[8:]),
		backingSize:   be.Uint32(buf[16:]),
		clusterBits:   be.Uint32(buf[20:]),
		size:          be.Uint64(buf[24:]),
		cryptMethod:   be.Uint32(buf[32:]),
		l1Size:        be.Uint32(buf[36:]),
		l1Off:         be.Uint64(buf[40:]),
		rtOff:         be.Uint64(buf[48:]),
		rtClusters:    be.Uint32(buf[56:]),
		nbSnapshots:   be.Uint32(buf[60:]),
		snapOff:       be.Uint64(buf[64:]),
		refcountOrder: 4,
		headerLen:     v2HeaderLen,
	}
	if h.version != 2 && h.version != 3 {
		return nil, fmt.Errorf("%w: version %d (only 2 and 3 exist)", ErrUnsupportedVersion, h.version)
	}
	if h.clusterBits < minClusterBits || h.clusterBits > maxClusterBits {
		return nil, fmt.Errorf("%w: cluster_bits %d outside %d..%d", ErrBadHeader, h.clusterBits, minClusterBits, maxClusterBits)
	}
	cs := uint64(1) << h.clusterBits
	if h.version == 3 {
		if len(buf) < v3HeaderLen {
			return nil, fmt.Errorf("%w: v3 header truncated", ErrBadHeader)
		}
		h.incompat = be.Uint64(buf[72:])
		h.compat = be.Uint64(buf[80:])
		h.autoclear = be.Uint64(buf[88:])
		h.refcountOrder = be.Uint32(buf[96:])
		h.headerLen = be.Uint32(buf[100:])
		if h.headerLen < v3HeaderLen || uint64(h.headerLen) > cs || int(h.headerLen) > len(buf) {
			return nil, fmt.Errorf("%w: header_length %d", ErrBadHeader, h.headerLen)
		}
		if h.headerLen > 104 {
			h.compressionType = buf[104]
		}
	}
	if h.refcountOrder > 6 {
		return nil, fmt.Errorf("%w: refcount_order %d > 6", ErrBadHeader, h.refcountOrder)
	}
	if h.size > maxVirtualSize {
		return nil, fmt.Errorf("%w: virtual size %d too large", ErrBadHeader, h.size)
	}
	if h.cryptMethod != 0 {
		return nil, fmt.Errorf("%w: encrypted images (crypt_method %d)", errUnsupported, h.cryptMethod)
	}
	// The L1 table must be able to map the whole disk, fit qemu's limit and
	// lie inside the file: this bounds the allocation made for it.
	l2Entries := cs / 8
	if h.incompat&incExtL2 != 0 {
		l2Entries = cs / 16
	}
	need := (h.size + cs*l2Entries - 1) / (cs * l2Entries)
	if uint64(h.l1Size) < need {
		return nil, fmt.Errorf("%w: l1_size %d cannot map %d bytes", ErrBadHeader, h.l1Size, h.size)
	}
	if uint64(h.l1Size)*8 > maxL1Bytes {
		return nil, fmt.Errorf("%w: l1_size %d too large", ErrBadHeader, h.l1Size)
	}
	if h.l1Off > uint64(fileSize) || h.l1Size > 0 && (h.l1Off%cs != 0 || h.l1Off > uint64(fileSize) || uint64(h.l1Size)*8 > uint64(fileSize)-h.l1Off) {
		return nil, fmt.Errorf("%w: L1 table at %#x (%d entries) outside the file", ErrBadHeader, h.l1Off, h.l1Size)
	}
	rtBytes := uint64(h.rtClusters) << h.clusterBits
	if h.rtOff%cs != 0 || rtBytes > maxRefTableBytes || h.rtOff > uint64(fileSize) || rtBytes > uint64(fileSize)-h.rtOff {
		return nil, fmt.Errorf("%w: refcount table at %#x (%d clusters) invalid", ErrBadHeader, h.rtOff, h.rtClusters)
	}
	if h.backingOff != 0 {
		if h.backingSize > maxBackingName || h.backingOff >= uint64(len(buf)) || uint64(h.backingSize) > uint64(len(buf))-h.backingOff {
			return nil, fmt.Errorf("%w: backing file name at %#x (%d bytes) invalid", ErrBadHeader, h.backingOff, h.backingSize)
		}
		h.backingFile = string(buf[h.backingOff : h.backingOff+uint64(h.backingSize)])
	}
	if err := h.parseExtensions(buf); err != nil {
		return nil, err
	}
	if unk := h.incompat &^ incKnown; unk != 0 {
		return nil, fmt.Errorf("%w: unknown incompatible features %s", errUnsupported, h.describe(0, unk))
	}
	if h.incompat&incDataFile != 0 {
		return nil, fmt.Errorf("%w: external data file", errUnsupported)
	}
	if h.incompat&incCompression != 0 && h.compressionType > 1 {
		return nil, fmt.Errorf("%w: compression type %d", errUnsupported, h.compressionType)
	}
	if h.incompat&incCompression == 0 && h.compressionType != 0 {
		return nil, fmt.Errorf("%w: compression type %d without its feature bit", ErrBadHeader, h.compressionType)
	}
	return h, nil
}

// parseExtensions walks the header extensions ("Header extensions": type,
// length, data padded to 8 bytes) that follow the fixed header.
func (h *header) parseExtensions(buf []byte) error {
	be := binary.BigEndian
	pos := uint64(h.headerLen)
	end := uint64(len(buf))
	if h.backingOff != 0 && h.backingOff > pos && h.backingOff < end {
		end = h.backingOff
	}
	for pos+8 <= end {
		typ, n := be.Uint32(buf[pos:]), uint64(be.Uint32(buf[pos+4:]))
		pos += 8
		if typ == extEnd {
			return nil
		}
		if n > end-pos {
			return fmt.Errorf("%w: header extension %#x overruns the header", ErrBadHeader, typ)
		}
		data := buf[pos : pos+n]
		switch typ {
		case extBackingFmt:
			h.backingFormat = string(data)
		case extFeatureNames:
			h.featureNames = map[[2]byte]string{}
			for i := 0; i+48 <= len(data); i += 48 {
				name := strings.TrimRight(string(data[i+2:i+48]), "\x00")
				h.featureNames[[2]byte{data[i], data[i+1]}] = name
			}
		case extBitmaps:
			h.hasBitmaps = true
		case extEncryption:
			return fmt.Errorf("%w: encrypted images", errUnsupported)
		case extDataFile:
			return fmt.Errorf("%w: external data file", errUnsupported)
		}
		pos += (n + 7) &^ 7
	}
	return nil
}

// describe names the bits of a feature field of type typ (0 incompatible,
// 1 compatible, 2 autoclear) using the feature name table.
func (h *header) describe(typ byte, bits uint64) string {
	var parts []string
	for b := 0; b < 64; b++ {
		if bits&(1<<b) == 0 {
			continue
		}
		if name, ok := h.featureNames[[2]byte{typ, byte(b)}]; ok {
			parts = append(parts, fmt.Sprintf("bit %d (%q)", b, name))
		} else {
			parts = append(parts, fmt.Sprintf("bit %d", b))
		}
	}
	return strings.Join(parts, ", ")
}

// featureNameTable is the feature name table extension qemu writes, so
// that other tools can name our feature bits.
func featureNameTable() []byte {
	names := []struct {
		typ, bit byte
		name     string
	}{
		{0, 0, "dirty bit"}, {0, 1, "corrupt bit"}, {0, 2, "external data file"},
		{0, 3, "compression type"}, {0, 4, "extended L2 entries"},
		{1, 0, "lazy refcounts"}, {2, 0, "bitmaps"}, {2, 1, "raw external data"},
	}
	out := make([]byte, 48*len(names))
	for i, n := range names {
		out[i*48], out[i*48+1] = n.typ, n.bit
		copy(out[i*48+2:i*48+48], n.name)
	}
	return out
}

// marshal encodes a new image's header, extensions and backing file name
// into one cluster-sized buffer.
func (h *header) marshal(cs int) ([]byte, error) {
	buf := make([]byte, cs)
	be := binary.BigEndian
	be.PutUint32(buf, magic)
	be.PutUint32(buf[4:], h.version)
	be.PutUint32(buf[20:], h.clusterBits)
	be.PutUint64(buf[24:], h.size)
	be.PutUint32(buf[36:], h.l1Size)
	be.PutUint64(buf[40:], h.l1Off)
	be.PutUint64(buf[48:], h.rtOff)
	be.PutUint32(buf[56:], h.rtClusters)
	pos := v2HeaderLen
	if h.version == 3 {
		h.headerLen = 112 // 104 plus compression_type padded to 8
		be.PutUint64(buf[72:], h.incompat)
		be.PutUint64(buf[80:], h.compat)
		be.PutUint64(buf[88:], h.autoclear)
		be.PutUint32(buf[96:], h.refcountOrder)
		be.PutUint32(buf[100:], h.headerLen)
		buf[104] = h.compressionType
		pos = int(h.headerLen)
	}
	ext := func(typ uint32, data []byte) error {
		if pos+8+len(data)+8 > cs {
			return fmt.Errorf("qcow2: header extensions do not fit a %d-byte cluster", cs)
		}
		be.PutUint32(buf[pos:], typ)
		be.PutUint32(buf[pos+4:], uint32(len(data)))
		copy(buf[pos+8:], data)
		pos += 8 + (len(data)+7)&^7
		return nil
	}
	if h.backingFormat != "" {
		if err := ext(extBackingFmt, []byte(h.backingFormat)); err != nil {
			return nil, err
		}
	}
	if h.version == 3 && cs >= 4096 {
		if err := ext(extFeatureNames, featureNameTable()); err != nil {
			return nil, err
		}
	}
	pos += 8 // end-of-extensions marker (zeros)
	if h.backingFile != "" {
		if len(h.backingFile) > maxBackingName || pos+len(h.backingFile) > cs {
			return nil, fmt.Errorf("qcow2: backing file name %q too long", h.backingFile)
		}
		be.PutUint64(buf[8:], uint64(pos))
		be.PutUint32(buf[16:], uint32(len(h.backingFile)))
		copy(buf[pos:], h.backingFile)
	}
	return buf, nil
}
