package importer

import (
	"fmt"

	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/diskimage/vdi"
	"github.com/govisor/govisor/internal/vmimport"
)

// openChain opens a disk's images as one read-only image, nil for a blank
// disk. A VHD, VHDX or VMDK names its own parent, so its driver follows
// the chain from the top image; a VirtualBox chain of VDIs is assembled
// here from the configuration (a differencing VDI records only its
// parent's UUID).
func openChain(s *source, d vmimport.Disk) (diskimage.Image, error) {
	if len(d.Chain) == 0 {
		return nil, nil
	}
	paths := make([]string, len(d.Chain))
	for i, name := range d.Chain {
		p, err := s.resolve(name)
		if err != nil {
			return nil, err
		}
		paths[i] = p
	}
	top := len(paths) - 1
	first := 0
	if top > 0 {
		// Start from the deepest image that is not a differencing VDI
		// the chain must assemble: formats that find their parents open
		// from their own top.
		if f, err := diskimage.Probe(paths[top]); err == nil && f != "vdi" {
			first = top
		}
	}
	img, err := diskimage.Open(paths[first], diskimage.OpenOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", paths[first], err)
	}
	for _, p := range paths[first+1:] {
		child, err := vdi.OpenDiff(p, img)
		if err != nil {
			img.Close()
			return nil, fmt.Errorf("open %s over its parent: %w", p, err)
		}
		img = child
	}
	return img, nil
}
