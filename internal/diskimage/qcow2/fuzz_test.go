package qcow2

import (
	"bytes"
	"testing"

	"github.com/govisor/govisor/internal/diskimage"
)

// seedImage builds a small image in memory with data, a compressed
// cluster and (v3) a zero cluster.
func seedImage(t testing.TB, opts map[string]string) []byte {
	p, err := parseCreateOptions(opts)
	if err != nil {
		t.Fatal(err)
	}
	mb := &memBackend{}
	if err := format(mb, 64<<10, p, diskimage.CreateOptions{BackingFile: "base.img", BackingFormat: "raw"}); err != nil {
		t.Fatal(err)
	}
	m, err := openBackend(mb, "seed.qcow2", diskimage.OpenOptions{NoBacking: true})
	if err != nil {
		t.Fatal(err)
	}
	m.WriteAt(bytes.Repeat([]byte{1, 2, 3}, 700), 1000)
	m.WriteCompressed(bytes.Repeat([]byte("ab"), int(m.cs/2)), 8*m.cs)
	m.mu.Lock()
	if tb, err := m.l2For(5); err == nil && p.version == 3 {
		tb.e[5] = flagZero
		tb.dirty = true
	}
	m.mu.Unlock()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	return mb.data
}

// FuzzOpen opens mutated images and reads, maps and checks them: no input
// may panic or make the driver allocate more than the file justifies.
func FuzzOpen(f *testing.F) {
	f.Add(seedImage(f, map[string]string{"cluster_size": "512"}))
	f.Add(seedImage(f, map[string]string{"cluster_size": "512", "compat": "0.10"}))
	f.Add(seedImage(f, map[string]string{"cluster_size": "1024", "compression_type": "zstd", "refcount_bits": "4"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<20 {
			return
		}
		m, err := openBackend(&memBackend{data: data}, "fuzz.qcow2", diskimage.OpenOptions{ReadOnly: true, NoBacking: true})
		if err != nil {
			return
		}
		defer m.Close()
		buf := make([]byte, min(m.VirtualSize(), 128<<10))
		m.ReadAt(buf, 0)
		m.Map(0, 1<<20)
		m.Info()
		m.Check(false)
	})
}
