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

// TestVectored checks ReadvAt and WritevAt against ReadAt and WriteAt of
// the same buffers laid end to end, in range, across the end and out of it.
func TestVectored(t *testing.T) {
	for _, direct := range []bool{false, true} {
		p := filepath.Join(t.TempDir(), "v.raw")
		if err := os.WriteFile(p, make([]byte, 64<<10), 0o644); err != nil {
			t.Fatal(err)
		}
		im, err := Open(p, diskimage.OpenOptions{Direct: direct})
		if err != nil {
			if direct {
				continue // this file system has no O_DIRECT
			}
			t.Fatal(err)
		}
		img := im.(*Image)
		defer img.Close()
		want := make([]byte, 3000)
		for i := range want {
			want[i] = byte(i*7 + 1)
		}
		// Uneven buffers, one empty, as a guest's chain may have.
		split := func(b []byte) [][]byte { return [][]byte{b[:100], b[100:100], b[100:2048], b[2048:]} }
		if n, err := img.WritevAt(split(want), 1000); n != len(want) || err != nil {
			t.Fatalf("direct=%v: WritevAt: %d, %v", direct, n, err)
		}
		got := make([]byte, len(want))
		if _, err := img.ReadAt(got, 1000); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("direct=%v: WritevAt wrote something else (%v)", direct, err)
		}
		clear(got)
		if n, err := img.ReadvAt(split(got), 1000); n != len(want) || err != nil || !bytes.Equal(got, want) {
			t.Fatalf("direct=%v: ReadvAt: %d, %v, equal %v", direct, n, err, bytes.Equal(got, want))
		}
		// Across the end: what fits, then io.EOF, as ReadAt.
		if n, err := img.ReadvAt(split(got), 64<<10-2000); n != 2000 || err != io.EOF {
			t.Fatalf("direct=%v: ReadvAt across the end: %d, %v", direct, n, err)
		}
		if _, err := img.ReadvAt(split(got), 65<<10); !errors.Is(err, ErrOutOfRange) {
			t.Fatalf("direct=%v: ReadvAt past the end: %v", direct, err)
		}
		if _, err := img.WritevAt(split(got), 64<<10-2000); !errors.Is(err, ErrOutOfRange) {
			t.Fatalf("direct=%v: WritevAt across the end: %v", direct, err)
		}
	}
	p := filepath.Join(t.TempDir(), "ro.raw")
	os.WriteFile(p, make([]byte, 4096), 0o644)
	ro, err := Open(p, diskimage.OpenOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if _, err := ro.(*Image).WritevAt([][]byte{{1}}, 0); !errors.Is(err, diskimage.ErrReadOnly) {
		t.Fatalf("read-only WritevAt: %v", err)
	}
}

// TestVectoredShortFile checks that a file shorter than the disk (truncated
// behind the image's back) reads as zeros past its end, as ReadAt does.
func TestVectoredShortFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.raw")
	os.WriteFile(p, bytes.Repeat([]byte{9}, 8192), 0o644)
	im, err := Open(p, diskimage.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	os.Truncate(p, 4096+10)
	got := bytes.Repeat([]byte{5}, 8192)
	if n, err := im.(*Image).ReadvAt([][]byte{got[:4000], got[4000:]}, 0); n != 8192 || err != nil {
		t.Fatalf("ReadvAt: %d, %v", n, err)
	}
	want := append(bytes.Repeat([]byte{9}, 4096+10), make([]byte, 8192-4096-10)...)
	if !bytes.Equal(got, want) {
		t.Fatal("ReadvAt of a short file: not the file then zeros")
	}
}
