package qcow2

import "sync"

// zcache keeps the guest clusters most recently decompressed, by the host
// offset of their compressed data: a guest that reads a compressed cluster
// in pieces (a boot loader through BIOS int13 or UEFI block I/O, a few KiB
// at a time) inflates it once instead of once per piece, as qemu's
// one-cluster cache does (BDRVQcow2State.cluster_cache). Compressed data
// never changes in place: a write moves the cluster, and new clusters are
// always allocated past hostEnd, which only a repair moves back (reset).
type zcache struct {
	mu   sync.Mutex
	ents []zent
	next int
}

type zent struct {
	off  uint64
	data []byte // the whole guest cluster; never written after it is cached
}

// zcacheBytes bounds the memory one image's cache holds.
const zcacheBytes = 1 << 20

func newZcache(clusterSize int64) *zcache {
	return &zcache{ents: make([]zent, max(1, min(8, zcacheBytes/clusterSize)))}
}

// get returns the cached cluster whose compressed data starts at off.
func (z *zcache) get(off uint64) []byte {
	z.mu.Lock()
	defer z.mu.Unlock()
	for _, e := range z.ents {
		if e.data != nil && e.off == off {
			return e.data
		}
	}
	return nil
}

// put caches data, replacing the oldest entry.
func (z *zcache) put(off uint64, data []byte) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.ents[z.next] = zent{off: off, data: data}
	z.next = (z.next + 1) % len(z.ents)
}

// reset forgets every cluster (a repair rewrote the file's layout).
func (z *zcache) reset() {
	z.mu.Lock()
	defer z.mu.Unlock()
	clear(z.ents)
}

// readCompressedCached is readCompressed through the cache; the result is
// shared and must only be read.
func (m *Image) readCompressedCached(e uint64) ([]byte, error) {
	off, _ := m.compressedRange(e)
	if data := m.zc.get(off); data != nil {
		return data, nil
	}
	data, err := m.readCompressed(e)
	if err != nil {
		return nil, err
	}
	m.zc.put(off, data)
	return data, nil
}
