package qcow2

import (
	"fmt"

	"github.com/govisor/govisor/internal/diskimage"
)

// Map reports which parts of [off, off+length) hold data and which read
// as zeros: unallocated clusters without a backing file and zero clusters
// are zero; unallocated clusters over a backing file are what the backing
// file's Map says (data if it cannot tell).
func (m *Image) Map(off, length int64) ([]diskimage.Extent, error) {
	m.mu.Lock()
	size := int64(m.h.size)
	m.mu.Unlock()
	end := min(off+length, size)
	if off < 0 || off > end {
		return nil, fmt.Errorf("%w: map at %d", ErrOutOfRange, off)
	}
	var out []diskimage.Extent
	add := func(o, l int64, zero bool) {
		if n := len(out); n > 0 && out[n-1].Zero == zero && out[n-1].Offset+out[n-1].Length == o {
			out[n-1].Length += l
			return
		}
		out = append(out, diskimage.Extent{Offset: o, Length: l, Zero: zero})
	}
	for pos := off; pos < end; {
		k := min(m.cs-pos&(m.cs-1), end-pos)
		m.mu.Lock()
		e, bm, err := m.lookup(uint64(pos / m.cs))
		m.mu.Unlock()
		if err != nil {
			return nil, err
		}
		switch m.kind(e, bm) {
		case kindData:
			add(pos, k, false)
		case kindZero:
			add(pos, k, true)
		default:
			if err := m.mapBacking(pos, k, add); err != nil {
				return nil, err
			}
		}
		pos += k
	}
	return out, nil
}

const (
	kindData = iota
	kindZero
	kindBacking
)

func (m *Image) kind(e, bm uint64) int {
	switch {
	case e&flagCompressed != 0:
		return kindData
	case m.extL2:
		if bm&0xffffffff != 0 {
			return kindData
		}
		if bm>>32 == 0xffffffff {
			return kindZero
		}
	case m.isZero(e):
		return kindZero
	case e&l2OffMask != 0:
		return kindData
	}
	if m.backing == nil {
		return kindZero
	}
	return kindBacking
}

func (m *Image) mapBacking(pos, k int64, add func(int64, int64, bool)) error {
	bs := m.backing.VirtualSize()
	if pos >= bs {
		add(pos, k, true)
		return nil
	}
	n := min(k, bs-pos)
	bm, ok := m.backing.(diskimage.Mapper)
	if !ok {
		add(pos, n, false)
	} else {
		ext, err := bm.Map(pos, n)
		if err != nil {
			return err
		}
		for _, x := range ext {
			add(x.Offset, x.Length, x.Zero)
		}
	}
	if n < k {
		add(pos+n, k-n, true)
	}
	return nil
}
