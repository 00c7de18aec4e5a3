package vdi

import (
	"syscall"

	"github.com/govisor/govisor/internal/diskimage"
)

func init() {
	diskimage.Register(diskimage.Driver{
		Name:  FormatName,
		Probe: Probe,
		Open: diskimage.OpenAs(func(path string, opts diskimage.OpenOptions) (*Image, error) {
			return Open(path, opts.ReadOnly)
		}),
		Create: diskimage.CreateAs(parseOptions, Create),
	})
}

// parseOptions maps registry options onto CreateOptions: subformat=
// dynamic|fixed as for vhd and vhdx, or QEMU's static=on|off.
func parseOptions(opts diskimage.CreateOptions) (CreateOptions, error) {
	var co CreateOptions
	err := diskimage.ApplyCreateOptions(FormatName, opts, diskimage.FixedOption(&co.Fixed), diskimage.SwitchOption("static", &co.Fixed))
	return co, err
}

// Info describes the open image for `govisor image info`.
func (img *Image) Info() diskimage.Info {
	info := diskimage.Info{Format: FormatName, Subformat: img.Subformat(), VirtualSize: img.size, ClusterSize: img.block, ReadOnly: img.readOnly}
	if st, err := img.f.Stat(); err == nil {
		info.ActualSize = st.Size()
		if s, ok := st.Sys().(*syscall.Stat_t); ok {
			info.ActualSize = s.Blocks * 512
		}
	}
	return info
}

// ClusterSize is the block size: the unit converters align writes to.
func (img *Image) ClusterSize() int64 { return img.block }
