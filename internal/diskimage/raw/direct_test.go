package raw

import (
	"bytes"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"github.com/govisor/govisor/internal/diskimage"
)

// alignedBuf returns n bytes whose address is a multiple of 4096.
func alignedBuf(n int) []byte {
	b := make([]byte, n+4096)
	skip := (4096 - int(bufAddr(b)%4096)) % 4096
	return b[skip : skip+n]
}

// TestDirectIO mixes aligned (O_DIRECT) and unaligned (page cache)
// transfers on one image: each sees the others' data, and aligned ones do
// take the O_DIRECT descriptor.
func TestDirectIO(t *testing.T) {
	p := filepath.Join(t.TempDir(), "d.raw")
	img, err := Create(p, 1<<20, diskimage.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	img.Close()
	di, err := diskimage.Open(p, diskimage.OpenOptions{Direct: true})
	if err != nil {
		t.Skipf("O_DIRECT not available for %s here: %v", p, err)
	}
	defer di.Close()
	m := di.(*Image)
	if m.df == nil {
		t.Fatal("no O_DIRECT descriptor")
	}
	t.Logf("O_DIRECT alignment: memory %d, offset %d", m.dio.mem, m.dio.off)
	model := make([]byte, 1<<20)
	aligned := alignedBuf(8192)
	for _, tc := range []struct {
		name   string
		buf    []byte
		off    int64
		direct bool
	}{
		{"aligned", aligned, 4096, true},
		{"unaligned offset", make([]byte, 512), 4096 + 512, m.dio.off <= 512},
		{"unaligned length", aligned[:1000], 16384, false},
		{"unaligned memory", aligned[1:4097], 32768, false},
		{"aligned over unaligned", aligned[:4096], 4096, true},
	} {
		for i := range tc.buf {
			tc.buf[i] = byte(len(tc.name) + i)
		}
		if got := m.fileFor(tc.buf, tc.off) == m.df; got != tc.direct {
			t.Errorf("%s: O_DIRECT %v, want %v", tc.name, got, tc.direct)
		}
		if _, err := m.WriteAt(tc.buf, tc.off); err != nil {
			t.Fatalf("%s: write: %v", tc.name, err)
		}
		copy(model[tc.off:], tc.buf)
		// Read back through the other kind of descriptor too.
		for _, rb := range [][]byte{alignedBuf(len(tc.buf)), make([]byte, len(tc.buf)+1)[1:]} {
			if _, err := m.ReadAt(rb, tc.off); err != nil {
				t.Fatalf("%s: read: %v", tc.name, err)
			}
			if !bytes.Equal(rb, model[tc.off:tc.off+int64(len(tc.buf))]) {
				t.Fatalf("%s: read back differs", tc.name)
			}
		}
	}
	whole := alignedBuf(1 << 20)
	if _, err := m.ReadAt(whole, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(whole, model) {
		t.Fatal("the image differs from what was written")
	}
}

var registerFake sync.Once

// TestDirectOnlyRaw refuses direct for other formats with a clear error.
func TestDirectOnlyRaw(t *testing.T) {
	registerFake.Do(func() {
		diskimage.Register(diskimage.Driver{Name: "fake-direct", Open: func(string, diskimage.OpenOptions) (diskimage.Image, error) {
			return nil, errors.New("the driver was reached")
		}})
	})
	p := filepath.Join(t.TempDir(), "x.img")
	img, err := Create(p, 4096, diskimage.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	img.Close()
	_, err = diskimage.Open(p, diskimage.OpenOptions{Format: "fake-direct", Direct: true})
	if !errors.Is(err, diskimage.ErrUnsupported) {
		t.Fatalf("direct on a non-raw format: %v", err)
	}
}
