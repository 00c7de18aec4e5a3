package linuxboot

import (
	"bytes"
	"compress/bzip2"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz/lzma"
)

// codec is one compression format the kernel build can use for a bzImage
// payload (arch/x86/boot/compressed/Makefile, CONFIG_KERNEL_*).
type codec struct {
	name   string
	magic  []byte
	unpack func(payload []byte, limit int) ([]byte, error) // nil: unsupported
}

var codecs = []codec{
	{"gzip", []byte{0x1f, 0x8b}, unpackGzip},
	{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd}, unpackZstd},
	{"lz4", []byte{0x02, 0x21, 0x4c, 0x18}, unpackLZ4Legacy},
	{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}, unpackXZ},
	{"lzma", []byte{0x5d, 0x00, 0x00}, unpackLZMA},
	{"bzip2", []byte{'B', 'Z', 'h'}, unpackBzip2},
	{"lzo", []byte{0x89, 'L', 'Z', 'O', 0x00, 0x0d, 0x0a, 0x1a, 0x0a}, nil},
}

// DetectCodec names the compression of a bzImage payload from its magic
// bytes, or returns "" when it is not recognised.
func DetectCodec(payload []byte) string {
	for _, c := range codecs {
		if bytes.HasPrefix(payload, c.magic) {
			return c.name
		}
	}
	return ""
}

// Unpack decompresses a bzImage payload and returns the data (the vmlinux
// ELF, possibly followed by relocations) and the codec name. Bytes after the
// end of the compressed stream (the kernel build appends the decompressed
// size as 4 little-endian bytes) are ignored.
func Unpack(payload []byte) ([]byte, string, error) {
	return unpack(payload, MaxUnpackedSize)
}

// unpack is Unpack with an explicit output limit (tests use a small one).
func unpack(payload []byte, limit int) ([]byte, string, error) {
	for _, c := range codecs {
		if !bytes.HasPrefix(payload, c.magic) {
			continue
		}
		if c.unpack == nil {
			return nil, c.name, fmt.Errorf("%w: %s-compressed kernel payload cannot be unpacked on the host; use --guest-decompress", ErrUnsupported, c.name)
		}
		out, err := c.unpack(payload, limit)
		if err != nil {
			return nil, c.name, fmt.Errorf("linuxboot: unpack %s payload (%d bytes): %w", c.name, len(payload), err)
		}
		return out, c.name, nil
	}
	n := min(len(payload), 8)
	return nil, "", fmt.Errorf("%w: unknown compression of kernel payload (first bytes % x)", ErrUnsupported, payload[:n])
}

// errTooBig reports output beyond the limit.
var errTooBig = errors.New("decompressed data exceeds the size limit")

// readLimited reads r to EOF, failing once more than limit bytes come out.
// On another error it returns what was read so far along with the error.
func readLimited(r io.Reader, limit int) ([]byte, error) {
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(r, int64(limit)+1))
	if n > int64(limit) {
		return nil, fmt.Errorf("%w (%d bytes)", errTooBig, limit)
	}
	return buf.Bytes(), err
}

func unpackGzip(p []byte, limit int) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(p))
	if err != nil {
		return nil, err
	}
	// One member only: what follows it is the appended size, not another member.
	zr.Multistream(false)
	return readLimited(zr, limit)
}
func unpackZstd(p []byte, limit int) ([]byte, error) {
	n, err := zstdFramesLen(p)
	if err != nil {
		return nil, err
	}
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(uint64(limit)),
		zstd.WithDecoderMaxWindow(max(uint64(limit), zstd.MinWindowSize)))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.DecodeAll(p[:n], nil)
}

// zstdFramesLen returns the length of the zstd frames at the start of p, so
// trailing bytes (the appended size) are not taken for another frame. It walks
// frame and block headers only (RFC 8878 section 3.1.1).
func zstdFramesLen(p []byte) (int, error) {
	pos := 0
	for pos == 0 || (len(p)-pos >= 4 && bytes.HasPrefix(p[pos:], []byte{0x28, 0xb5, 0x2f, 0xfd})) {
		n, err := zstdFrameLen(p[pos:])
		if err != nil {
			return 0, err
		}
		pos += n
	}
	return pos, nil
}

func zstdFrameLen(p []byte) (int, error) {
	if len(p) < 6 {
		return 0, io.ErrUnexpectedEOF
	}
	fhd := p[4]
	pos := 5
	if fhd&0x20 == 0 { // not Single_Segment: Window_Descriptor present
		pos++
	}
	pos += [4]int{0, 1, 2, 4}[fhd&3] // Dictionary_ID
	fcs := [4]int{0, 2, 4, 8}[fhd>>6]
	if fcs == 0 && fhd&0x20 != 0 {
		fcs = 1
	}
	pos += fcs
	for {
		if pos+3 > len(p) {
			return 0, fmt.Errorf("zstd: block header at %d: %w", pos, io.ErrUnexpectedEOF)
		}
		bh := uint32(p[pos]) | uint32(p[pos+1])<<8 | uint32(p[pos+2])<<16
		pos += 3
		size := int(bh >> 3)
		switch (bh >> 1) & 3 {
		case 1: // RLE_Block: one byte regardless of Block_Size
			size = 1
		case 3:
			return 0, errors.New("zstd: reserved block type")
		}
		if size > len(p)-pos {
			return 0, fmt.Errorf("zstd: block of %d bytes at %d: %w", size, pos, io.ErrUnexpectedEOF)
		}
		pos += size
		if bh&1 != 0 { // Last_Block
			break
		}
	}
	if fhd&0x04 != 0 { // Content_Checksum_flag
		pos += 4
	}
	if pos > len(p) {
		return 0, fmt.Errorf("zstd: checksum: %w", io.ErrUnexpectedEOF)
	}
	return pos, nil
}

// lzmaHeaderLen is the size of the .lzma ("LZMA alone") header:
// properties(1) dictionary size(le32) uncompressed size(le64, -1 = unknown).
const lzmaHeaderLen = 13

func unpackLZMA(p []byte, limit int) ([]byte, error) {
	if len(p) < lzmaHeaderLen {
		return nil, io.ErrUnexpectedEOF
	}
	hdr := append([]byte(nil), p[:lzmaHeaderLen]...)
	dict := binary.LittleEndian.Uint32(hdr[1:])
	size := binary.LittleEndian.Uint64(hdr[5:])
	if size != ^uint64(0) && size > uint64(limit) {
		return nil, fmt.Errorf("%w: header says %d bytes", errTooBig, size)
	}
	// A dictionary larger than the whole output is never needed; lowering it
	// keeps a hostile header from making us allocate gigabytes.
	dictCap := max(min(uint64(dict), uint64(limit)), lzma.MinDictCap)
	binary.LittleEndian.PutUint32(hdr[1:], uint32(dictCap))
	r, err := lzma.ReaderConfig{DictCap: int(dictCap)}.NewReader(
		io.MultiReader(bytes.NewReader(hdr), bytes.NewReader(p[lzmaHeaderLen:])))
	if err != nil {
		return nil, err
	}
	return readLimited(r, limit)
}

func unpackBzip2(p []byte, limit int) ([]byte, error) {
	out, err := readLimited(bzip2.NewReader(bytes.NewReader(p)), limit)
	var se bzip2.StructuralError
	// compress/bzip2 takes bytes after the end-of-stream marker for a
	// concatenated stream and fails on their magic. The stream CRC has been
	// verified by then, so those bytes (the appended size) are only trailing.
	if errors.As(err, &se) && se == "bad magic value in continuation file" && len(out) > 0 {
		return out, nil
	}
	return out, err
}
