package vhdx

import (
	"os"
	"syscall"
)

// allocatedBytes is the disk space a file occupies (st_blocks * 512).
func allocatedBytes(st os.FileInfo) int64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Blocks * 512
	}
	return st.Size()
}
