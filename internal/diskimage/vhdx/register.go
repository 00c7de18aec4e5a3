package vhdx

import (
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
	blockSize := diskimage.CreateOption{Key: "block_size", Want: "block_size=1M|2M|...|256M", Set: func(v string) bool {
		n, err := diskimage.ParseSize(v)
		co.BlockSize = uint32(n)
		return err == nil && n >= minBlockSize && n <= maxBlockSize && n&(n-1) == 0
	}}
	err := diskimage.ApplyCreateOptions(FormatName, opts, diskimage.FixedOption(&co.Fixed), blockSize)
	return co, err
}
