package vhdx

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/govisor/govisor/internal/diskimage"
)

func init() {
	diskimage.Register(diskimage.Driver{
		Name:   FormatName,
		Probe:  Probe,
		Open:   diskimage.OpenAs(OpenWith),
		Create: diskimage.CreateAs(parseOptions, Create),
	})
}

// parseOptions maps registry options (-o subformat=dynamic|fixed,
// block_size=32M) onto CreateOptions.
func parseOptions(opts diskimage.CreateOptions) (CreateOptions, error) {
	var co CreateOptions
	if opts.BackingFile != "" {
		return co, fmt.Errorf("vhdx: %w: backing files (differencing disks)", diskimage.ErrUnsupported)
	}
	for k, v := range opts.Options {
		switch {
		case k == "subformat" && v == "fixed":
			co.Fixed = true
		case k == "subformat" && v == "dynamic":
		case k == "block_size":
			n, err := parseSize(v)
			if err != nil || n <= 0 || n > maxBlockSize {
				return co, fmt.Errorf("vhdx: block_size %q: want a power of two from 1M to 256M", v)
			}
			co.BlockSize = uint32(n)
		default:
			return co, fmt.Errorf("vhdx: %w: option %s=%s (want subformat=dynamic|fixed, block_size=N)", diskimage.ErrUnsupported, k, v)
		}
	}
	return co, nil
}

// parseSize reads "32M", "1048576" or "1G".
func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"), strings.HasSuffix(s, "k"):
		mult = kib
	case strings.HasSuffix(s, "M"):
		mult = mib
	case strings.HasSuffix(s, "G"):
		mult = 1 << 30
	}
	if mult != 1 {
		s = s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > 1<<40/mult {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}
