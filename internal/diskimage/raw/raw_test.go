package raw

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/govisor/govisor/internal/diskimage"
)

func TestMapSparse(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.raw")
	img, err := Create(p, 16<<20, diskimage.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	data := bytes.Repeat([]byte{1}, 64<<10)
	for _, off := range []int64{1 << 20, 8 << 20} {
		if _, err := img.WriteAt(data, off); err != nil {
			t.Fatal(err)
		}
	}
	ext, err := img.(diskimage.Mapper).Map(0, 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	var dataBytes, sum int64
	for i, e := range ext {
		if e.Offset != sum {
			t.Fatalf("extent %d at %d, want %d", i, e.Offset, sum)
		}
		sum += e.Length
		if !e.Zero {
			dataBytes += e.Length
			if e.Offset > 1<<20 && e.Offset+e.Length < 8<<20 {
				t.Fatalf("data extent %+v inside the hole", e)
			}
		}
	}
	if sum != 16<<20 {
		t.Fatalf("extents cover %d bytes", sum)
	}
	if dataBytes < 128<<10 || dataBytes > 4<<20 {
		t.Fatalf("%d data bytes mapped, want about 128 KiB", dataBytes)
	}
	// A sub-range starting inside the hole.
	ext, err = img.(diskimage.Mapper).Map(2<<20, 1<<20)
	if err != nil || len(ext) != 1 || !ext[0].Zero || ext[0].Length != 1<<20 {
		t.Fatalf("hole sub-range: %+v, %v", ext, err)
	}
}

func TestReadWriteBounds(t *testing.T) {
	p := filepath.Join(t.TempDir(), "b.raw")
	os.WriteFile(p, []byte("hello"), 0o644)
	img, err := Open(p, diskimage.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	cases := []struct {
		name    string
		off     int64
		n       int
		write   bool
		wantN   int
		wantErr error
	}{
		{"read inside", 1, 3, false, 3, nil},
		{"read across end", 3, 10, false, 2, io.EOF},
		{"read past end", 9, 1, false, 0, ErrOutOfRange},
		{"write inside", 0, 5, true, 5, nil},
		{"write across end", 3, 5, true, 0, ErrOutOfRange},
	}
	for _, tc := range cases {
		buf := make([]byte, tc.n)
		var n int
		var err error
		if tc.write {
			n, err = img.WriteAt(buf, tc.off)
		} else {
			n, err = img.ReadAt(buf, tc.off)
		}
		if n != tc.wantN || !errors.Is(err, tc.wantErr) && err != tc.wantErr {
			t.Errorf("%s: %d, %v; want %d, %v", tc.name, n, err, tc.wantN, tc.wantErr)
		}
	}
	ro, _ := Open(p, diskimage.OpenOptions{ReadOnly: true})
	defer ro.Close()
	if _, err := ro.WriteAt([]byte{1}, 0); !errors.Is(err, diskimage.ErrReadOnly) {
		t.Fatalf("read-only write: %v", err)
	}
}

func TestCreateIsSparse(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.raw")
	img, err := Create(p, 1<<30, diskimage.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	img.Close()
	if a := diskimage.ActualSize(p); a > 1<<20 {
		t.Fatalf("new 1 GiB raw image allocates %d bytes", a)
	}
	if _, err := Create(p, 1, diskimage.CreateOptions{BackingFile: "x"}); !errors.Is(err, diskimage.ErrUnsupported) {
		t.Fatalf("raw with backing: %v", err)
	}
}
