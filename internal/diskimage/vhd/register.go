package vhd

import (
	"github.com/govisor/govisor/internal/diskimage"
)

func init() {
	diskimage.Register(diskimage.Driver{
		Name:      FormatName,
		Probe:     Probe,
		ProbeTail: ProbeTail,
		Open:      diskimage.OpenAs(OpenWith),
		Create:    diskimage.CreateAs(parseOptions, Create),
	})
}

// ProbeTail reports whether tail (the last bytes of a file) ends with a VHD
// footer, as every VHD does (spec "Hard Disk Footer Format").
func ProbeTail(tail []byte) bool {
	for _, n := range []int{footerSize, footerSize - 1} {
		if len(tail) >= n {
			if _, err := ParseFooter(tail[len(tail)-n:]); err == nil {
				return true
			}
		}
	}
	return false
}

// parseOptions maps registry options (-o subformat=dynamic|fixed,
// azure=on) onto CreateOptions.
func parseOptions(opts diskimage.CreateOptions) (CreateOptions, error) {
	var co CreateOptions
	err := diskimage.ApplyCreateOptions(FormatName, opts, diskimage.FixedOption(&co.Fixed), diskimage.SwitchOption("azure", &co.AzureAlign))
	return co, err
}

// Info describes the open image for `govisor image info`.
func (img *Image) Info() diskimage.Info {
	info := diskimage.Info{Format: FormatName, Subformat: img.Subformat(), VirtualSize: img.size, ReadOnly: img.readOnly}
	if img.dyn != nil {
		info.ClusterSize = img.blockSize
	}
	if img.footer.DiskType == TypeDifferencing {
		img.chainInfo(&info)
	}
	if st, err := img.f.Stat(); err == nil {
		info.ActualSize = allocatedBytes(st)
	}
	return info
}

// ClusterSize is the dynamic block size (2 MiB), or a sector for fixed
// disks: the unit converters align writes to.
func (img *Image) ClusterSize() int64 {
	if img.dyn != nil {
		return img.blockSize
	}
	return sectorSize
}
