package vhd

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/govisor/govisor/internal/allzero"
	"github.com/govisor/govisor/internal/diskimage"
)

// FormatName is the name diskimage reports for VHD images.
const FormatName = "vhd"

// CreateOptions selects the kind of disk Create makes.
type CreateOptions struct {
	// Fixed makes a fixed disk (raw data followed by a footer) instead of a
	// dynamic one.
	Fixed bool
	// AzureAlign rounds the size up to a multiple of 1 MiB and forces a
	// fixed disk: Azure only accepts fixed VHDs whose size is 1 MiB aligned.
	AzureAlign bool
}

// Image is an open VHD file. It implements diskimage.Image and
// diskimage.Mapper and is safe for concurrent use.
type Image struct {
	f        diskimage.File
	readOnly bool
	footer   *Footer
	size     int64

	// Dynamic disks only.
	dyn        *DynamicHeader
	mu         sync.RWMutex
	bat        []uint32
	footerPos  int64   // where the trailing footer lives; new blocks go here
	dirty      []int64 // blocks whose BAT entries Flush must still write
	blockSize  int64
	bitmapSize int64

	// Differencing disks only: the parent (nil with NoBacking: absent
	// sectors read as zeros) and its path.
	parent     diskimage.Image
	parentPath string
}

// Probe reports whether header (the first bytes of a file) starts with a VHD
// footer copy, as dynamic disks do. Fixed disks only carry their footer at
// the end, which the format registry's probe reads as well.
func Probe(header []byte) bool {
	return len(header) >= 8 && bytes.Equal(header[:8], []byte(cookie))
}

// readTrailingFooter finds the footer at the end of the file. The spec
// (section "Hard Disk Footer Format") notes that pre-Virtual-PC-2004 images
// have a 511-byte footer, so both positions are tried.
func readTrailingFooter(f diskimage.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("vhd: stat: %w", err)
	}
	size := st.Size()
	if size < footerSize {
		return 0, fmt.Errorf("%w: file is %d bytes", ErrBadFooter, size)
	}
	b := make([]byte, footerSize)
	var first error
	for _, pos := range []int64{size - footerSize, size - footerSize + 1} {
		if _, err := f.ReadAt(b[:size-pos], pos); err != nil {
			return 0, fmt.Errorf("vhd: read footer at %#x: %w", pos, err)
		}
		if _, err := ParseFooter(b[:size-pos]); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		return pos, nil
	}
	return 0, first
}

// Open opens a fixed or dynamic VHD, or a differencing one read-only with
// its parent chain.
func Open(path string, readOnly bool) (*Image, error) {
	return OpenWith(path, diskimage.OpenOptions{ReadOnly: readOnly})
}

// OpenWith is Open with the registry's options: NoBacking leaves a
// differencing disk's parent closed, Chain guards against parent loops.
func OpenWith(path string, opts diskimage.OpenOptions) (*Image, error) {
	readOnly := opts.ReadOnly
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("vhd: %w", err)
	}
	img, err := open(f, readOnly)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("vhd: open %s: %w", path, err)
	}
	if img.footer.DiskType == TypeDifferencing && !opts.NoBacking {
		if err := img.openParent(path, opts); err != nil {
			f.Close()
			return nil, err
		}
	}
	return img, nil
}

func open(f diskimage.File, readOnly bool) (*Image, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	fileSize := st.Size()
	img := &Image{f: f, readOnly: readOnly}
	pos, err := readTrailingFooter(f)
	b := make([]byte, footerSize)
	if err != nil {
		// A damaged trailing footer: the spec keeps a copy at offset 0 for
		// dynamic disks precisely so it can be recovered from.
		if _, rerr := f.ReadAt(b, 0); rerr != nil {
			return nil, err
		}
		ft, ferr := ParseFooter(b)
		if ferr != nil || ft.DiskType == TypeFixed {
			return nil, err
		}
		img.footer = ft
		img.footerPos = fileSize
	} else {
		if _, err := f.ReadAt(b[:fileSize-pos], pos); err != nil {
			return nil, err
		}
		img.footer, _ = ParseFooter(b[:fileSize-pos])
		img.footerPos = pos
	}
	img.size = img.footer.VirtualSize()
	if img.size < 0 || img.size > 1<<50 {
		return nil, fmt.Errorf("%w: virtual size %d", diskimage.ErrCorrupt, img.size)
	}
	switch img.footer.DiskType {
	case TypeFixed:
		if img.size > img.footerPos {
			return nil, fmt.Errorf("%w: fixed disk of %d bytes in a %d-byte file", diskimage.ErrCorrupt, img.size, fileSize)
		}
		return img, nil
	case TypeDifferencing:
		if !readOnly {
			return nil, fmt.Errorf("%w: writing to a vhd differencing disk; open it read-only, or flatten the chain with `govisor image convert` and use the copy", diskimage.ErrUnsupported)
		}
	}
	return img, img.loadDynamic(fileSize)
}

