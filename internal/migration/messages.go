package migration

import (
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/govisor/govisor/internal/allzero"
)

// Region is one guest RAM range.
type Region struct {
	GPA, Size uint64
}

const (
	maxRegions = 1024
	maxDisks   = 64
	// pageZero marks a PAGES entry whose page is all zeroes (no data follows).
	pageZero = 1 << 0
	// pageFlagMask is the low bits of a PAGES entry that hold flags.
	pageFlagMask = PageSize - 1
	// diskZero marks a DISK block that is all zeroes (no data follows).
	diskZero = 1 << 0
)

// hello is the source's handshake message.
type hello struct {
	Features uint64
	Regions  []Region
	Disks    []int64 // sizes in bytes of the mirrored disks
}

func (h hello) encode() []byte {
	b := binary.LittleEndian.AppendUint64(nil, h.Features)
	b = binary.LittleEndian.AppendUint32(b, PageSize)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(h.Regions)))
	for _, r := range h.Regions {
		b = binary.LittleEndian.AppendUint64(b, r.GPA)
		b = binary.LittleEndian.AppendUint64(b, r.Size)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(h.Disks)))
	for _, d := range h.Disks {
		b = binary.LittleEndian.AppendUint64(b, uint64(d))
	}
	return b
}

func decodeHello(p []byte) (hello, error) {
	var h hello
	if len(p) < 16 {
		return h, fmt.Errorf("%w: HELLO of %d bytes", ErrCorrupt, len(p))
	}
	h.Features = binary.LittleEndian.Uint64(p)
	if ps := binary.LittleEndian.Uint32(p[8:]); ps != PageSize {
		return h, fmt.Errorf("%w: source uses %d-byte pages, this side %d", ErrLayout, ps, PageSize)
	}
	n := binary.LittleEndian.Uint32(p[12:])
	p = p[16:]
	if n > maxRegions || uint64(len(p)) < uint64(n)*16+4 {
		return h, fmt.Errorf("%w: HELLO lists %d regions in %d bytes", ErrCorrupt, n, len(p))
	}
	for i := uint32(0); i < n; i++ {
		h.Regions = append(h.Regions, Region{GPA: binary.LittleEndian.Uint64(p[i*16:]), Size: binary.LittleEndian.Uint64(p[i*16+8:])})
	}
	p = p[n*16:]
	d := binary.LittleEndian.Uint32(p)
	p = p[4:]
	if d > maxDisks || uint64(len(p)) != uint64(d)*8 {
		return h, fmt.Errorf("%w: HELLO lists %d disks in %d bytes", ErrCorrupt, d, len(p))
	}
	for i := uint32(0); i < d; i++ {
		h.Disks = append(h.Disks, int64(binary.LittleEndian.Uint64(p[i*8:])))
	}
	return h, nil
}

// layout is a validated RAM layout used to bounds-check addresses.
type layout []Region

// newLayout sorts and validates regions: page-aligned, non-empty, no overlap.
func newLayout(regions []Region) (layout, error) {
	l := append(layout(nil), regions...)
	sort.Slice(l, func(i, j int) bool { return l[i].GPA < l[j].GPA })
	for i, r := range l {
		if r.Size == 0 || r.Size%PageSize != 0 || r.GPA%PageSize != 0 || r.GPA+r.Size < r.GPA {
			return nil, fmt.Errorf("%w: region %#x+%#x is not page-aligned", ErrLayout, r.GPA, r.Size)
		}
		if i > 0 && l[i-1].GPA+l[i-1].Size > r.GPA {
			return nil, fmt.Errorf("%w: regions overlap at %#x", ErrLayout, r.GPA)
		}
	}
	return l, nil
}

// contains reports whether [gpa, gpa+n) lies inside one region.
func (l layout) contains(gpa, n uint64) bool {
	i := sort.Search(len(l), func(i int) bool { return l[i].GPA+l[i].Size > gpa })
	return i < len(l) && gpa >= l[i].GPA && n <= l[i].GPA+l[i].Size-gpa
}

// equal reports whether two layouts describe the same RAM.
func (l layout) equal(o layout) bool {
	if len(l) != len(o) {
		return false
	}
	for i := range l {
		if l[i] != o[i] {
			return false
		}
	}
	return true
}

// pageBatch accumulates one PAGES payload.
type pageBatch struct {
	buf   []byte
	count uint32
}

func (b *pageBatch) reset() {
	b.buf = append(b.buf[:0], 0, 0, 0, 0)
	b.count = 0
}

// add appends a page; data nil or all-zero sends a ZERO entry.
func (b *pageBatch) add(gpa uint64, data []byte) (zero bool) {
	if len(b.buf) == 0 {
		b.reset()
	}
	zero = data == nil || allzero.Is(data)
	if zero {
		b.buf = binary.LittleEndian.AppendUint64(b.buf, gpa|pageZero)
	} else {
		b.buf = binary.LittleEndian.AppendUint64(b.buf, gpa)
		b.buf = append(b.buf, data[:PageSize]...)
	}
	b.count++
	binary.LittleEndian.PutUint32(b.buf, b.count)
	return zero
}

