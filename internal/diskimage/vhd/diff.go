package vhd

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/diskimage/parentpath"
)

// openParent finds and opens the parent of the differencing disk at path
// (spec "Dynamic Disk Header Format": Parent Unique ID, Parent Unicode
// Name, Parent Locator Entries). The first candidate that exists and whose
// footer Unique ID is the header's Parent Unique ID is used, so a stale
// file of the same name is never read as the parent.
func (img *Image) openParent(path string, opts diskimage.OpenOptions) error {
	cands := img.parentCandidates(path)
	found, err := parentpath.Open(path, cands, opts, func(p diskimage.Image) string {
		pv, ok := p.(*Image)
		switch {
		case !ok:
			return fmt.Sprintf("is a %s image", p.Format())
		case pv.footer.UniqueID != img.dyn.ParentUniqueID:
			return fmt.Sprintf("has unique ID %x, the child wants %x", pv.footer.UniqueID, img.dyn.ParentUniqueID)
		}
		return ""
	})
	switch {
	case err != nil:
		return err
	case found.Image == nil && len(found.Wrong) > 0:
		return fmt.Errorf("%w: vhd differencing disk %s: no candidate is its parent %q: %s; the parent was replaced or modified since the child was made: find the original parent (a Hyper-V/Virtual PC chain must be moved whole)",
			diskimage.ErrParent, path, img.dyn.ParentName, strings.Join(found.Wrong, "; "))
	case found.Image == nil:
		return errNoParent(path, img.dyn.ParentName, cands)
	}
	img.parent, img.parentPath = found.Image, found.Path
	return nil
}

// readDiff reads chunk at offset in of block blk of a differencing disk:
// sectors whose bit is set in the block's sector bitmap (spec "Block
// Allocation Table and Data Blocks": bit set, the sector holds data here;
// the most significant bit of byte 0 is sector 0) come from this file, the
// others from the parent.
func (img *Image) readDiff(chunk []byte, blk, in int64) error {
	base := blk * img.blockSize
	if blk >= int64(len(img.bat)) || img.bat[blk] == unusedBATEntry {
		return img.readParent(chunk, base+in)
	}
	start := int64(img.bat[blk]) * sectorSize
	bm := make([]byte, img.bitmapSize)
	if _, err := img.f.ReadAt(bm, start); err != nil {
		return fmt.Errorf("vhd: read bitmap of block %d: %w", blk, err)
	}
	present := func(pos int64) bool {
		s := pos / sectorSize
		return bm[s/8]&(0x80>>(s%8)) != 0
	}
	for done := int64(0); done < int64(len(chunk)); {
		pos := in + done
		here := present(pos)
		end := (pos/sectorSize + 1) * sectorSize
		for end < in+int64(len(chunk)) && present(end) == here {
			end += sectorSize
		}
		end = min(end, in+int64(len(chunk)))
		part := chunk[done : end-in]
		if here {
			if _, err := img.f.ReadAt(part, start+img.bitmapSize+pos); err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("vhd: read block %d: %w", blk, err)
			}
		} else if err := img.readParent(part, base+pos); err != nil {
			return err
		}
		done = end - in
	}
	return nil
}

// readParent reads p at guest offset off from the parent.
func (img *Image) readParent(p []byte, off int64) error {
	if err := diskimage.ReadBacking(img.parent, p, off); err != nil {
		return fmt.Errorf("vhd: parent %s: %w", img.parentPath, err)
	}
	return nil
}

// mapDiff maps a differencing disk: blocks present here are data, the rest
// is what the parent maps there (zero without a parent).
func (img *Image) mapDiff(off, length int64) ([]diskimage.Extent, error) {
	var out diskimage.ExtentList
	for pos := off; pos < off+length; {
		blk := pos / img.blockSize
		n := min(off+length-pos, (blk+1)*img.blockSize-pos)
		if blk < int64(len(img.bat)) && img.bat[blk] != unusedBATEntry {
			out.Add(diskimage.Extent{Offset: pos, Length: n})
		} else if err := out.AddBacking(img.parent, pos, n); err != nil {
			return nil, err
		}
		pos += n
	}
	return out, nil
}

// chainInfo fills the backing fields of info for a differencing disk.
func (img *Image) chainInfo(info *diskimage.Info) {
	info.Subformat = "differencing"
	if img.parent == nil {
		info.BackingFile = img.dyn.ParentName
		return
	}
	info.BackingFile = img.parentPath
	info.BackingChain = diskimage.BackingChain(img.parentPath, img.parent)
}
