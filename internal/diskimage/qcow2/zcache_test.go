package qcow2

import (
	"bytes"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/govisor/govisor/internal/diskimage"
)

// TestCompressedPieceReads reads compressed clusters (both compression
// types) the way a boot loader does, a few KiB at a time and back and
// forth between clusters: every piece matches what was written, each
// cluster is inflated once while it stays cached, and a cluster rewritten
// by the guest reads its new data (it moved; the cache keys on the old).
func TestCompressedPieceReads(t *testing.T) {
	for _, ct := range []string{"zlib", "zstd"} {
		t.Run(ct, func(t *testing.T) {
			img, err := diskimage.Create(filepath.Join(t.TempDir(), "z.qcow2"), "qcow2", 1<<20,
				diskimage.CreateOptions{Options: map[string]string{"compression_type": ct}})
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			m := img.(*Image)
			rng := rand.New(rand.NewPCG(1, 2))
			want := make([]byte, 4*m.cs)
			for i := range want {
				want[i] = byte(rng.IntN(4)) // compressible
			}
			for c := range int64(4) {
				if err := m.WriteCompressed(want[c*m.cs:(c+1)*m.cs], c*m.cs); err != nil {
					t.Fatal(err)
				}
			}
			inflations := 0
			read := func(off, n int64) {
				t.Helper()
				got := make([]byte, n)
				before := m.zc.get(m.entryOff(t, off/m.cs))
				if _, err := m.ReadAt(got, off); err != nil {
					t.Fatal(err)
				}
				if before == nil {
					inflations++
				}
				if !bytes.Equal(got, want[off:off+n]) {
					t.Fatalf("read %d bytes at %d: wrong data", n, off)
				}
			}
			for off := int64(0); off < 2*m.cs; off += 3000 {
				read(off, min(3000, m.cs-off%m.cs))
			}
			if inflations != 2 {
				t.Errorf("two clusters read in pieces were inflated %d times, want 2", inflations)
			}
			// The guest rewrites part of cluster 1: it moves, and reads see it.
			patchData := bytes.Repeat([]byte{0xee}, 4096)
			if _, err := m.WriteAt(patchData, m.cs+512); err != nil {
				t.Fatal(err)
			}
			copy(want[m.cs+512:], patchData)
			got := make([]byte, m.cs)
			if _, err := m.ReadAt(got, m.cs); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want[m.cs:2*m.cs]) {
				t.Fatal("a rewritten compressed cluster read stale data")
			}
		})
	}
}

// entryOff is the host offset of guest cluster vc's compressed data.
func (m *Image) entryOff(t *testing.T, vc int64) uint64 {
	t.Helper()
	m.mu.Lock()
	e, _, err := m.lookup(uint64(vc))
	m.mu.Unlock()
	if err != nil || e&flagCompressed == 0 {
		t.Fatalf("cluster %d is not compressed: %#x %v", vc, e, err)
	}
	off, _ := m.compressedRange(e)
	return off
}