// loadDynamic reads the dynamic disk header and the BAT, checking every
// entry against the file size so no later read goes astray.
func (img *Image) loadDynamic(fileSize int64) error {
	off := img.footer.DataOffset
	if off > uint64(fileSize) || uint64(fileSize)-off < dynHeaderSize {
		return fmt.Errorf("%w: dynamic header offset %#x past the end", diskimage.ErrCorrupt, off)
	}
	hb := make([]byte, dynHeaderSize)
	if _, err := img.f.ReadAt(hb, int64(off)); err != nil {
		return fmt.Errorf("read dynamic header at %#x: %w", off, err)
	}
	h, err := ParseDynamicHeader(hb)
	if err != nil {
		return err
	}
	img.dyn = h
	img.blockSize = int64(h.BlockSize)
	img.bitmapSize = bitmapSize(h.BlockSize)
	batBytes := int64(h.MaxTableEntries) * 4
	if uint64(batBytes)+h.TableOffset > uint64(fileSize) {
		return fmt.Errorf("%w: BAT of %d entries at %#x past the end of a %d-byte file", diskimage.ErrCorrupt, h.MaxTableEntries, h.TableOffset, fileSize)
	}
	raw := make([]byte, batBytes)
	if _, err := img.f.ReadAt(raw, int64(h.TableOffset)); err != nil {
		return fmt.Errorf("read BAT at %#x: %w", h.TableOffset, err)
	}
	img.bat = make([]uint32, h.MaxTableEntries)
	// The next block goes at the trailing footer, or past the last block
	// or the BAT if some tool left them beyond it.
	end := img.footerPos
	batEnd := (int64(h.TableOffset) + batBytes + sectorSize - 1) / sectorSize * sectorSize
	end = max(end, batEnd)
	for i := range img.bat {
		e := binary.BigEndian.Uint32(raw[i*4:])
		img.bat[i] = e
		if e == unusedBATEntry {
			continue
		}
		start := int64(e) * sectorSize
		if start+img.bitmapSize+img.blockSize > fileSize+footerSize {
			return fmt.Errorf("%w: BAT entry %d points at %#x, past the end", diskimage.ErrCorrupt, i, start)
		}
		end = max(end, start+img.bitmapSize+img.blockSize)
	}
	img.footerPos = end
	return nil
}

// VirtualSize is the guest-visible size in bytes.
func (img *Image) VirtualSize() int64 { return img.size }

// Format returns "vhd".
func (img *Image) Format() string { return FormatName }

// Subformat returns "fixed" or "dynamic".
func (img *Image) Subformat() string {
	if img.footer.DiskType == TypeDifferencing {
		return "differencing"
	}
	if img.dyn != nil {
		return "dynamic"
	}
	return "fixed"
}

// Footer returns a copy of the image's footer.
func (img *Image) Footer() Footer { return *img.footer }

// Flush makes every completed write durable: the new BAT entries, then the file.
func (img *Image) Flush() error {
	return diskimage.FlushFile(FormatName, img.f, img.readOnly, &img.mu, img.flushBAT)
}

// Close flushes and closes the file.
func (img *Image) Close() error {
	if img.parent != nil {
		img.parent.Close()
	}
	return diskimage.CloseFile(FormatName, img.f, img.Flush)
}

func (img *Image) checkRange(n int, off int64) error {
	if off < 0 || off > img.size || int64(n) > img.size-off {
		return fmt.Errorf("vhd: access of %d bytes at %#x outside a %d-byte disk: %w", n, off, img.size, io.ErrUnexpectedEOF)
	}
	return nil
}

// ReadAt reads guest data; unallocated dynamic blocks read as zeros.
func (img *Image) ReadAt(p []byte, off int64) (int, error) {
	p, short := diskimage.ClipRead(p, off, img.size)
	if len(p) == 0 {
		return 0, short
	}
	if img.dyn == nil {
		n, err := img.f.ReadAt(p, off)
		if err != nil {
			return n, fmt.Errorf("vhd: read at %#x: %w", off, err)
		}
		return n, short
	}
	img.mu.RLock()
	defer img.mu.RUnlock()
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		blk, in := pos/img.blockSize, pos%img.blockSize
		n := int(min(int64(len(p)-done), img.blockSize-in))
		chunk := p[done : done+n]
		if img.footer.DiskType == TypeDifferencing {
			if err := img.readDiff(chunk, blk, in); err != nil {
				return done, err
			}
		} else if blk >= int64(len(img.bat)) || img.bat[blk] == unusedBATEntry {
			clear(chunk)
		} else {
			// Dynamic disks ignore the sector bitmap for reads: a present
			// block holds the data of every sector (qemu and Hyper-V agree;
			// the bitmap only matters for differencing disks).
			at := int64(img.bat[blk])*sectorSize + img.bitmapSize + in
			if _, err := img.f.ReadAt(chunk, at); err != nil {
				return done, fmt.Errorf("vhd: read block %d at %#x: %w", blk, at, err)
			}
		}
		done += n
	}
	return done, short
}

