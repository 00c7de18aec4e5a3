package vdi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/govisor/govisor/internal/diskimage"
)

// makeDiff turns the dynamic VDI at path into a differencing image
// of parent, as VirtualBox lays one out (image type 4, uuidLinkage the
// parent's uuidCreate), and marks the blocks in zero as
// VDI_IMAGE_BLOCK_ZERO.
func makeDiff(t *testing.T, path string, parent *Image, zero ...int) {
	t.Helper()
	img, err := Open(path, true)
	if err != nil {
		t.Fatal(err)
	}
	h := img.Header()
	img.Close()
	h.Type = typeDiff
	h.UUIDLinkage = parent.hdr.UUIDCreate
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(h.Marshal(), 0); err != nil {
		t.Fatal(err)
	}
	for _, blk := range zero {
		var e [4]byte
		binary.LittleEndian.PutUint32(e[:], blockZero)
		if _, err := f.WriteAt(e[:], int64(h.BlocksOffset)+4*int64(blk)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpenDiff(t *testing.T) {
	dir := t.TempDir()
	const mib = 1 << 20
	pp, cp := filepath.Join(dir, "base.vdi"), filepath.Join(dir, "snap.vdi")
	base, err := Create(pp, 4*mib, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	base.WriteAt(bytes.Repeat([]byte{'P'}, 4*mib), 0)
	base.Close()
	child, err := Create(cp, 4*mib, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	child.WriteAt(bytes.Repeat([]byte{'C'}, mib), mib)
	child.Close()
	parent, err := Open(pp, true)
	if err != nil {
		t.Fatal(err)
	}
	makeDiff(t, cp, parent, 2)

	if _, err := Open(cp, true); !errors.Is(err, diskimage.ErrUnsupported) {
		t.Errorf("Open of a differencing image: %v, want ErrUnsupported", err)
	}
	img, err := OpenDiff(cp, parent)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	got := make([]byte, 4*mib)
	if _, err := img.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	for blk, want := range []byte{'P', 'C', 0, 'P'} {
		if !bytes.Equal(got[blk*mib:(blk+1)*mib], bytes.Repeat([]byte{want}, mib)) {
			t.Errorf("block %d does not read %q throughout", blk, want)
		}
	}
	ext, err := img.Map(0, 4*mib)
	if err != nil {
		t.Fatal(err)
	}
	want := []diskimage.Extent{{Offset: 0, Length: 2 * mib}, {Offset: 2 * mib, Length: mib, Zero: true}, {Offset: 3 * mib, Length: mib}}
	if len(ext) != len(want) {
		t.Fatalf("map %+v, want %+v", ext, want)
	}
	for i := range want {
		if ext[i] != want[i] {
			t.Errorf("map %+v, want %+v", ext, want)
		}
	}

	// Another VDI is not its parent.
	other, err := Create(filepath.Join(dir, "other.vdi"), 4*mib, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenDiff(cp, other); !errors.Is(err, diskimage.ErrParent) {
		t.Errorf("OpenDiff over the wrong parent: %v, want ErrParent", err)
	}
	other.Close()
}
