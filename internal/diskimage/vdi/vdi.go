package vdi

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/govisor/govisor/internal/allzero"
	"github.com/govisor/govisor/internal/diskimage"
)

// FormatName is the name diskimage reports for VDI images.
const FormatName = "vdi"

// Image is an open VDI file. It implements diskimage.Image and
// diskimage.Mapper and is safe for concurrent use.
//
// New blocks go at the end of the data area; their block-map entries and
// the header's allocated count are kept in memory until Flush, which syncs
// the block data first and then writes them, so a crash never leaves an
// entry pointing at unwritten data, at worst an unreferenced block (which
// `qemu-img check` reports as a leak, as after a crash of VirtualBox).
type Image struct {
	f        diskimage.File
	readOnly bool
	hdr      *Header
	size     int64
	block    int64

	mu      sync.RWMutex
	bmap    []uint32
	next    uint32 // file block index the next allocation takes
	dirty   []int64
	hdrDirt bool
	touched atomic.Bool // UUIDModify renewed for this session

	// diff is set for a differencing image: its free blocks read from
	// parent (nil: zeros).
	diff   bool
	parent diskimage.Image
}

// Open opens a dynamic or fixed VDI. Differencing images are refused with
// diskimage.ErrUnsupported.
func Open(path string, readOnly bool) (*Image, error) {
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("vdi: %w", err)
	}
	img, err := openFile(f, readOnly)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("vdi: open %s: %w", path, err)
	}
	return img, nil
}

// openFile reads the header and the block map from f, checking every
// entry against the file so that no later access goes astray; the caller
// closes f on failure.
func openFile(f diskimage.File, readOnly bool) (*Image, error) {
	return openImage(f, readOnly, false)
}

// openImage is openFile that also takes a differencing image when diff is
// set (its parent is the caller's to attach).
func openImage(f diskimage.File, readOnly, diff bool) (*Image, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	fileSize := st.Size()
	b := make([]byte, sectorSize)
	if n, err := f.ReadAt(b, 0); n < preHeaderSize+header1Plus && err != nil {
		if n >= preHeaderSize && !Probe(b) {
			return nil, ErrBadSignature
		}
		return nil, fmt.Errorf("%w: read header: %v", ErrBadHeader, err)
	}
	h, err := ParseHeader(b)
	if err != nil {
		return nil, err
	}
	if h.Type == typeDiff && !diff {
		return nil, fmt.Errorf("%w: VDI differencing (snapshot) image; import the VirtualBox VM (govisor import vbox), which follows the chain, or clone the disk (VBoxManage clonemedium) first", diskimage.ErrUnsupported)
	}
	mapEnd := int64(h.BlocksOffset) + int64(h.Blocks)*4
	if mapEnd > fileSize {
		return nil, fmt.Errorf("%w: block map of %d entries at %#x past the end of a %d-byte file", diskimage.ErrCorrupt, h.Blocks, h.BlocksOffset, fileSize)
	}
	raw := make([]byte, int64(h.Blocks)*4)
	if _, err := f.ReadAt(raw, int64(h.BlocksOffset)); err != nil {
		return nil, fmt.Errorf("read block map: %w", err)
	}
	img := &Image{f: f, readOnly: readOnly, hdr: h, size: int64(h.DiskSize), block: int64(h.BlockSize), bmap: make([]uint32, h.Blocks)}
	// Blocks that start within the file: a map entry beyond them is
	// corrupt, and each may be referenced once (VirtualBox's vdiValidate
	// and qemu-img check enforce the same).
	inFile := max(0, (fileSize-int64(h.DataOffset)+img.block-1)/img.block)
	used := make([]uint64, (inFile+63)/64)
	img.next = h.Allocated
	for i := range img.bmap {
		e := binary.LittleEndian.Uint32(raw[i*4:])
		img.bmap[i] = e
		if e == blockFree || e == blockZero {
			continue
		}
		if int64(e) >= inFile {
			return nil, fmt.Errorf("%w: block %d at file block %d, past the end of a %d-byte file", diskimage.ErrCorrupt, i, e, fileSize)
		}
		if used[e/64]&(1<<(e%64)) != 0 {
			return nil, fmt.Errorf("%w: file block %d used twice (by block %d and another)", diskimage.ErrCorrupt, e, i)
		}
		used[e/64] |= 1 << (e % 64)
	}
	// New blocks go past the end of the file, so they read as zeros until
	// written even where a crash left an unreferenced block behind.
	img.next = max(img.next, uint32(min(inFile, blockZero)))
	return img, nil
}

