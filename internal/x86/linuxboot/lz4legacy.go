package linuxboot

import (
	"encoding/binary"
	"fmt"

	"github.com/pierrec/lz4/v4"
)

// The kernel compresses with "lz4 -l" (the legacy frame format, decoded by
// lib/decompress_unlz4.c): a 4-byte magic, then blocks of
// [le32 compressed size][compressed data], each decoding to at most 8 MiB.
// A size equal to the magic starts a new stream.
const (
	lz4LegacyMagic    = 0x184C2102
	lz4LegacyBlockMax = 8 << 20
)

func unpackLZ4Legacy(p []byte, limit int) ([]byte, error) {
	le := binary.LittleEndian
	if len(p) < 4 || le.Uint32(p) != lz4LegacyMagic {
		return nil, fmt.Errorf("lz4: no legacy frame magic")
	}
	pos := 4
	var out []byte
	block := make([]byte, min(lz4LegacyBlockMax, limit))
	for {
		// Fewer than a size word plus data left: the end, or the 4-byte
		// decompressed size the kernel build appends.
		if len(p)-pos <= 4 {
			break
		}
		n := le.Uint32(p[pos:])
		pos += 4
		if n == lz4LegacyMagic {
			continue
		}
		if n == 0 || uint64(n) > uint64(len(p)-pos) {
			return nil, fmt.Errorf("lz4: block at %#x claims %d bytes, %d left: corrupt or truncated", pos-4, n, len(p)-pos)
		}
		m, err := lz4.UncompressBlock(p[pos:pos+int(n)], block)
		if err != nil {
			return nil, fmt.Errorf("lz4: block at %#x: %w", pos-4, err)
		}
		if len(out)+m > limit {
			return nil, fmt.Errorf("lz4: %w (%d bytes)", errTooBig, limit)
		}
		out = append(out, block[:m]...)
		pos += int(n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("lz4: no data blocks")
	}
	return out, nil
}
