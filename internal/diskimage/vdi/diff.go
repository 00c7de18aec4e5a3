package vdi

import (
	"fmt"
	"os"

	"github.com/govisor/govisor/internal/diskimage"
)

// OpenDiff opens the differencing VDI at path (a VirtualBox snapshot,
// image type 4) read-only over parent, which the image then owns and
// closes. In a differencing image a free block (VDI_IMAGE_BLOCK_FREE) is
// not stored here and reads from the parent, while a zero block
// (VDI_IMAGE_BLOCK_ZERO) reads as zeros (VirtualBox
// src/VBox/Storage/VDI.cpp, vdiRead returning VERR_VD_BLOCK_FREE for the
// parent to answer). When the parent is a VDI its uuidCreate must be the
// child's uuidLinkage, so a wrong parent is never read.
func OpenDiff(path string, parent diskimage.Image) (*Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("vdi: %w", err)
	}
	img, err := openImage(f, true, true)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("vdi: open %s: %w", path, err)
	}
	if img.hdr.Type != typeDiff {
		f.Close()
		return nil, fmt.Errorf("vdi: %s is not a differencing image", path)
	}
	if p, ok := parent.(*Image); ok && p.hdr.UUIDCreate != img.hdr.UUIDLinkage {
		f.Close()
		return nil, fmt.Errorf("%w: vdi %s links to parent %x, the parent given is %x", diskimage.ErrParent, path, img.hdr.UUIDLinkage, p.hdr.UUIDCreate)
	}
	img.diff, img.parent = true, parent
	return img, nil
}