// WriteAt writes guest data, allocating dynamic blocks as needed. Writing
// zeros to an unallocated block allocates nothing.
func (img *Image) WriteAt(p []byte, off int64) (int, error) {
	if img.readOnly {
		return 0, diskimage.ErrReadOnly
	}
	if err := img.checkRange(len(p), off); err != nil {
		return 0, err
	}
	if img.dyn == nil {
		n, err := img.f.WriteAt(p, off)
		if err != nil {
			return n, fmt.Errorf("vhd: write at %#x: %w", off, err)
		}
		return n, nil
	}
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		blk, in := pos/img.blockSize, pos%img.blockSize
		n := int(min(int64(len(p)-done), img.blockSize-in))
		if err := img.writeBlock(p[done:done+n], blk, in); err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}

// writeBlock writes chunk at offset in of block blk. Writes to present
// blocks share the lock, so parallel writers do their I/O concurrently;
// allocation takes it exclusively.
func (img *Image) writeBlock(chunk []byte, blk, in int64) error {
	if blk >= int64(len(img.bat)) {
		return fmt.Errorf("%w: block %d beyond the %d-entry BAT", diskimage.ErrCorrupt, blk, len(img.bat))
	}
	img.mu.RLock()
	sec := img.bat[blk]
	if sec != unusedBATEntry {
		defer img.mu.RUnlock()
		return img.writeIn(chunk, blk, sec, in)
	}
	img.mu.RUnlock()
	if allzero.Is(chunk) {
		return nil
	}
	img.mu.Lock()
	defer img.mu.Unlock()
	if img.bat[blk] == unusedBATEntry {
		if err := img.allocate(blk); err != nil {
			return err
		}
	}
	return img.writeIn(chunk, blk, img.bat[blk], in)
}

func (img *Image) writeIn(chunk []byte, blk int64, sec uint32, in int64) error {
	at := int64(sec)*sectorSize + img.bitmapSize + in
	if _, err := img.f.WriteAt(chunk, at); err != nil {
		return fmt.Errorf("vhd: write block %d at %#x: %w", blk, at, err)
	}
	return nil
}

// allocate appends a zero block at the footer position: first the footer
// moves to the new end (the gap reads as zeros), then the block's all-ones
// sector bitmap overwrites the old footer, so the file always ends with a
// footer. The BAT entry is only recorded in memory; Flush syncs the blocks
// and then writes the entries, so a crash never leaves an entry pointing at
// unwritten data, at worst an unreferenced block.
func (img *Image) allocate(blk int64) error {
	start := img.footerPos
	if start%sectorSize != 0 || start/sectorSize >= unusedBATEntry {
		return fmt.Errorf("vhd: cannot place block at %#x", start)
	}
	newEnd := start + img.bitmapSize + img.blockSize
	if _, err := img.f.WriteAt(img.footer.Marshal(), newEnd); err != nil {
		return fmt.Errorf("vhd: move footer to %#x: %w", newEnd, err)
	}
	bm := bytes.Repeat([]byte{0xff}, int(img.bitmapSize))
	if _, err := img.f.WriteAt(bm, start); err != nil {
		return fmt.Errorf("vhd: write bitmap at %#x: %w", start, err)
	}
	img.bat[blk] = uint32(start / sectorSize)
	img.dirty = append(img.dirty, blk)
	img.footerPos = newEnd
	return nil
}

// flushBAT syncs the data of new blocks, then writes their BAT entries.
// Called with img.mu held.
func (img *Image) flushBAT() error {
	if len(img.dirty) == 0 {
		return nil
	}
	if err := img.f.Sync(); err != nil {
		return fmt.Errorf("vhd: sync: %w", err)
	}
	var e [4]byte
	for _, blk := range img.dirty {
		binary.BigEndian.PutUint32(e[:], img.bat[blk])
		if _, err := img.f.WriteAt(e[:], int64(img.dyn.TableOffset)+blk*4); err != nil {
			return fmt.Errorf("vhd: write BAT entry %d: %w", blk, err)
		}
	}
	img.dirty = img.dirty[:0]
	return nil
}

// Map reports allocated (data) and unallocated (zero) runs.
func (img *Image) Map(off, length int64) ([]diskimage.Extent, error) {
	if off < 0 || length < 0 || off > img.size {
		return nil, fmt.Errorf("vhd: map %#x+%#x outside the disk", off, length)
	}
	length = min(length, img.size-off)
	if img.dyn == nil {
		return []diskimage.Extent{{Offset: off, Length: length}}, nil
	}
	if img.footer.DiskType == TypeDifferencing {
		return img.mapDiff(off, length)
	}
	img.mu.RLock()
	defer img.mu.RUnlock()
	var out []diskimage.Extent
	for pos := off; pos < off+length; {
		blk := pos / img.blockSize
		n := min(off+length-pos, (blk+1)*img.blockSize-pos)
		zero := blk >= int64(len(img.bat)) || img.bat[blk] == unusedBATEntry
		if k := len(out); k > 0 && out[k-1].Zero == zero {
			out[k-1].Length += n
		} else {
			out = append(out, diskimage.Extent{Offset: pos, Length: n, Zero: zero})
		}
		pos += n
	}
	return out, nil
}
