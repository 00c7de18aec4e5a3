package vdi

import (
	"fmt"
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
	if opts.BackingFile != "" {
		return co, fmt.Errorf("vdi: %w: backing files (differencing images)", diskimage.ErrUnsupported)
	}
	for k, v := range opts.Options {
		switch {
		case k == "subformat" && v == "fixed", k == "static" && (v == "on" || v == "true" || v == ""):
			co.Fixed = true
		case k == "subformat" && v == "dynamic", k == "static" && (v == "off" || v == "false"):
		default:
			return co, fmt.Errorf("vdi: %w: option %s=%s (want subformat=dynamic|fixed or static=on)", diskimage.ErrUnsupported, k, v)
		}
	}
	return co, nil
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
