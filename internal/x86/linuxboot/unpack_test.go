package linuxboot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand"
	"os"
	"os/exec"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz/lzma"
)

// codeLike returns deterministic data resembling x86 code: text, runs, and
// many E8/E9 rel32 instructions, so the BCJ filter has work to do.
func codeLike(n int) []byte {
	r := rand.New(rand.NewSource(int64(n)))
	var b bytes.Buffer
	for b.Len() < n {
		switch r.Intn(4) {
		case 0:
			b.WriteByte(0xe8 + byte(r.Intn(2)))
			rel := int32(r.Intn(1<<20) - 1<<19)
			binary.Write(&b, binary.LittleEndian, rel)
		case 1:
			b.WriteString("linux kernel payload ")
		case 2:
			b.Write(bytes.Repeat([]byte{byte(r.Intn(256))}, r.Intn(16)))
		default:
			b.WriteByte(byte(r.Intn(256)))
		}
	}
	return b.Bytes()[:n]
}

// sizeTrailer is what the kernel build appends after the compressed data.
func sizeTrailer(n int) []byte {
	return binary.LittleEndian.AppendUint32(nil, uint32(n))
}

func gzipOf(t testing.TB, data []byte) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func zstdOf(t testing.TB, data []byte) []byte {
	e, err := zstd.NewWriter(nil, zstd.WithEncoderCRC(true))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	return e.EncodeAll(data, nil)
}

