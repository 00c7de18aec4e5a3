package linuxboot

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/crc64"

	"github.com/ulikunitz/xz/lzma"
)

// The kernel's xz payload (scripts/xz_wrap.sh) is an .xz stream with one
// block whose filter chain is the x86 BCJ filter followed by LZMA2, with a
// CRC32 check. github.com/ulikunitz/xz accepts only a lone LZMA2 filter, so
// the container is parsed here (The .xz File Format 1.2.1, sections 2 and 3),
// LZMA2 is decoded by ulikunitz/xz/lzma and the BCJ filter is undone by
// bcjX86Decode.

const (
	xzFilterX86   = 0x04
	xzFilterLZMA2 = 0x21
)

var errXZ = errors.New("xz: corrupt stream")

func unpackXZ(p []byte, limit int) ([]byte, error) {
	if len(p) < 12 {
		return nil, fmt.Errorf("%w: stream header truncated", errXZ)
	}
	flags := p[6:8]
	if crc32.ChecksumIEEE(flags) != binary.LittleEndian.Uint32(p[8:12]) {
		return nil, fmt.Errorf("%w: stream header CRC mismatch", errXZ)
	}
	if flags[0] != 0 || flags[1]&0xf0 != 0 {
		return nil, fmt.Errorf("%w: reserved stream flags set", errXZ)
	}
	checkID := flags[1] & 0x0f
	newCheck, checkLen, err := xzCheck(checkID)
	if err != nil {
		return nil, err
	}
	pos := 12
	var out []byte
	for {
		if pos >= len(p) {
			return nil, fmt.Errorf("%w: missing index", errXZ)
		}
		if p[pos] == 0 { // index indicator: no more blocks
			break
		}
		data, n, err := xzBlock(p[pos:], limit-len(out), newCheck, checkLen)
		if err != nil {
			return nil, fmt.Errorf("block at %#x: %w", pos, err)
		}
		out = append(out, data...)
		pos += n
	}
	return out, nil
}

// xzCheck returns a constructor for the stream's integrity check and its size.
func xzCheck(id byte) (func() hash.Hash, int, error) {
	switch id {
	case 0x00:
		return nil, 0, nil
	case 0x01:
		return func() hash.Hash { return crc32.NewIEEE() }, 4, nil
	case 0x04:
		return func() hash.Hash { return crc64.New(crc64.MakeTable(crc64.ECMA)) }, 8, nil
	case 0x0a:
		return sha256.New, 32, nil
	}
	return nil, 0, fmt.Errorf("%w: xz check type %#x", ErrUnsupported, id)
}

// xzBlock decodes one block at the start of p and returns its data and the
// number of bytes the block occupies (header, data, padding and check).
func xzBlock(p []byte, limit int, newCheck func() hash.Hash, checkLen int) ([]byte, int, error) {
	hlen := (int(p[0]) + 1) * 4
	if hlen > len(p) {
		return nil, 0, fmt.Errorf("%w: block header truncated", errXZ)
	}
	hdr := p[:hlen]
	if crc32.ChecksumIEEE(hdr[:hlen-4]) != binary.LittleEndian.Uint32(hdr[hlen-4:]) {
		return nil, 0, fmt.Errorf("%w: block header CRC mismatch", errXZ)
	}
	bflags := hdr[1]
	if bflags&0x3c != 0 {
		return nil, 0, fmt.Errorf("%w: reserved block flags set", errXZ)
	}
	r := &varintReader{b: hdr[:hlen-4], pos: 2}
	compSize, uncompSize := int64(-1), int64(-1)
	if bflags&0x40 != 0 {
		compSize = int64(r.next())
	}
	if bflags&0x80 != 0 {
		uncompSize = int64(r.next())
	}
	nfilters := int(bflags&3) + 1
	var bcj, dictByte = false, -1
	for i := 0; i < nfilters; i++ {
		id, psize := r.next(), r.next()
		if r.err != nil || psize > uint64(len(r.b)-r.pos) {
			return nil, 0, fmt.Errorf("%w: filter flags truncated", errXZ)
		}
		props := r.b[r.pos : r.pos+int(psize)]
		r.pos += int(psize)
		last := i == nfilters-1
		switch {
		case id == xzFilterX86 && !last && (psize == 0 || psize == 4 && binary.LittleEndian.Uint32(props) == 0):
			bcj = true
		case id == xzFilterLZMA2 && last && psize == 1 && props[0] <= 40:
			dictByte = int(props[0])
		default:
			return nil, 0, fmt.Errorf("%w: xz filter %#x (props %d bytes) at position %d; the kernel uses x86 BCJ + LZMA2", ErrUnsupported, id, psize, i)
		}
	}
	if r.err != nil || dictByte < 0 || uncompSize > int64(limit) || compSize < -1 || uncompSize < -1 {
		return nil, 0, fmt.Errorf("%w: bad block header", errXZ)
	}
	for _, b := range r.b[r.pos:] {
		if b != 0 {
			return nil, 0, fmt.Errorf("%w: non-zero block header padding", errXZ)
		}
	}
	body := p[hlen:]
	clen, ulen, err := lzma2Len(body)
	if err != nil {
		return nil, 0, err
	}
	if ulen > uint64(limit) {
		return nil, 0, fmt.Errorf("%w: lzma2 chunks hold %d bytes", errTooBig, ulen)
	}
	if compSize >= 0 && compSize != int64(clen) {
		return nil, 0, fmt.Errorf("%w: compressed size %d, header says %d", errXZ, clen, compSize)
	}
	// No match can reach further back than the block's whole output.
	dictCap := max(min(lzma2DictSize(dictByte), ulen), lzma.MinDictCap)
	lr, err := lzma.Reader2Config{DictCap: int(dictCap)}.NewReader2(bytes.NewReader(body[:clen]))
	if err != nil {
		return nil, 0, err
	}
	data, err := readLimited(lr, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("lzma2: %w", err)
	}
	if uncompSize >= 0 && uncompSize != int64(len(data)) {
		return nil, 0, fmt.Errorf("%w: uncompressed size %d, header says %d", errXZ, len(data), uncompSize)
	}
	if bcj {
		bcjX86Decode(data)
	}
	end := hlen + (clen+3)&^3 // data is padded to a multiple of four
	if end+checkLen > len(p) {
		return nil, 0, fmt.Errorf("%w: block check truncated", errXZ)
	}
	if newCheck != nil {
		h := newCheck()
		h.Write(data)
		if sum := h.Sum(nil); !bytesEqualLE(sum, p[end:end+checkLen], checkLen) {
			return nil, 0, fmt.Errorf("%w: check mismatch", errXZ)
		}
	}
	return data, end + checkLen, nil
}

