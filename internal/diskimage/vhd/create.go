package vhd

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"time"
)

// Create makes a new VHD of size bytes (rounded up to a whole sector, or to
// 1 MiB with AzureAlign) and returns it open for writing.
func Create(path string, size int64, opts CreateOptions) (*Image, error) {
	if opts.AzureAlign {
		opts.Fixed = true
		size = (size + (1<<20 - 1)) &^ (1<<20 - 1)
	}
	size = (size + sectorSize - 1) &^ (sectorSize - 1)
	if size <= 0 || size > MaxSize {
		return nil, fmt.Errorf("vhd: create %s: size %d outside 1..%d", path, size, int64(MaxSize))
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("vhd: %w", err)
	}
	ft := &Footer{
		Features:       featureReserved,
		Version:        formatVersion,
		DataOffset:     noDataOffset,
		Timestamp:      uint32(time.Since(vhdEpoch) / time.Second),
		CreatorApp:     [4]byte{'w', 'i', 'n', ' '},
		CreatorVersion: 0x00010000,
		CreatorHostOS:  creatorHostWi2k,
		OriginalSize:   uint64(size),
		CurrentSize:    uint64(size),
		Geometry:       CHS(size),
		DiskType:       TypeFixed,
	}
	if _, err := rand.Read(ft.UniqueID[:]); err != nil {
		f.Close()
		return nil, fmt.Errorf("vhd: uuid: %w", err)
	}
	if opts.Fixed {
		// Spec: a fixed disk is the raw data followed by the footer.
		_, err = f.WriteAt(ft.Marshal(), size)
	} else {
		err = createDynamic(f, ft, size)
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("vhd: create %s: %w", path, err)
	}
	img, err := open(f, false)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("vhd: reopen %s: %w", path, err)
	}
	return img, nil
}

// createDynamic lays out footer copy (0), dynamic header (512), BAT (1536)
// and trailing footer, as the spec's "Dynamic Hard Disk Image" describes.
func createDynamic(f *os.File, ft *Footer, size int64) error {
	ft.DiskType = TypeDynamic
	ft.DataOffset = footerSize
	entries := (size + defaultBlockSz - 1) / defaultBlockSz
	h := &DynamicHeader{
		DataOffset:      noDataOffset,
		TableOffset:     footerSize + dynHeaderSize,
		HeaderVersion:   dynHeaderVerion,
		MaxTableEntries: uint32(entries),
		BlockSize:       defaultBlockSz,
	}
	batBytes := (entries*4 + sectorSize - 1) / sectorSize * sectorSize
	bat := bytes.Repeat([]byte{0xff}, int(batBytes))
	fb := ft.Marshal()
	for _, w := range []struct {
		b   []byte
		off int64
	}{{fb, 0}, {h.Marshal(), footerSize}, {bat, int64(h.TableOffset)}, {fb, int64(h.TableOffset) + batBytes}} {
		if _, err := f.WriteAt(w.b, w.off); err != nil {
			return err
		}
	}
	return nil
}
