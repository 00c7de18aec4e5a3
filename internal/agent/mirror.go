package agent

import (
	"fmt"
	"github.com/govisor/govisor/internal/node"
	"os"
	"path/filepath"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/diskimage"
)

// Live migration without shared storage: the destination agent makes
// blank images for the VM's disks in the VM's folder and the migration
// mirrors the disks into them (govisor ctl migrate --mirror-disks, QEMU's
// drive-mirror, vSphere's Storage vMotion). The source's files stay where
// they were.

// maxMirrorDisk bounds a mirrored disk's size (1 PiB), so that a bad
// request cannot make the agent create absurd images.
const maxMirrorDisk = 1 << 50

// mirrorFormat is the format of the destination's copies: sparse, and
// readable by every tool.
const mirrorFormat = "qcow2"

// mirrorTargets creates a blank image per disk of s, of the sizes the
// source gave, in dir/disks, and returns s with its disks on them and the
// paths. On error nothing is left behind.
func mirrorTargets(dir string, s api.VMSpec, sizes []int64) (api.VMSpec, []string, error) {
	if len(sizes) != len(s.Disks) {
		return s, nil, fieldErr("mirrorDisks", fmt.Sprintf("%d sizes for %d disks", len(sizes), len(s.Disks)))
	}
	for i, n := range sizes {
		if n <= 0 || n > maxMirrorDisk || n%512 != 0 {
			return s, nil, fieldErr(fmt.Sprintf("mirrorDisks[%d]", i), fmt.Sprintf("%d bytes: a disk size is a positive multiple of 512 up to 1 PiB", n))
		}
	}
	ddir := filepath.Join(dir, "disks")
	if err := os.MkdirAll(ddir, 0o700); err != nil {
		return s, nil, fmt.Errorf("agent: mirrored disks folder: %w", err)
	}
	out := s
	out.Disks = make([]api.DiskSpec, len(s.Disks))
	var paths []string
	for i, d := range s.Disks {
		p := filepath.Join(ddir, fmt.Sprintf("vd%c.%s", 'a'+i%26, mirrorFormat))
		os.Remove(p) // a leftover of an earlier failed attempt
		img, err := diskimage.Create(p, mirrorFormat, sizes[i], diskimage.CreateOptions{})
		if err == nil {
			err = img.Close()
		}
		if err != nil {
			node.RemoveFiles(append(paths, p))
			return s, nil, fmt.Errorf("agent: mirror target for disk %d of %s: %w", i, s.Name, err)
		}
		paths = append(paths, p)
		out.Disks[i] = api.DiskSpec{Path: p, Format: mirrorFormat, ReadOnly: d.ReadOnly}
	}
	return out, paths, nil
}

// withoutDisks is s for a destination VMM on shared storage: it opens the
// source's disks at the handover, so it is given none of its own (a
// destination's --disk names mirror targets).
func withoutDisks(s api.VMSpec) api.VMSpec {
	s.Disks = nil
	return s
}

// mirroredSpec points the definition's disks at the destination's copies.
func mirroredSpec(s *api.VMSpec, paths []string) {
	for i := range s.Disks {
		if i < len(paths) {
			s.Disks[i] = api.DiskSpec{Path: paths[i], Format: mirrorFormat, ReadOnly: s.Disks[i].ReadOnly}
		}
	}
}

// diskSizes returns the virtual size of each disk of s.
func diskSizes(s api.VMSpec) ([]int64, error) {
	var out []int64
	for i, d := range s.Disks {
		info, err := diskimage.InfoOf(d.Path, d.Format)
		if err != nil {
			return nil, fmt.Errorf("agent: size of disk %d (%s): %w", i, d.Path, err)
		}
		out = append(out, info.VirtualSize)
	}
	return out, nil
}
