package virtqueuetest

import (
	"encoding/binary"
	"errors"

	"github.com/govisor/govisor/internal/virtio/virtqueue"
)

// Sentinel errors of the fake driver.
var (
	ErrFull = errors.New("virtqueuetest: no free descriptors")
)

// Desc is one buffer of a chain the fake driver adds.
type Desc struct {
	Addr  uint64
	Len   uint32
	Write bool // device-writable
}

// Used is one entry the device put on the used ring.
type Used struct {
	Head uint16
	Len  uint32
}

// Driver is the driver side of one split virtqueue in Memory.
type Driver struct {
	Mem                           *Memory
	Size                          uint16
	DescAddr, AvailAddr, UsedAddr uint64 // ring addresses

	free     []uint16 // free descriptor indices (stack)
	chainLen []uint16 // descriptors used per head
	indirect []uint64 // indirect table per head (0 if none)
	availIdx uint16
	lastUsed uint16
}

// NewDriver lays out a queue of size entries in memory allocated from mem,
// with the alignment of 2.7 (the descriptor table on its own page).
func NewDriver(mem *Memory, size uint16) (*Driver, error) {
	n := uint64(size)
	d := &Driver{Mem: mem, Size: size}
	var err error
	if d.DescAddr, err = mem.Alloc(16*n, PageSize); err != nil {
		return nil, err
	}
	if d.AvailAddr, err = mem.Alloc(6+2*n, 4); err != nil {
		return nil, err
	}
	if d.UsedAddr, err = mem.Alloc(6+8*n, 4); err != nil {
		return nil, err
	}
	d.Reset()
	return d, nil
}

// Reset frees all descriptors and rewinds the ring indices (after a device
// reset); buffers from Alloc stay allocated.
func (d *Driver) Reset() {
	d.free = d.free[:0]
	for i := int(d.Size) - 1; i >= 0; i-- {
		d.free = append(d.free, uint16(i))
	}
	d.chainLen = make([]uint16, d.Size)
	d.indirect = make([]uint64, d.Size)
	d.availIdx, d.lastUsed = 0, 0
	b, _ := d.Mem.Slice(d.DescAddr, d.UsedAddr+6+8*uint64(d.Size)-d.DescAddr)
	clear(b)
}

// Config returns the queue configuration the driver would program.
func (d *Driver) Config(eventIdx, indirect bool) virtqueue.Config {
	return virtqueue.Config{Size: d.Size, Desc: d.DescAddr, Avail: d.AvailAddr, Used: d.UsedAddr, EventIdx: eventIdx, Indirect: indirect}
}

// Alloc reserves n bytes of guest RAM (16-byte aligned) for buffers.
func (d *Driver) Alloc(n uint64) (uint64, error) { return d.Mem.Alloc(n, 16) }

// WriteDesc stores a raw descriptor (for tests that build bad chains).
func (d *Driver) WriteDesc(table uint64, i uint16, addr uint64, length uint32, flags, next uint16) {
	b, err := d.Mem.Slice(table+16*uint64(i), 16)
	if err != nil {
		return
	}
	binary.LittleEndian.PutUint64(b, addr)
	binary.LittleEndian.PutUint32(b[8:], length)
	binary.LittleEndian.PutUint16(b[12:], flags)
	binary.LittleEndian.PutUint16(b[14:], next)
}

// Publish puts head on the available ring and advances avail idx.
func (d *Driver) Publish(head uint16) {
	b, _ := d.Mem.Slice(d.AvailAddr, 6+2*uint64(d.Size))
	binary.LittleEndian.PutUint16(b[4+2*uint64(d.availIdx%d.Size):], head)
	d.availIdx++
	store16(d.Mem.buf, d.AvailAddr+2-d.Mem.Base, d.availIdx)
}

// SetAvailIdx overwrites avail idx (for tests of bogus indices).
func (d *Driver) SetAvailIdx(v uint16) {
	d.availIdx = v
	store16(d.Mem.buf, d.AvailAddr+2-d.Mem.Base, v)
}

// AddChain adds a chain of direct descriptors and makes it available.
func (d *Driver) AddChain(bufs []Desc) (uint16, error) {
	if len(bufs) == 0 || len(bufs) > len(d.free) {
		return 0, ErrFull
	}
	var head, prev uint16
	for i, b := range bufs {
		idx := d.free[len(d.free)-1]
		d.free = d.free[:len(d.free)-1]
		if i == 0 {
			head = idx
		} else {
			d.setNext(prev, idx)
		}
		var flags uint16
		if b.Write {
			flags = virtqueue.DescFWrite
		}
		d.WriteDesc(d.DescAddr, idx, b.Addr, b.Len, flags, 0)
		prev = idx
	}
	d.chainLen[head] = uint16(len(bufs))
	d.indirect[head] = 0
	d.Publish(head)
	return head, nil
}

