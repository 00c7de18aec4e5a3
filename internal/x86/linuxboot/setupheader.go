package linuxboot

import (
	"encoding/binary"
	"fmt"
)

// Offsets in the bzImage file (and, identically, in struct boot_params) of the
// setup-header fields, from boot.rst "THE REAL-MODE KERNEL HEADER".
const (
	hdrSetupSects      = 0x1f1
	hdrVidMode         = 0x1fa
	hdrBootFlag        = 0x1fe
	hdrJump            = 0x200 // 2-byte jump; byte 0x201 gives the header length
	hdrMagic           = 0x202 // "HdrS"
	hdrVersion         = 0x206
	hdrKernelVersion   = 0x20e
	hdrTypeOfLoader    = 0x210
	hdrLoadflags       = 0x211
	hdrCode32Start     = 0x214
	hdrRamdiskImage    = 0x218
	hdrRamdiskSize     = 0x21c
	hdrHeapEndPtr      = 0x224
	hdrCmdLinePtr      = 0x228
	hdrInitrdAddrMax   = 0x22c
	hdrKernelAlignment = 0x230
	hdrRelocatable     = 0x234
	hdrMinAlignment    = 0x235
	hdrXLoadflags      = 0x236
	hdrCmdlineSize     = 0x238
	hdrPayloadOffset   = 0x248
	hdrPayloadLength   = 0x24c
	hdrPrefAddress     = 0x258
	hdrInitSize        = 0x260
	hdrEnd             = 0x290 // end of struct setup_header inside boot_params
)

// loadflags and xloadflags bits (boot.rst, field descriptions).
const (
	loadedHigh  = 1 << 0 // LOADED_HIGH: protected-mode code at 0x100000
	canUseHeap  = 1 << 7 // CAN_USE_HEAP: heap_end_ptr is valid
	xlfKernel64 = 1 << 0 // XLF_KERNEL_64: has the 64-bit entry at +0x200
	xlfAbove4G  = 1 << 1 // XLF_CAN_BE_LOADED_ABOVE_4G
)

const (
	hdrMagicValue  = 0x53726448 // "HdrS" little-endian
	bootFlagValue  = 0xAA55
	minProtocol    = 0x0206 // cmdline_size exists; earlier lacks what we need
	payloadProto   = 0x0208 // payload_offset/payload_length exist
	loaderUnknown  = 0xff   // type_of_loader "undefined"
	defaultInitMax = 0x37FFFFFF
)

// setupHeader is the parsed bzImage setup header.
type setupHeader struct {
	raw           []byte // file bytes [hdrSetupSects, headerEnd)
	setupSects    int
	version       uint16
	kernelVersion string
	loadflags     uint8
	initrdAddrMax uint32
	kernelAlign   uint32
	relocatable   bool
	xloadflags    uint16
	cmdlineSize   uint32
	payloadOffset uint32
	payloadLength uint32
	prefAddress   uint64
	initSize      uint32
	pmCode        []byte // the protected-mode kernel: file[(setup_sects+1)*512:]
}

// isBzImage reports whether the image carries the "HdrS" magic at 0x202.
func isBzImage(img []byte) bool {
	return len(img) >= hdrMagic+4 && binary.LittleEndian.Uint32(img[hdrMagic:]) == hdrMagicValue
}

// parseSetupHeader validates and decodes the setup header of a bzImage.
func parseSetupHeader(img []byte) (*setupHeader, error) {
	if !isBzImage(img) {
		return nil, fmt.Errorf("%w: no \"HdrS\" magic at 0x202", ErrNotKernel)
	}
	if len(img) < hdrEnd {
		return nil, fmt.Errorf("%w: bzImage of %d bytes is shorter than its setup header (%#x bytes)", ErrTruncated, len(img), hdrEnd)
	}
	le := binary.LittleEndian
	h := &setupHeader{version: le.Uint16(img[hdrVersion:])}
	if h.version < minProtocol {
		return nil, fmt.Errorf("%w: bzImage boot protocol %d.%02d is older than 2.06 (kernels before 2.6.22); it has no cmdline_size field and cannot be booted in 64-bit mode",
			ErrUnsupported, h.version>>8, h.version&0xff)
	}
	if bf := le.Uint16(img[hdrBootFlag:]); bf != bootFlagValue {
		return nil, fmt.Errorf("%w: bzImage boot_flag is %#x, want 0xaa55", ErrNotKernel, bf)
	}
	// boot.rst: the header ends at 0x202 + the byte at 0x201 (the jump offset).
	end := hdrMagic + int(img[hdrJump+1])
	if end > hdrEnd {
		end = hdrEnd
	}
	if end < hdrCmdlineSize+4 {
		return nil, fmt.Errorf("%w: bzImage setup header ends at %#x, before cmdline_size", ErrTruncated, end)
	}
	h.raw = img[hdrSetupSects:end]
	h.setupSects = int(img[hdrSetupSects])
	if h.setupSects == 0 {
		h.setupSects = 4 // boot.rst: "If this field is 0, the real value is 4."
	}
	h.loadflags = img[hdrLoadflags]
	h.initrdAddrMax = le.Uint32(img[hdrInitrdAddrMax:])
	if h.initrdAddrMax == 0 {
		h.initrdAddrMax = defaultInitMax
	}
	h.kernelAlign = le.Uint32(img[hdrKernelAlignment:])
	h.relocatable = img[hdrRelocatable] != 0
	h.xloadflags = le.Uint16(img[hdrXLoadflags:])
	h.cmdlineSize = le.Uint32(img[hdrCmdlineSize:])
	if h.version >= payloadProto && end >= hdrPayloadLength+4 {
		h.payloadOffset = le.Uint32(img[hdrPayloadOffset:])
		h.payloadLength = le.Uint32(img[hdrPayloadLength:])
	}
	if h.version >= 0x020a && end >= hdrInitSize+4 {
		h.prefAddress = le.Uint64(img[hdrPrefAddress:])
		h.initSize = le.Uint32(img[hdrInitSize:])
	}
	pmStart := (h.setupSects + 1) * 512
	if pmStart >= len(img) {
		return nil, fmt.Errorf("%w: bzImage setup of %d sectors leaves no protected-mode code in %d bytes", ErrTruncated, h.setupSects, len(img))
	}
	h.pmCode = img[pmStart:]
	h.kernelVersion = cString(img, int(le.Uint16(img[hdrKernelVersion:])), 0x200, 256)
	return h, nil
}

// payload returns the compressed kernel inside the protected-mode code.
func (h *setupHeader) payload() ([]byte, error) {
	if h.version < payloadProto {
		return nil, fmt.Errorf("%w: bzImage boot protocol %d.%02d has no payload_offset (needs 2.08); use guest decompression",
			ErrUnsupported, h.version>>8, h.version&0xff)
	}
	off, n := uint64(h.payloadOffset), uint64(h.payloadLength)
	if n == 0 || off+n > uint64(len(h.pmCode)) {
		return nil, fmt.Errorf("%w: bzImage payload [%#x, +%#x) outside the %#x-byte protected-mode code", ErrTruncated, off, n, len(h.pmCode))
	}
	return h.pmCode[off : off+n], nil
}

// cString reads a NUL-terminated string at img[bias+ptr], up to max bytes;
// ptr 0 means absent.
func cString(img []byte, ptr, bias, max int) string {
	if ptr == 0 {
		return ""
	}
	start := ptr + bias
	if start >= len(img) {
		return ""
	}
	end := start
	for end < len(img) && end-start < max && img[end] != 0 {
		end++
	}
	return string(img[start:end])
}
