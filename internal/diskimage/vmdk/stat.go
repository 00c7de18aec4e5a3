package vmdk

import (
	"syscall"

	"github.com/govisor/govisor/internal/diskimage"
)

// allocatedBytes is the disk space a file occupies (st_blocks * 512).
func allocatedBytes(f diskimage.File) int64 {
	st, err := f.Stat()
	if err != nil {
		return 0
	}
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Blocks * 512
	}
	return st.Size()
}
