package vhdx_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/govisor/govisor/internal/diskimage"
)

// TestCrashBeforeFlush snapshots each writable format after a flushed write
// and an unflushed one that allocated new space, as a crash would leave the
// file (the page cache reaching disk in any order is modelled by the
// writes all landing but the metadata update not yet made). The snapshot
// must open, keep the flushed data and read the unflushed range as zeros,
// never as garbage.
func TestCrashBeforeFlush(t *testing.T) {
	for _, tc := range []struct {
		format string
		opts   map[string]string
	}{
		{"vmdk", map[string]string{"subformat": "monolithicSparse"}},
		{"vhd", map[string]string{"subformat": "dynamic"}},
		{"vhdx", map[string]string{"subformat": "dynamic", "block_size": "1M"}},
	} {
		t.Run(tc.format, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "d."+tc.format)
			img, err := diskimage.Create(p, tc.format, 8<<20, diskimage.CreateOptions{Options: tc.opts})
			if err != nil {
				t.Fatal(err)
			}
			old := bytes.Repeat([]byte("flushed!"), 512)
			if _, err := img.WriteAt(old, 0); err != nil {
				t.Fatal(err)
			}
			if err := img.Flush(); err != nil {
				t.Fatal(err)
			}
			if _, err := img.WriteAt(bytes.Repeat([]byte("pending!"), 512), 6<<20); err != nil {
				t.Fatal(err)
			}
			snap, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			img.Close()
			cp := filepath.Join(dir, "crash."+tc.format)
			os.WriteFile(cp, snap, 0o644)
			c, err := diskimage.Open(cp, diskimage.OpenOptions{Format: tc.format, ReadOnly: true})
			if err != nil {
				t.Fatalf("crash image does not open: %v", err)
			}
			defer c.Close()
			got := make([]byte, len(old))
			c.ReadAt(got, 0)
			if !bytes.Equal(got, old) {
				t.Fatal("flushed data lost")
			}
			c.ReadAt(got, 6<<20)
			if !bytes.Equal(got, make([]byte, len(got))) {
				t.Fatal("unflushed allocation visible after the crash")
			}
		})
	}
}
