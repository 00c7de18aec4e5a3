package netdev

import (
	"encoding/binary"

	"github.com/govisor/govisor/internal/virtio/virtqueue"
)

type virtqueueChain = virtqueue.Chain

// Header flags and GSO types (5.1.6).
const (
	HdrFNeedsCsum = 1
	HdrFDataValid = 2

	GSONone  = 0
	GSOTCPv4 = 1
	GSOUDP   = 3
	GSOTCPv6 = 4
	GSOUDPL4 = 5
	GSOECN   = 0x80
)

// Header is struct virtio_net_hdr_v1 (5.1.6).
type Header struct {
	Flags      uint8
	GSOType    uint8
	HdrLen     uint16
	GSOSize    uint16
	CsumStart  uint16
	CsumOffset uint16
	NumBuffers uint16
}

// ParseHeader decodes a header from the first HeaderSize bytes of b,
// which must be that long.
func ParseHeader(b []byte) Header {
	_ = b[HeaderSize-1]
	return Header{
		Flags: b[0], GSOType: b[1],
		HdrLen:     binary.LittleEndian.Uint16(b[2:]),
		GSOSize:    binary.LittleEndian.Uint16(b[4:]),
		CsumStart:  binary.LittleEndian.Uint16(b[6:]),
		CsumOffset: binary.LittleEndian.Uint16(b[8:]),
		NumBuffers: binary.LittleEndian.Uint16(b[10:]),
	}
}

// Put encodes h into the first HeaderSize bytes of b.
func (h Header) Put(b []byte) {
	_ = b[HeaderSize-1]
	b[0], b[1] = h.Flags, h.GSOType
	binary.LittleEndian.PutUint16(b[2:], h.HdrLen)
	binary.LittleEndian.PutUint16(b[4:], h.GSOSize)
	binary.LittleEndian.PutUint16(b[6:], h.CsumStart)
	binary.LittleEndian.PutUint16(b[8:], h.CsumOffset)
	binary.LittleEndian.PutUint16(b[10:], h.NumBuffers)
}

// validTx reports whether a header the driver sent asks only for what
// was negotiated (5.1.6.2.1): partial checksums need CSUM, segmentation
// needs the matching HOST_ offload (and HOST_ECN for the ECN bit), and
// the checksum field lies inside the frame. The kernel checks the header
// again; this keeps a driver from using offloads it did not negotiate.
func validTx(h Header, features uint64, frameLen int) bool {
	if h.Flags&^(HdrFNeedsCsum|HdrFDataValid) != 0 {
		return false
	}
	if h.Flags&HdrFNeedsCsum != 0 {
		if features&FeatureCsum == 0 || int(h.CsumStart)+int(h.CsumOffset)+2 > frameLen {
			return false
		}
	}
	if !ecnAllowed(h.GSOType, features&FeatureHostECN != 0) {
		return false
	}
	switch h.GSOType &^ GSOECN {
	case GSONone:
		return true
	case GSOTCPv4:
		return features&FeatureHostTSO4 != 0 && h.Flags&HdrFNeedsCsum != 0 && h.GSOSize != 0
	case GSOTCPv6:
		return features&FeatureHostTSO6 != 0 && h.Flags&HdrFNeedsCsum != 0 && h.GSOSize != 0
	default:
		return false
	}
}

// ecnAllowed reports whether gsoType's ECN bit is acceptable: only on a
// segmentation type, and only with the side's ECN feature (5.1.6.2,
// 5.1.6.4).
func ecnAllowed(gsoType uint8, negotiated bool) bool {
	return gsoType&GSOECN == 0 || (gsoType&^GSOECN != GSONone && negotiated)
}

// fixRx makes a header from the backend fit what the driver negotiated
// (5.1.6.4.1): no flags without GUEST_CSUM, no segmentation (or ECN bit)
// it cannot take. It reports false if the frame must be dropped.
func fixRx(b []byte, features uint64) bool {
	h := ParseHeader(b)
	if features&FeatureGuestCsum == 0 {
		if h.Flags&HdrFNeedsCsum != 0 {
			return false
		}
		b[0] = 0
	}
	if !ecnAllowed(h.GSOType, features&FeatureGuestECN != 0) {
		return false
	}
	switch h.GSOType &^ GSOECN {
	case GSONone:
	case GSOTCPv4:
		if features&FeatureGuestTSO4 == 0 {
			return false
		}
	case GSOTCPv6:
		if features&FeatureGuestTSO6 == 0 {
			return false
		}
	default:
		return false
	}
	return true
}
