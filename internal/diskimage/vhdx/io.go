package vhdx

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/govisor/govisor/internal/allzero"
	"github.com/govisor/govisor/internal/diskimage"
)

// blockOffset returns the file offset of payload block blk, or -1 when the
// block reads as zeros.
func (img *Image) blockOffset(blk int64) int64 {
	e := img.bat[img.batIndex(blk)]
	switch e & stateMask {
	case stateFullyPresent, statePartiallyPresent:
		return int64(e>>20) * mib
	}
	return -1
}

// ReadAt reads guest data; blocks not present read as zeros.
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
		if img.meta.HasParent {
			if err := img.readDiff(chunk, blk, in); err != nil {
				return done, err
			}
		} else if at := img.blockOffset(blk); at < 0 {
			clear(chunk)
		} else {
			k, err := img.r.ReadAt(chunk, at+in)
			if err != nil && !errors.Is(err, io.EOF) {
				return done, fmt.Errorf("vhdx: read block %d at %#x: %w", blk, at+in, err)
			}
			clear(chunk[k:]) // a block cut short by the end of file
		}
		done += n
	}
	return len(p), short
}

// WriteAt writes guest data, allocating blocks as needed (see Image).
func (img *Image) WriteAt(p []byte, off int64) (int, error) {
	if img.readOnly {
		return 0, diskimage.ErrReadOnly
	}
	if off < 0 || off > img.size || int64(len(p)) > img.size-off {
		return 0, fmt.Errorf("vhdx: write of %d bytes at %#x outside a %d-byte disk", len(p), off, img.size)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if err := img.beginSession(); err != nil {
		return 0, err
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

// beginSession gives the headers fresh FileWriteGuid and DataWriteGuid
// before the first write ([MS-VHDX] 2.2.2).
func (img *Image) beginSession() error {
	if img.touched.Load() {
		return nil
	}
	img.mu.Lock()
	defer img.mu.Unlock()
	if img.touched.Load() {
		return nil
	}
	rand.Read(img.hdr.FileWriteGUID[:])
	rand.Read(img.hdr.DataWriteGUID[:])
	if err := img.writeHeaders(); err != nil {
		return fmt.Errorf("vhdx: %w", err)
	}
	img.touched.Store(true)
	return nil
}

// writeBlock writes chunk at offset in of block blk. Writes to present
// blocks share the lock, so parallel writers do their I/O concurrently;
// allocation takes it exclusively.
func (img *Image) writeBlock(chunk []byte, blk, in int64) error {
	img.mu.RLock()
	if at := img.blockOffset(blk); at >= 0 {
		defer img.mu.RUnlock()
		if _, err := img.f.WriteAt(chunk, at+in); err != nil {
			return fmt.Errorf("vhdx: write block %d at %#x: %w", blk, at+in, err)
		}
		return nil
	}
	img.mu.RUnlock()
	if allzero.Is(chunk) {
		return nil
	}
	img.mu.Lock()
	defer img.mu.Unlock()
	at := img.blockOffset(blk)
	if at < 0 {
		_, err := img.allocate(blk, chunk, in)
		return err
	}
	if _, err := img.f.WriteAt(chunk, at+in); err != nil {
		return fmt.Errorf("vhdx: write block %d at %#x: %w", blk, at+in, err)
	}
	return nil
}

// allocate places block blk at the end of the file with chunk written at
// in, then points the BAT at it (ordering explained on Image).
func (img *Image) allocate(blk int64, chunk []byte, in int64) (int64, error) {
	at := img.end
	if err := img.f.Truncate(at + img.block); err != nil {
		return 0, fmt.Errorf("vhdx: extend for block %d: %w", blk, err)
	}
	if _, err := img.f.WriteAt(chunk, at+in); err != nil {
		return 0, fmt.Errorf("vhdx: write block %d at %#x: %w", blk, at+in, err)
	}
	img.bat[img.batIndex(blk)] = uint64(at/mib)<<20 | stateFullyPresent
	img.dirty = append(img.dirty, img.batIndex(blk))
	img.end = at + img.block
	return at, nil
}

// Map reports present (data) and absent (zero) runs.
func (img *Image) Map(off, length int64) ([]diskimage.Extent, error) {
	if off < 0 || length < 0 || off > img.size {
		return nil, fmt.Errorf("vhdx: map %#x+%#x outside the disk", off, length)
	}
	length = min(length, img.size-off)
	if img.meta.HasParent {
		return img.mapDiff(off, length)
	}
	img.mu.RLock()
	defer img.mu.RUnlock()
	var out []diskimage.Extent
	for pos := off; pos < off+length; {
		blk := pos / img.block
		n := min(off+length-pos, (blk+1)*img.block-pos)
		zero := img.blockOffset(blk) < 0
		if k := len(out); k > 0 && out[k-1].Zero == zero {
			out[k-1].Length += n
		} else {
			out = append(out, diskimage.Extent{Offset: pos, Length: n, Zero: zero})
		}
		pos += n
	}
	return out, nil
}

// flushBAT syncs the data of new blocks, then writes their BAT entries.
// Called with img.mu held.
func (img *Image) flushBAT() error {
	if len(img.dirty) == 0 {
		return nil
	}
	if err := img.f.Sync(); err != nil {
		return fmt.Errorf("vhdx: sync: %w", err)
	}
	var b [8]byte
	for _, idx := range img.dirty {
		binary.LittleEndian.PutUint64(b[:], img.bat[idx])
		if _, err := img.f.WriteAt(b[:], img.batOff+idx*8); err != nil {
			return fmt.Errorf("vhdx: write BAT entry %d: %w", idx, err)
		}
	}
	img.dirty = img.dirty[:0]
	return nil
}
