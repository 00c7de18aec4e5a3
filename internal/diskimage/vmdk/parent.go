package vmdk

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/diskimage/parentpath"
)

// OpenWith opens a VMDK as Open does and, read-only, also a differencing
// disk (a VMware snapshot, "web-000001.vmdk"): its descriptor names the
// parent in parentFileNameHint and the parent's CID in parentCID (spec
// "The Descriptor File"), and a grain its grain table leaves unallocated
// (GTE 0) reads from the parent. The child's extents are hosted sparse
// (Workstation) or ESXi's vmfsSparse (COWD) or seSparse, over any parent
// VMDK (an ESXi base is a vmfs descriptor over a -flat.vmdk), any number
// of levels deep. opts.NoBacking leaves the parent closed
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

// openParent opens the parent of the differencing disk at path (the first
// of parentCandidates that exists and carries the CID the child names) and
// has every sparse extent read its unallocated grains from it.
func (img *Image) openParent(path string, opts diskimage.OpenOptions) error {
	d := img.desc
	if d.ParentFileNameHint == "" {
		return fmt.Errorf("%w: differencing disk without a parentFileNameHint", diskimage.ErrParent)
	}
	cands := parentCandidates(path, d.ParentFileNameHint)
	found, err := parentpath.Open(path, cands, opts, func(p diskimage.Image) string {
		// Any format may be the parent; a VMDK one must carry the CID.
		if pv, ok := p.(*Image); ok && pv.desc.CID != d.ParentCID {
			return fmt.Sprintf("has CID %08x, the child wants %08x", pv.desc.CID, d.ParentCID)
		}
		return ""
	})
	switch {
	case err != nil:
		return fmt.Errorf("%w: %v", diskimage.ErrParent, err)
	case found.Image == nil && len(found.Wrong) > 0:
		return fmt.Errorf("%w: parent %q: %s: the parent changed after the snapshot was taken",
			diskimage.ErrParent, d.ParentFileNameHint, strings.Join(found.Wrong, "; "))
	case found.Image == nil:
		return fmt.Errorf("%w: parent %q not found (looked for %s): copy the whole chain into one folder",
			diskimage.ErrParent, d.ParentFileNameHint, strings.Join(cands, ", "))
	}
	p := found.Image
	img.parent, img.parentPath = p, found.Path
	for i, e := range img.exts {
		if ce, ok := e.(childExtent); ok {
			base := img.starts[i]
			ce.setParent(func(b []byte, off int64) error { return diskimage.ReadBacking(p, b, base+off) })
		}
	}
	return nil
}

// parentCandidates lists where the parent a descriptor names in hint may
// be, best first, as absolute paths: the hint itself (relative to the
// child's folder, or an absolute host path), then its file name next to
// the child. ESXi names a linked clone's parent by its datastore path
// (/vmfs/volumes/...) and Workstation on Windows by a drive path
// (C:\VMs\base.vmdk): neither exists where a VM folder was copied to.
func parentCandidates(child, hint string) []string {
	c := parentpath.For(child)
	c.Recorded(hint)
	c.Beside(hint)
	out := c.List()
	for i, p := range out {
		if abs, err := filepath.Abs(p); err == nil {
			out[i] = abs
		}
	}
	// A relative and an absolute candidate may name the same file.
	return slices.Compact(out)
}

// childExtent is an extent whose unallocated grains a parent supplies:
// hosted sparse (SPARSE), ESX sparse (VMFSSPARSE) and seSparse (SESPARSE).
type childExtent interface {
	extent
	// setParent has unallocated grains read through read, at
	// extent-relative offsets.
	setParent(read func(p []byte, off int64) error)
}
