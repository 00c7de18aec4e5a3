package vmdk

import (
	"fmt"
	"path/filepath"

	"github.com/govisor/govisor/internal/diskimage"
)

// OpenWith opens a VMDK as Open does and, read-only, also a differencing
// disk (a VMware snapshot, "web-000001.vmdk"): its descriptor names the
// parent in parentFileNameHint and the parent's CID in parentCID (spec
// "The Descriptor File"), and a grain its grain table leaves unallocated
// (GTE 0) reads from the parent. opts.NoBacking leaves the parent closed
// (such grains read as zeros). A writable differencing disk is refused
// with diskimage.ErrUnsupported: writing a partial grain would need the
// parent's data merged in.
func OpenWith(path string, opts diskimage.OpenOptions) (*Image, error) {
	f, err := openFile(path, opts.ReadOnly)
	if err != nil {
		return nil, fmt.Errorf("vmdk: open %s: %w", path, err)
	}
	img, err := openOnParent(f, filepath.Dir(path), opts.ReadOnly, opts.ReadOnly)
	if err != nil {
		return nil, fmt.Errorf("vmdk: open %s: %w", path, err)
	}
	if checkParent(img.desc) == nil || opts.NoBacking {
		return img, nil
	}
	if err := img.openParent(path, opts); err != nil {
		img.Close()
		return nil, fmt.Errorf("vmdk: open %s: %w", path, err)
	}
	return img, nil
}

// openParent opens the parent of the differencing disk at path and has
// every sparse extent read its unallocated grains from it.
func (img *Image) openParent(path string, opts diskimage.OpenOptions) error {
	d := img.desc
	if d.ParentFileNameHint == "" {
		return fmt.Errorf("%w: differencing disk without a parentFileNameHint", diskimage.ErrParent)
	}
	p, err := diskimage.OpenBacking(path, d.ParentFileNameHint, "", opts)
	if err != nil {
		return fmt.Errorf("%w: %v", diskimage.ErrParent, err)
	}
	if pv, ok := p.(*Image); ok && pv.desc.CID != d.ParentCID {
		p.Close()
		return fmt.Errorf("%w: parent %s has CID %08x, the child wants %08x: the parent changed after the snapshot was taken",
			diskimage.ErrParent, d.ParentFileNameHint, pv.desc.CID, d.ParentCID)
	}
	img.parent, img.parentPath = p, diskimage.ResolveBacking(path, d.ParentFileNameHint)
	for i, e := range img.exts {
		if ce, ok := e.(childExtent); ok {
			base := img.starts[i]
			ce.setParent(func(b []byte, off int64) error { return diskimage.ReadBacking(p, b, base+off) })
		}
	}
	return nil
}

// childExtent is an extent whose unallocated grains a parent supplies:
// hosted sparse (SPARSE), ESX sparse (VMFSSPARSE) and seSparse (SESPARSE).
type childExtent interface {
	extent
	// setParent has unallocated grains read through read, at
	// extent-relative offsets.
	setParent(read func(p []byte, off int64) error)
}