func lzmaOf(t testing.TB, data []byte) []byte {
	var b bytes.Buffer
	w, err := lzma.NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// lz4LegacyOf builds an LZ4 legacy frame by hand, as "lz4 -l" does, with
// blocks of at most blockSize input bytes.
func lz4LegacyOf(t testing.TB, data []byte, blockSize int) []byte {
	out := binary.LittleEndian.AppendUint32(nil, lz4LegacyMagic)
	var c lz4.Compressor
	for len(data) > 0 {
		n := min(blockSize, len(data))
		buf := make([]byte, lz4.CompressBlockBound(n))
		m, err := c.CompressBlock(data[:n], buf)
		if err != nil || m == 0 {
			t.Fatalf("lz4 compress: %d %v", m, err)
		}
		out = binary.LittleEndian.AppendUint32(out, uint32(m))
		out = append(out, buf[:m]...)
		data = data[n:]
	}
	return out
}

// toolOf compresses with an external tool, skipping the test when it is missing.
func toolOf(t testing.TB, data []byte, tool string, args ...string) []byte {
	path, err := exec.LookPath(tool)
	if err != nil {
		t.Skipf("%s not installed", tool)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v", tool, args, err)
	}
	return out
}

func TestUnpackRoundTrip(t *testing.T) {
	data := codeLike(600000)
	tests := []struct {
		name  string
		codec string
		pack  func(t *testing.T) []byte
	}{
		{"gzip", "gzip", func(t *testing.T) []byte { return gzipOf(t, data) }},
		{"zstd", "zstd", func(t *testing.T) []byte { return zstdOf(t, data) }},
		{"lzma", "lzma", func(t *testing.T) []byte { return lzmaOf(t, data) }},
		{"lz4 one block", "lz4", func(t *testing.T) []byte { return lz4LegacyOf(t, data, 8<<20) }},
		{"lz4 small blocks", "lz4", func(t *testing.T) []byte { return lz4LegacyOf(t, data, 1<<17) }},
		{"lz4 restarted stream", "lz4", func(t *testing.T) []byte {
			a := lz4LegacyOf(t, data[:1<<18], 1<<17)
			return append(a, lz4LegacyOf(t, data[1<<18:], 1<<17)...)
		}},
		{"lz4 tool", "lz4", func(t *testing.T) []byte { return toolOf(t, data, "lz4", "-l", "-9", "-c") }},
		{"xz x86+lzma2 crc32", "xz", func(t *testing.T) []byte {
			return toolOf(t, data, "xz", "--format=xz", "--x86", "--lzma2=preset=1", "--check=crc32", "-c")
		}},
		{"xz lzma2 crc64", "xz", func(t *testing.T) []byte { return toolOf(t, data, "xz", "-1", "--check=crc64", "-c") }},
		{"xz sha256", "xz", func(t *testing.T) []byte {
			return toolOf(t, data, "xz", "--x86", "--lzma2=preset=1", "--check=sha256", "-c")
		}},
		{"xz none", "xz", func(t *testing.T) []byte { return toolOf(t, data, "xz", "-1", "--check=none", "-c") }},
		{"xz two blocks", "xz", func(t *testing.T) []byte {
			return toolOf(t, data, "xz", "--x86", "--lzma2=preset=1", "--check=crc32", "--block-size=250000", "-c")
		}},
		{"lzma tool", "lzma", func(t *testing.T) []byte { return toolOf(t, data, "lzma", "-1", "-c") }},
		{"bzip2", "bzip2", func(t *testing.T) []byte { return toolOf(t, data, "bzip2", "-1", "-c") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			packed := tc.pack(t)
			for _, in := range [][]byte{packed, append(packed[:len(packed):len(packed)], sizeTrailer(len(data))...)} {
				packed := in
				if got := DetectCodec(packed); got != tc.codec {
					t.Fatalf("DetectCodec = %q, want %q", got, tc.codec)
				}
				out, codec, err := Unpack(packed)
				if err != nil {
					t.Fatalf("Unpack: %v", err)
				}
				if codec != tc.codec {
					t.Errorf("codec = %q, want %q", codec, tc.codec)
				}
				if !bytes.Equal(out, data) {
					t.Fatalf("Unpack returned %d bytes, differing from the %d-byte input", len(out), len(data))
				}
			}
		})
	}
}

// TestUnpackLargeZstd checks outputs bigger than any initial buffer, with
// the frame content size recorded in the header.
func TestUnpackLargeZstd(t *testing.T) {
	data := make([]byte, 80<<20)
	copy(data[len(data)-16:], "end of the image")
	out, codec, err := Unpack(append(zstdOf(t, data), sizeTrailer(len(data))...))
	if err != nil || codec != "zstd" || !bytes.Equal(out, data) {
		t.Fatalf("Unpack = %d bytes, %q, %v", len(out), codec, err)
	}
}

func TestUnpackErrors(t *testing.T) {
	data := codeLike(200000)
	gz := gzipOf(t, data)
	lz := lz4LegacyOf(t, data, 1<<16)
	zs := zstdOf(t, data)
	tests := []struct {
		name    string
		in      []byte
		limit   int
		wantErr error
	}{
		{"unknown magic", []byte("MZ\x90\x00hello"), MaxUnpackedSize, ErrUnsupported},
		{"empty", nil, MaxUnpackedSize, ErrUnsupported},
		{"lzo", []byte{0x89, 'L', 'Z', 'O', 0, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3}, MaxUnpackedSize, ErrUnsupported},
		{"gzip truncated", gz[:len(gz)/2], MaxUnpackedSize, nil},
		{"gzip over limit", gz, 1000, errTooBig},
		{"lz4 truncated", lz[:len(lz)/2], MaxUnpackedSize, nil},
		{"lz4 over limit", lz, 100000, errTooBig},
		{"zstd truncated", zs[:len(zs)/2], MaxUnpackedSize, nil},
		{"zstd over limit", zs, 1000, nil},
		{"lzma over limit", lzmaOf(t, data), 1000, errTooBig},
		{"xz header only", []byte{0xfd, '7', 'z', 'X', 'Z', 0, 0, 1, 0, 0, 0, 0}, MaxUnpackedSize, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := unpack(tc.in, tc.limit)
			if err == nil {
				t.Fatalf("unpack succeeded with %d bytes, want an error", len(out))
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestBCJShortAndIdentity(t *testing.T) {
	// Buffers without E8/E9 bytes pass unchanged; short ones are untouched.
	for _, in := range [][]byte{nil, {0xe8}, {0xe8, 1, 2, 3}, []byte("plain text without call opcodes")} {
		buf := append([]byte(nil), in...)
		bcjX86Decode(buf)
		if !bytes.Equal(buf, in) {
			t.Errorf("bcjX86Decode(% x) = % x", in, buf)
		}
	}
}

func FuzzUnpack(f *testing.F) {
	data := codeLike(5000)
	f.Add(gzipOf(f, data))
	f.Add(zstdOf(f, data))
	f.Add(lzmaOf(f, data))
	f.Add(lz4LegacyOf(f, data, 1024))
	if xz, err := os.ReadFile("testdata/seed.xz"); err == nil {
		f.Add(xz)
	}
	f.Add([]byte{0xfd, '7', 'z', 'X', 'Z', 0, 0, 1, 0x69, 0x22, 0xde, 0x36, 0x02, 0x00, 0x21, 0x01})
	f.Add([]byte("BZh91AY&SY"))
	f.Fuzz(func(t *testing.T, in []byte) {
		out, _, err := unpack(in, 1<<20)
		if err == nil && len(out) > 1<<20 {
			t.Fatalf("unpack returned %d bytes over the limit", len(out))
		}
	})
}

// TestBCJAgainstXZ filters with xz's own x86 BCJ encoder, undoes only the
// LZMA2 layer with xz, and checks bcjX86Decode restores the input.
func TestBCJAgainstXZ(t *testing.T) {
	data := codeLike(300000)
	raw := toolOf(t, data, "xz", "--format=raw", "--x86", "--lzma2=preset=1", "-c")
	filtered := toolOf(t, raw, "xz", "--format=raw", "--lzma2", "-d", "-c")
	if bytes.Equal(filtered, data) {
		t.Fatal("the x86 filter changed nothing; the test data has no convertible calls")
	}
	bcjX86Decode(filtered)
	if !bytes.Equal(filtered, data) {
		t.Fatal("bcjX86Decode did not restore the data")
	}
}
