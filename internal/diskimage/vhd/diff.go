package vhd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/govisor/govisor/internal/diskimage"
)

// openParent finds and opens the parent of the differencing disk at path
// (spec "Dynamic Disk Header Format": Parent Unique ID, Parent Unicode
// Name, Parent Locator Entries). The first candidate that exists and whose
// footer Unique ID is the header's Parent Unique ID is used, so a stale
// file of the same name is never read as the parent.
func (img *Image) openParent(path string, opts diskimage.OpenOptions) error {
	cands := img.parentCandidates(path)
	var wrong []string
	for _, c := range cands {
		if _, err := os.Stat(c); err != nil {
			continue
		}
		p, err := diskimage.OpenBacking(path, c, "", opts)
		if err != nil {
			return err
		}
		pv, ok := p.(*Image)
		if !ok {
			p.Close()
			wrong = append(wrong, fmt.Sprintf("%s is a %s image", c, p.Format()))
			continue
		}
		if pv.footer.UniqueID != img.dyn.ParentUniqueID {
			p.Close()
			wrong = append(wrong, fmt.Sprintf("%s has unique ID %x, the child wants %x", c, pv.footer.UniqueID, img.dyn.ParentUniqueID))
			continue
		}
		img.parent, img.parentPath = p, c
		return nil
	}
	if len(wrong) > 0 {
		return fmt.Errorf("%w: vhd differencing disk %s: no candidate is its parent %q: %s; the parent was replaced or modified since the child was made: find the original parent (a Hyper-V/Virtual PC chain must be moved whole)",
			diskimage.ErrParent, path, img.dyn.ParentName, strings.Join(wrong, "; "))
	}
	return errNoParent(path, img.dyn.ParentName, cands)
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

// readParent reads p at guest offset off from the parent; what lies past
// the parent's end, or everything without a parent (NoBacking), is zeros.
func (img *Image) readParent(p []byte, off int64) error {
	n := int64(0)
	if img.parent != nil {
		n = max(0, min(int64(len(p)), img.parent.VirtualSize()-off))
	}
	if n > 0 {
		if _, err := img.parent.ReadAt(p[:n], off); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("vhd: read parent %s: %w", img.parentPath, err)
		}
	}
	clear(p[n:])
	return nil
}

// mapDiff maps a differencing disk: blocks present here are data, the rest
// is what the parent maps there (zero without a parent).
func (img *Image) mapDiff(off, length int64) ([]diskimage.Extent, error) {
	var out []diskimage.Extent
	add := func(e diskimage.Extent) {
		if k := len(out); k > 0 && out[k-1].Zero == e.Zero && out[k-1].Offset+out[k-1].Length == e.Offset {
			out[k-1].Length += e.Length
		} else {
			out = append(out, e)
		}
	}
	for pos := off; pos < off+length; {
		blk := pos / img.blockSize
		n := min(off+length-pos, (blk+1)*img.blockSize-pos)
		here := blk < int64(len(img.bat)) && img.bat[blk] != unusedBATEntry
		pm, isMapper := img.parent.(diskimage.Mapper)
		switch {
		case here:
			add(diskimage.Extent{Offset: pos, Length: n})
		case img.parent == nil || pos >= img.parent.VirtualSize():
			add(diskimage.Extent{Offset: pos, Length: n, Zero: true})
		case !isMapper:
			add(diskimage.Extent{Offset: pos, Length: n})
		default:
			pn := min(n, img.parent.VirtualSize()-pos)
			ext, err := pm.Map(pos, pn)
			if err != nil {
				return nil, err
			}
			for _, e := range ext {
				add(e)
			}
			if pn < n {
				add(diskimage.Extent{Offset: pos + pn, Length: n - pn, Zero: true})
			}
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
	info.BackingChain = []string{img.parentPath}
	if in, ok := img.parent.(diskimage.Infoer); ok {
		info.BackingChain = append(info.BackingChain, in.Info().BackingChain...)
	}
}