// VirtualSize is the guest-visible size in bytes.
func (img *Image) VirtualSize() int64 { return img.size }

// Format returns "vdi".
func (img *Image) Format() string { return FormatName }

// Subformat returns "dynamic" or "fixed".
func (img *Image) Subformat() string {
	if img.hdr.Type == typeFixed {
		return "fixed"
	}
	return "dynamic"
}

// Header returns a copy of the image's header.
func (img *Image) Header() Header { return *img.hdr }

// Flush makes every completed write durable: block data, then the new
// block-map entries and header, then the file.
func (img *Image) Flush() error {
	return diskimage.FlushFile(FormatName, img.f, img.readOnly, &img.mu, img.flushMap)
}

// Close flushes and closes the file.
func (img *Image) Close() error {
	err := diskimage.CloseFile(FormatName, img.f, img.Flush)
	if img.parent != nil {
		if perr := img.parent.Close(); err == nil {
			err = perr
		}
	}
	return err
}

// at is the file offset of byte in of file block e.
func (img *Image) at(e uint32, in int64) int64 {
	return int64(img.hdr.DataOffset) + int64(e)*img.block + in
}

// ReadAt reads guest data; free and zero blocks read as zeros.
func (img *Image) ReadAt(p []byte, off int64) (int, error) {
	p, short := diskimage.ClipRead(p, off, img.size)
	if len(p) == 0 {
		return 0, short
	}
	img.mu.RLock()
	defer img.mu.RUnlock()
	for done := 0; done < len(p); {
		pos := off + int64(done)
		blk, in := pos/img.block, pos%img.block
		n := int(min(int64(len(p)-done), img.block-in))
		chunk := p[done : done+n]
		if e := img.bmap[blk]; e == blockFree && img.diff {
			if err := diskimage.ReadBacking(img.parent, chunk, pos); err != nil {
				return done, fmt.Errorf("vdi: %w", err)
			}
		} else if e == blockFree || e == blockZero {
			clear(chunk)
		} else if err := readFull(img.f, chunk, img.at(e, in)); err != nil {
			return done, fmt.Errorf("vdi: read block %d: %w", blk, err)
		}
		done += n
	}
	return len(p), short
}

// readFull reads len(p) bytes at off; bytes past the end of the file read
// as zeros (a fixed image may end in a hole, a dynamic one's last block
// may be short).
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if err == io.EOF || (err == nil && n < len(p)) {
		clear(p[n:])
		return nil
	}
	return err
}

// WriteAt writes guest data, allocating blocks as needed. Zeros written to
// a free or zero block allocate nothing.
func (img *Image) WriteAt(p []byte, off int64) (int, error) {
	if img.readOnly {
		return 0, diskimage.ErrReadOnly
	}
	if off < 0 || off > img.size || int64(len(p)) > img.size-off {
		return 0, fmt.Errorf("vdi: write of %d bytes at %#x outside a %d-byte disk: %w", len(p), off, img.size, io.ErrUnexpectedEOF)
	}
	if len(p) > 0 && !img.touched.Load() {
		img.renewModifyUUID()
	}
	for done := 0; done < len(p); {
		pos := off + int64(done)
		blk, in := pos/img.block, pos%img.block
		n := int(min(int64(len(p)-done), img.block-in))
		if err := img.writeBlock(p[done:done+n], blk, in); err != nil {
			return done, err
		}
		done += n
	}
	return len(p), nil
}

// renewModifyUUID gives the header a new uuidModify before the first
// write of a session, written with the next Flush, as VirtualBox's VD layer
// does on an image's first write (VDICore.h: "UUID of image's last
// modification"): a VirtualBox snapshot records its parent's uuidModify in
// uuidParentModify, so a parent changed behind its back can be told.
func (img *Image) renewModifyUUID() {
	img.mu.Lock()
	defer img.mu.Unlock()
	if img.touched.Load() {
		return
	}
	newUUID(&img.hdr.UUIDModify)
	img.hdrDirt = true
	img.touched.Store(true)
}

