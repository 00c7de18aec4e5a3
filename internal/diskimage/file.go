package diskimage

import (
	"fmt"
	"sync"
)

// FlushFile is Flush for the drivers that keep new block-table entries in
// memory until a flush (vhd, vhdx): writeTable writes them back (with mu
// held; it syncs the data they point to first), then f is synced. A
// read-only image has nothing to flush. format prefixes the errors.
func FlushFile(format string, f File, readOnly bool, mu sync.Locker, writeTable func() error) error {
	if readOnly {
		return nil
	}
	mu.Lock()
	err := writeTable()
	mu.Unlock()
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("%s: sync: %w", format, err)
	}
	return nil
}

// CloseFile is Close for a single-file image: it flushes with flush, then
// closes f; the first error is returned.
func CloseFile(format string, f File, flush func() error) error {
	err := flush()
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("%s: close: %w", format, cerr)
	}
	return err
}
