package raw

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// direct holds the alignment O_DIRECT transfers need on this file: of the
// memory buffer and of the file offset and length (statx STATX_DIOALIGN,
// Linux 6.1; the logical block size of a block device otherwise).
type direct struct {
	mem, off int64
}

// defaultAlign is assumed when the kernel does not say: it satisfies both
// 512-byte and 4 KiB logical-block devices.
const defaultAlign = 4096

// openDirect opens a second descriptor with O_DIRECT. Transfers that are
// not aligned go through the page-cached one; Linux keeps the two coherent
// (a direct read first writes back cached dirty pages of its range, a
// direct write invalidates them).
func (m *Image) openDirect(flag int) error {
	df, err := os.OpenFile(m.path, flag|unix.O_DIRECT, 0)
	if err != nil {
		return fmt.Errorf("raw: open %s with O_DIRECT (direct, cache=none): %w; this file system may not support it, drop the direct option", m.path, err)
	}
	m.df, m.dio = df, direct{mem: defaultAlign, off: defaultAlign}
	var st unix.Statx_t
	if err := unix.Statx(int(df.Fd()), "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN, &st); err == nil &&
		st.Mask&unix.STATX_DIOALIGN != 0 {
		if st.Dio_mem_align == 0 || st.Dio_offset_align == 0 {
			df.Close()
			m.df = nil
			return fmt.Errorf("raw: %s does not support O_DIRECT (direct, cache=none) on this file system: drop the direct option", m.path)
		}
		m.dio = direct{mem: int64(st.Dio_mem_align), off: int64(st.Dio_offset_align)}
	} else if sz, err := unix.IoctlGetInt(int(df.Fd()), unix.BLKSSZGET); err == nil && sz > 0 {
		m.dio = direct{mem: int64(sz), off: int64(sz)}
	}
	return nil
}

// fileFor picks the descriptor for a transfer of p at off: the O_DIRECT one
// when everything is aligned as it requires.
func (m *Image) fileFor(p []byte, off int64) *os.File {
	if m.df == nil || len(p) == 0 || off%m.dio.off != 0 || int64(len(p))%m.dio.off != 0 || bufAddr(p)%uintptr(m.dio.mem) != 0 {
		return m.f
	}
	return m.df
}