// bytesEqualLE compares a hash sum with the stored check. CRC32 and CRC64 are
// stored little-endian, whereas Go's hash.Sum is big-endian; SHA-256 is as is.
func bytesEqualLE(sum, stored []byte, n int) bool {
	if n == 32 {
		return bytes.Equal(sum, stored)
	}
	for i := 0; i < n; i++ {
		if sum[n-1-i] != stored[i] {
			return false
		}
	}
	return true
}

// lzma2DictSize decodes the LZMA2 dictionary-size property byte (<= 40).
func lzma2DictSize(b int) uint64 {
	if b == 40 {
		return 1<<32 - 1
	}
	return uint64(2|b&1) << (b/2 + 11)
}

// lzma2Len walks the LZMA2 chunk headers to find where the stream ends
// (control byte 0x00) and how much it decodes to, without decoding.
func lzma2Len(p []byte) (n int, unpacked uint64, err error) {
	pos := 0
	for pos < len(p) {
		c := p[pos]
		var size int
		switch {
		case c == 0x00:
			return pos + 1, unpacked, nil
		case c == 0x01 || c == 0x02: // uncompressed chunk: size-1 (be16)
			if pos+3 > len(p) {
				return 0, 0, fmt.Errorf("%w: lzma2 chunk header truncated", errXZ)
			}
			u := int(binary.BigEndian.Uint16(p[pos+1:])) + 1
			unpacked += uint64(u)
			size = 3 + u
		case c >= 0x80: // LZMA chunk: unpacked size-1 (21 bits), packed size-1 (be16), props
			if pos+5 > len(p) {
				return 0, 0, fmt.Errorf("%w: lzma2 chunk header truncated", errXZ)
			}
			unpacked += uint64(c&0x1f)<<16 + uint64(binary.BigEndian.Uint16(p[pos+1:])) + 1
			size = 5 + int(binary.BigEndian.Uint16(p[pos+3:])) + 1
			if c >= 0xc0 {
				size++
			}
		default:
			return 0, 0, fmt.Errorf("%w: lzma2 control byte %#x", errXZ, c)
		}
		pos += size
	}
	return 0, 0, fmt.Errorf("%w: lzma2 stream has no end marker", errXZ)
}

// varintReader decodes the xz multibyte integers (7 bits per byte, LSB first,
// at most 9 bytes).
type varintReader struct {
	b   []byte
	pos int
	err error
}

func (r *varintReader) next() uint64 {
	var v uint64
	for i := 0; i < 9; i++ {
		if r.pos >= len(r.b) {
			r.err = errXZ
			return 0
		}
		c := r.b[r.pos]
		r.pos++
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			if c == 0 && i > 0 {
				r.err = errXZ // not minimally encoded
			}
			return v
		}
	}
	r.err = errXZ
	return 0
}
