package pci

import (
	"fmt"
	"math/bits"
)

const numBARs = 6

// Unmapped is the address reported for a BAR that decodes nothing.
const Unmapped = ^uint64(0)

// BARKind is the type of a base address register (section 6.2.5.1).
type BARKind int

// BAR kinds.
const (
	BARNone  BARKind = iota
	BARMem32         // 32-bit memory space
	BARMem64         // 64-bit memory space, uses two BAR slots
	BARIO            // I/O space
	barUpper         // upper half of a BARMem64
)

// BAR type bits in the low bits of the register.
const (
	barIOSpace     = 0x1
	barMem64Type   = 0x4
	barPrefetch    = 0x8
	barMemFlagBits = 0xF
	barIOFlagBits  = 0x3
	minMemBAR      = 16
	minIOBAR       = 4
	maxIOBAR       = 256
	ioSpaceEnd     = 1 << 16
)

type bar struct {
	kind     BARKind
	size     uint64
	prefetch bool
}

type barChange struct {
	bar      int
	old, new uint64
}

// AddBAR defines BAR index as a region of kind and size (a power of two)
// before the device is put on a bus. A BARMem64 also occupies index+1.
func (c *ConfigSpace) AddBAR(index int, kind BARKind, size uint64, prefetchable bool) error {
	if index < 0 || index >= numBARs {
		return fmt.Errorf("%w: index %d", ErrBadBAR, index)
	}
	if bits.OnesCount64(size) != 1 {
		return fmt.Errorf("%w: BAR%d size %#x is not a power of two", ErrBadBAR, index, size)
	}
	switch kind {
	case BARMem32:
		if size < minMemBAR || size > 1<<31 {
			return fmt.Errorf("%w: BAR%d memory size %#x", ErrBadBAR, index, size)
		}
	case BARMem64:
		if size < minMemBAR || size > 1<<62 || index == numBARs-1 {
			return fmt.Errorf("%w: BAR%d 64-bit size %#x", ErrBadBAR, index, size)
		}
	case BARIO:
		if size < minIOBAR || size > maxIOBAR || prefetchable {
			return fmt.Errorf("%w: BAR%d I/O size %#x", ErrBadBAR, index, size)
		}
	default:
		return fmt.Errorf("%w: BAR%d kind %d", ErrBadBAR, index, kind)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bars[index].kind != BARNone || kind == BARMem64 && c.bars[index+1].kind != BARNone {
		return fmt.Errorf("%w: BAR%d already defined", ErrBadBAR, index)
	}
	c.bars[index] = bar{kind: kind, size: size, prefetch: prefetchable}
	// The address bits below the size are hard-wired to zero: that is
	// what makes the sizing protocol (write all ones, read back) work.
	mask := ^(size - 1)
	off := RegBAR0 + 4*index
	flags := c.barFlags(index)
	low := uint32(mask) &^ barMemFlagBits
	if kind == BARIO {
		low = uint32(mask) &^ barIOFlagBits
	}
	for j := range 4 {
		c.wmask[off+j] = byte(low >> (8 * j))
		c.data[off+j] = flags[j]
	}
	if kind == BARMem64 {
		c.bars[index+1] = bar{kind: barUpper}
		for j := range 4 {
			c.wmask[off+4+j] = byte(mask >> (32 + 8*j))
			c.data[off+4+j] = 0
		}
	}
	return nil
}

// barFlags returns the read-only low bytes of BAR i's register.
func (c *ConfigSpace) barFlags(i int) [4]byte {
	b := c.bars[i]
	var f byte
	switch b.kind {
	case BARIO:
		f = barIOSpace
	case BARMem64:
		f = barMem64Type
	}
	if b.prefetch {
		f |= barPrefetch
	}
	return [4]byte{f}
}

// barAddress returns the address programmed into BAR i (any kind).
func (c *ConfigSpace) barAddress(i int) uint64 {
	off := uint16(RegBAR0 + 4*i)
	low := c.get(off, 4)
	switch c.bars[i].kind {
	case BARIO:
		return low &^ barIOFlagBits
	case BARMem64:
		return c.get(off+4, 4)<<32 | low&^barMemFlagBits
	}
	return low &^ barMemFlagBits
}

// decoded returns the address BAR i decodes at, or Unmapped when its
// decode is disabled in the command register or the address is not a
// usable one (zero, or running past the address space: e.g. the all-ones
// value left by sizing).
func (c *ConfigSpace) decoded(i int) uint64 {
	b := c.bars[i]
	cmd := c.get(RegCommand, 2)
	addr := c.barAddress(i)
	end := addr + b.size
	switch b.kind {
	case BARIO:
		if cmd&CommandIO == 0 || addr == 0 || end > ioSpaceEnd {
			return Unmapped
		}
	case BARMem32:
		if cmd&CommandMemory == 0 || addr == 0 || end > 1<<32-1 {
			return Unmapped
		}
	case BARMem64:
		if cmd&CommandMemory == 0 || addr == 0 || end < addr || end == 0 {
			return Unmapped
		}
	default:
		return Unmapped
	}
	return addr
}

// updateMappings records each BAR's decode address and returns the changes.
func (c *ConfigSpace) updateMappings() []barChange {
	var ch []barChange
	for i := range c.bars {
		n := c.decoded(i)
		if n != c.mapped[i] {
			ch = append(ch, barChange{i, c.mapped[i], n})
			c.mapped[i] = n
		}
	}
	return ch
}

// BARAddress returns the address BAR index currently decodes, or Unmapped.
func (c *ConfigSpace) BARAddress(index int) uint64 {
	if index < 0 || index >= numBARs {
		return Unmapped
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mapped[index]
}

// BARSize returns the size and kind of BAR index (0, BARNone if undefined).
func (c *ConfigSpace) BARSize(index int) (uint64, BARKind) {
	if index < 0 || index >= numBARs {
		return 0, BARNone
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.bars[index]
	if b.kind == barUpper {
		return 0, BARNone
	}
	return b.size, b.kind
}
