package vhdx

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/diskimage/parentpath"
)

// Sector bitmap block state ([MS-VHDX] 2.5.1.2): SB_BLOCK_PRESENT.
const sbPresent = 6

// checkBitmapEntry validates BAT entry i, a sector bitmap entry: absent,
// or (differencing disks only) a 1 MiB block inside the file.
func checkBitmapEntry(diff bool, i int, e uint64, fileSize int64) error {
	switch {
	case e&stateMask == stateNotPresent:
		return nil
	case !diff:
		return nil // unused outside differencing disks; ignored as Hyper-V does
	case e&stateMask != sbPresent:
		return fmt.Errorf("%w: sector bitmap entry %d has state %d", diskimage.ErrCorrupt, i, e&stateMask)
	case e>>20 == 0 || e>>20 >= uint64(fileSize)/mib:
		return fmt.Errorf("%w: sector bitmap entry %d points at %d MiB, past the end of a %d-byte file", diskimage.ErrCorrupt, i, e>>20, fileSize)
	}
	return nil
}

// openParent finds and opens the parent of the differencing disk at path
// from its parent locator ([MS-VHDX] 2.6.2.6.3). The first candidate that
// exists and whose DataWriteGuid is the locator's parent_linkage (or
// parent_linkage2) is used: a parent written to since the checkpoint, or
// another file of the same name, is refused rather than read.
func (img *Image) openParent(path string, opts diskimage.OpenOptions) error {
	link, ok := guidString(img.meta.locatorValue("parent_linkage"))
	if !ok {
		return fmt.Errorf("%w: vhdx differencing disk %s: parent locator has no valid parent_linkage", diskimage.ErrCorrupt, path)
	}
	link2, ok2 := guidString(img.meta.locatorValue("parent_linkage2"))
	cands := img.parentCandidates(path)
	found, err := parentpath.Open(path, cands, opts, func(p diskimage.Image) string {
		pv, isVHDX := p.(*Image)
		switch {
		case !isVHDX:
			return fmt.Sprintf("is a %s image", p.Format())
		case pv.hdr.DataWriteGUID != link && (!ok2 || pv.hdr.DataWriteGUID != link2):
			return fmt.Sprintf("has DataWriteGuid %s, the child's parent_linkage is %s", formatGUID(pv.hdr.DataWriteGUID), formatGUID(link))
		}
		return ""
	})
	switch {
	case err != nil:
		return err
	case found.Image == nil && len(found.Wrong) > 0:
		return fmt.Errorf("%w: vhdx differencing disk %s: no candidate is its parent: %s; the parent was written to or replaced since the checkpoint was taken: find the original parent (a Hyper-V checkpoint chain must be moved whole, and its parents never opened read-write)",
			diskimage.ErrParent, path, strings.Join(found.Wrong, "; "))
	case found.Image == nil:
		return fmt.Errorf("%w: vhdx differencing disk %s: parent not found (looked for %s); put the parent next to the child (or at its relative_path) and retry",
			diskimage.ErrParent, path, strings.Join(cands, ", "))
	}
	img.parent, img.parentPath = found.Image, found.Path
	return nil
}

// readDiff reads chunk at offset in of payload block blk of a
// differencing disk ([MS-VHDX] 2.5.1.1): FULLY_PRESENT blocks come from
// this file, ZERO blocks are zeros, PARTIALLY_PRESENT blocks take each
// sector from here or the parent as the chunk's sector bitmap says
// (2.5.1.2; bit set: the sector is in this file, least significant bit
// first as Windows bitmaps are), and the other states defer to the parent.
func (img *Image) readDiff(chunk []byte, blk, in int64) error {
	e := img.bat[img.batIndex(blk)]
	at := int64(e>>20) * mib
	base := blk * img.block
	switch e & stateMask {
	case stateFullyPresent:
		return img.readHere(chunk, at+in)
	case stateZero:
		clear(chunk)
		return nil
	case statePartiallyPresent:
	default:
		return img.readParent(chunk, base+in)
	}
	ss := int64(img.meta.LogicalSectorSize)
	spb := img.block / ss
	sb := img.bat[(blk/img.ratio)*(img.ratio+1)+img.ratio]
	if sb&stateMask != sbPresent {
		return fmt.Errorf("%w: block %d is partially present without a sector bitmap", diskimage.ErrCorrupt, blk)
	}
	// The block's part of the bitmap: spb bits from its first sector.
	bm := make([]byte, spb/8)
	if err := img.readHere(bm, int64(sb>>20)*mib+(blk%img.ratio)*spb/8); err != nil {
		return err
	}
	present := func(pos int64) bool { s := pos / ss; return bm[s/8]>>(s%8)&1 != 0 }
	end := in + int64(len(chunk))
	for pos := in; pos < end; {
		here := present(pos)
		next := (pos/ss + 1) * ss
		for next < end && present(next) == here {
			next += ss
		}
		next = min(next, end)
		part := chunk[pos-in : next-in]
		var err error
		if here {
			err = img.readHere(part, at+pos)
		} else {
			err = img.readParent(part, base+pos)
		}
		if err != nil {
			return err
		}
		pos = next
	}
	return nil
}

// readHere reads p at file offset at; past the end of the file is zeros.
func (img *Image) readHere(p []byte, at int64) error {
	k, err := img.r.ReadAt(p, at)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("vhdx: read at %#x: %w", at, err)
	}
	clear(p[k:])
	return nil
}

// readParent reads p at guest offset off from the parent.
func (img *Image) readParent(p []byte, off int64) error {
	if err := diskimage.ReadBacking(img.parent, p, off); err != nil {
		return fmt.Errorf("vhdx: parent %s: %w", img.parentPath, err)
	}
	return nil
}

// mapDiff maps a differencing disk: blocks with data here are data, ZERO
// blocks zero, the rest what the parent maps there.
func (img *Image) mapDiff(off, length int64) ([]diskimage.Extent, error) {
	var out diskimage.ExtentList
	for pos := off; pos < off+length; {
		blk := pos / img.block
		n := min(off+length-pos, (blk+1)*img.block-pos)
		switch img.bat[img.batIndex(blk)] & stateMask {
		case stateFullyPresent, statePartiallyPresent:
			out.Add(diskimage.Extent{Offset: pos, Length: n})
		case stateZero:
			out.Add(diskimage.Extent{Offset: pos, Length: n, Zero: true})
		default:
			if err := out.AddBacking(img.parent, pos, n); err != nil {
				return nil, err
			}
		}
		pos += n
	}
	return out, nil
}

// chainInfo fills the backing fields of info for a differencing disk.
func (img *Image) chainInfo(info *diskimage.Info) {
	if img.parent == nil {
		info.BackingFile = img.meta.locatorValue("relative_path")
		return
	}
	info.BackingFile = img.parentPath
	info.BackingChain = diskimage.BackingChain(img.parentPath, img.parent)
}