// decodePages walks a PAGES payload, calling fn with each page's address
// and its data (nil for a zero page). It checks every entry against the
// payload's length before touching it.
func decodePages(p []byte, fn func(gpa uint64, data []byte) error) (int, error) {
	if len(p) < 4 {
		return 0, fmt.Errorf("%w: PAGES of %d bytes", ErrCorrupt, len(p))
	}
	n := binary.LittleEndian.Uint32(p)
	p = p[4:]
	if uint64(n)*8 > uint64(len(p)) {
		return 0, fmt.Errorf("%w: PAGES claims %d pages in %d bytes", ErrCorrupt, n, len(p))
	}
	for i := uint32(0); i < n; i++ {
		if len(p) < 8 {
			return 0, fmt.Errorf("%w: PAGES entry %d of %d truncated", ErrCorrupt, i, n)
		}
		e := binary.LittleEndian.Uint64(p)
		p = p[8:]
		gpa, flags := e&^uint64(pageFlagMask), e&pageFlagMask
		var data []byte
		switch flags {
		case pageZero:
		case 0:
			if len(p) < PageSize {
				return 0, fmt.Errorf("%w: PAGES entry %d (%#x) truncated", ErrCorrupt, i, gpa)
			}
			data, p = p[:PageSize:PageSize], p[PageSize:]
		default:
			return 0, fmt.Errorf("%w: PAGES entry %d (%#x) has unknown flags %#x", ErrCorrupt, i, gpa, flags)
		}
		if err := fn(gpa, data); err != nil {
			return 0, err
		}
	}
	if len(p) != 0 {
		return 0, fmt.Errorf("%w: %d bytes after the last PAGES entry", ErrCorrupt, len(p))
	}
	return int(n), nil
}

// diskBlock is one DISK message.
type diskBlock struct {
	Disk   uint32
	Offset uint64
	Length uint32
	Data   []byte // nil for a zero block
}

func (d diskBlock) encode(dst []byte) []byte {
	b := binary.LittleEndian.AppendUint32(dst[:0], d.Disk)
	var flags uint32
	if d.Data == nil {
		flags = diskZero
	}
	b = binary.LittleEndian.AppendUint32(b, flags)
	b = binary.LittleEndian.AppendUint64(b, d.Offset)
	b = binary.LittleEndian.AppendUint32(b, d.Length)
	return append(b, d.Data...)
}

func decodeDisk(p []byte) (diskBlock, error) {
	var d diskBlock
	if len(p) < 20 {
		return d, fmt.Errorf("%w: DISK of %d bytes", ErrCorrupt, len(p))
	}
	d.Disk = binary.LittleEndian.Uint32(p)
	flags := binary.LittleEndian.Uint32(p[4:])
	d.Offset = binary.LittleEndian.Uint64(p[8:])
	d.Length = binary.LittleEndian.Uint32(p[16:])
	rest := p[20:]
	switch flags {
	case diskZero:
		if len(rest) != 0 {
			return d, fmt.Errorf("%w: zero DISK block carries %d bytes", ErrCorrupt, len(rest))
		}
	case 0:
		if uint64(len(rest)) != uint64(d.Length) {
			return d, fmt.Errorf("%w: DISK block claims %d bytes, carries %d", ErrCorrupt, d.Length, len(rest))
		}
		d.Data = rest
	default:
		return d, fmt.Errorf("%w: DISK block has unknown flags %#x", ErrCorrupt, flags)
	}
	return d, nil
}

// totals counts what was sent; ROUND_END carries one round's, COMPLETE the
// whole migration's.
type totals struct {
	Round      uint32
	Pages      uint64
	DiskBlocks uint64
	StateLen   uint64 // COMPLETE only
	StateCRC   uint32 // COMPLETE only
}

func (t totals) encode() []byte {
	b := binary.LittleEndian.AppendUint32(nil, t.Round)
	b = binary.LittleEndian.AppendUint64(b, t.Pages)
	b = binary.LittleEndian.AppendUint64(b, t.DiskBlocks)
	b = binary.LittleEndian.AppendUint64(b, t.StateLen)
	return binary.LittleEndian.AppendUint32(b, t.StateCRC)
}

func decodeTotals(typ MsgType, p []byte) (totals, error) {
	if len(p) != 32 {
		return totals{}, fmt.Errorf("%w: %v of %d bytes, want 32", ErrCorrupt, typ, len(p))
	}
	return totals{
		Round:      binary.LittleEndian.Uint32(p),
		Pages:      binary.LittleEndian.Uint64(p[4:]),
		DiskBlocks: binary.LittleEndian.Uint64(p[12:]),
		StateLen:   binary.LittleEndian.Uint64(p[20:]),
		StateCRC:   binary.LittleEndian.Uint32(p[28:]),
	}, nil
}

// abortReason makes an ABORT payload from an error, bounded in size.
func abortReason(err error) []byte {
	s := err.Error()
	if len(s) > maxReason {
		s = s[:maxReason]
	}
	return []byte(s)
}

// sanitize bounds and cleans a peer's ABORT reason for our error messages.
func sanitize(p []byte) string {
	if len(p) > maxReason {
		p = p[:maxReason]
	}
	out := make([]byte, 0, len(p))
	for _, c := range p {
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		out = append(out, c)
	}
	return string(out)
}

var zeroPage [PageSize]byte