func (d *Driver) setNext(i, next uint16) {
	b, _ := d.Mem.Slice(d.DescAddr+16*uint64(i)+12, 4)
	binary.LittleEndian.PutUint16(b, binary.LittleEndian.Uint16(b)|virtqueue.DescFNext)
	binary.LittleEndian.PutUint16(b[2:], next)
}

// AddIndirect adds a chain through one indirect table at table (which
// must have room for len(bufs) descriptors, e.g. from Alloc) and makes it
// available (2.7.5.3).
func (d *Driver) AddIndirect(table uint64, bufs []Desc) (uint16, error) {
	if len(d.free) == 0 {
		return 0, ErrFull
	}
	for i, b := range bufs {
		var flags uint16
		if b.Write {
			flags = virtqueue.DescFWrite
		}
		if i+1 < len(bufs) {
			flags |= virtqueue.DescFNext
		}
		d.WriteDesc(table, uint16(i), b.Addr, b.Len, flags, uint16(i+1))
	}
	head := d.free[len(d.free)-1]
	d.free = d.free[:len(d.free)-1]
	d.WriteDesc(d.DescAddr, head, table, uint32(16*len(bufs)), virtqueue.DescFIndirect, 0)
	d.chainLen[head] = 1
	d.indirect[head] = table
	d.Publish(head)
	return head, nil
}

// UsedIdx is the device's used idx.
func (d *Driver) UsedIdx() uint16 { return load16(d.Mem.buf, d.UsedAddr+2-d.Mem.Base) }

// UsedFlags is the device's used ring flags.
func (d *Driver) UsedFlags() uint16 { return load16(d.Mem.buf, d.UsedAddr-d.Mem.Base) }

// AvailEvent is the avail_event the device published (2.7.10).
func (d *Driver) AvailEvent() uint16 {
	return load16(d.Mem.buf, d.UsedAddr+4+8*uint64(d.Size)-d.Mem.Base)
}

// SetUsedEvent publishes used_event (2.7.10).
func (d *Driver) SetUsedEvent(v uint16) {
	store16(d.Mem.buf, d.AvailAddr+4+2*uint64(d.Size)-d.Mem.Base, v)
}

// SetAvailFlags publishes avail flags (NO_INTERRUPT).
func (d *Driver) SetAvailFlags(v uint16) { store16(d.Mem.buf, d.AvailAddr-d.Mem.Base, v) }

// AvailIdx is the driver's avail idx.
func (d *Driver) AvailIdx() uint16 { return d.availIdx }

// GetUsed returns the next used entry, if any, and frees its descriptors.
func (d *Driver) GetUsed() (Used, bool) {
	if d.lastUsed == d.UsedIdx() {
		return Used{}, false
	}
	slot := uint64(d.lastUsed % d.Size)
	b, _ := d.Mem.Slice(d.UsedAddr+4+8*slot, 8)
	u := Used{Head: uint16(binary.LittleEndian.Uint32(b)), Len: binary.LittleEndian.Uint32(b[4:])}
	d.lastUsed++
	// Ask for an interrupt on the next entry, as Linux does (2.7.10).
	d.SetUsedEvent(d.lastUsed)
	if u.Head < d.Size {
		d.release(u.Head)
	}
	return u, true
}

func (d *Driver) release(head uint16) {
	idx := head
	for range d.chainLen[head] {
		d.free = append(d.free, idx)
		b, _ := d.Mem.Slice(d.DescAddr+16*uint64(idx)+12, 4)
		idx = binary.LittleEndian.Uint16(b[2:])
	}
	d.chainLen[head] = 0
}

// NeedKick reports whether the device asked to be notified of the chains
// added since avail idx was old (VIRTIO_F_EVENT_IDX, 2.7.10), as Linux's
// virtqueue_kick_prepare decides; without EVENT_IDX pass eventIdx false
// to honour the used ring's NO_NOTIFY flag instead.
func (d *Driver) NeedKick(old uint16, eventIdx bool) bool {
	if !eventIdx {
		return d.UsedFlags()&virtqueue.UsedFNoNotify == 0
	}
	cur := d.availIdx
	return cur-d.AvailEvent()-1 < cur-old
}