// writeBlock writes chunk at offset in of block blk. Writes to allocated
// blocks share the lock; allocation takes it exclusively.
func (img *Image) writeBlock(chunk []byte, blk, in int64) error {
	img.mu.RLock()
	if e := img.bmap[blk]; e != blockFree && e != blockZero {
		defer img.mu.RUnlock()
		return img.writeIn(chunk, blk, e, in)
	}
	img.mu.RUnlock()
	if allzero.Is(chunk) {
		return nil
	}
	img.mu.Lock()
	defer img.mu.Unlock()
	if e := img.bmap[blk]; e == blockFree || e == blockZero {
		if err := img.allocate(blk); err != nil {
			return err
		}
	}
	return img.writeIn(chunk, blk, img.bmap[blk], in)
}

func (img *Image) writeIn(chunk []byte, blk int64, e uint32, in int64) error {
	if _, err := img.f.WriteAt(chunk, img.at(e, in)); err != nil {
		return fmt.Errorf("vdi: write block %d: %w", blk, err)
	}
	return nil
}

// allocate gives block blk the next file block, whose full extent is
// written as zeros first by extending the file (the caller's chunk then
// lands in it). Called with img.mu held exclusively.
func (img *Image) allocate(blk int64) error {
	if img.next >= blockZero {
		return fmt.Errorf("vdi: no file block left for block %d", blk)
	}
	e := img.next
	end := img.at(e, img.block)
	st, err := img.f.Stat()
	if err != nil {
		return fmt.Errorf("vdi: stat: %w", err)
	}
	if st.Size() < end {
		if err := img.f.Truncate(end); err != nil {
			return fmt.Errorf("vdi: grow to %#x for block %d: %w", end, blk, err)
		}
	}
	img.bmap[blk] = e
	img.next++
	img.hdr.Allocated++
	img.dirty = append(img.dirty, blk)
	img.hdrDirt = true
	return nil
}

// flushMap syncs the data of new blocks, then writes their map entries and
// the header. Called with img.mu held.
func (img *Image) flushMap() error {
	if len(img.dirty) == 0 && !img.hdrDirt {
		return nil
	}
	if err := img.f.Sync(); err != nil {
		return fmt.Errorf("vdi: sync: %w", err)
	}
	var e [4]byte
	for _, blk := range img.dirty {
		binary.LittleEndian.PutUint32(e[:], img.bmap[blk])
		if _, err := img.f.WriteAt(e[:], int64(img.hdr.BlocksOffset)+blk*4); err != nil {
			return fmt.Errorf("vdi: write block map entry %d: %w", blk, err)
		}
	}
	// The pre-header (with its creator's text) stays as it is.
	if _, err := img.f.WriteAt(img.hdr.Marshal()[preHeaderSize:preHeaderSize+img.headerBytes()], preHeaderSize); err != nil {
		return fmt.Errorf("vdi: write header: %w", err)
	}
	img.dirty = img.dirty[:0]
	img.hdrDirt = false
	return nil
}

// headerBytes is how much of the header to rewrite: what the file has,
// so a 384-byte header's padding is left as it was.
func (img *Image) headerBytes() int { return int(min(img.hdr.Size, header1Plus)) }

// Map reports allocated (data) and free or zero (zero) runs.
func (img *Image) Map(off, length int64) ([]diskimage.Extent, error) {
	if off < 0 || length < 0 || off > img.size {
		return nil, fmt.Errorf("vdi: map %#x+%#x outside the disk", off, length)
	}
	length = min(length, img.size-off)
	img.mu.RLock()
	defer img.mu.RUnlock()
	var out []diskimage.Extent
	for pos := off; pos < off+length; {
		blk := pos / img.block
		n := min(off+length-pos, (blk+1)*img.block-pos)
		e := img.bmap[blk]
		if e == blockFree && img.diff {
			var l diskimage.ExtentList = out
			if err := l.AddBacking(img.parent, pos, n); err != nil {
				return nil, fmt.Errorf("vdi: %w", err)
			}
			out = l
			pos += n
			continue
		}
		zero := e == blockFree || e == blockZero
		if k := len(out); k > 0 && out[k-1].Zero == zero {
			out[k-1].Length += n
		} else {
			out = append(out, diskimage.Extent{Offset: pos, Length: n, Zero: zero})
		}
		pos += n
	}
	return out, nil
}
