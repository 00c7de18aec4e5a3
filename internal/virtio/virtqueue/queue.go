// Package virtqueue implements the device side of virtio split virtqueues
// (virtio 1.2 section 2.7): it takes descriptor chains the driver made
// available, validates everything the guest controls, exposes the buffers
// as zero-copy slices of guest memory, and returns them on the used ring.
// It does not depend on KVM and is fuzzed with random rings.
package virtqueue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// Memory is the guest memory a queue accesses.
type Memory interface {
	// Slice returns the host bytes backing [gpa, gpa+n), or an error if
	// any of it lies outside guest RAM.
	Slice(gpa, n uint64) ([]byte, error)
	// MarkDirty records that the device wrote [gpa, gpa+n), so live
	// migration sends those pages again (KVM's dirty log only sees vCPU
	// writes).
	MarkDirty(gpa, n uint64)
}

// Sentinel errors. A device that gets one from Pop must stop using the
// queue and set DEVICE_NEEDS_RESET (2.1.2).
var (
	ErrBadQueue = errors.New("virtqueue: invalid queue configuration")
	ErrBadChain = errors.New("virtqueue: malformed descriptor chain")
	ErrBadRing  = errors.New("virtqueue: malformed available ring")
	ErrBroken   = errors.New("virtqueue: queue is broken")
)

// Descriptor flags (2.7.5).
const (
	DescFNext     = 1
	DescFWrite    = 2
	DescFIndirect = 4
)

// Ring flags (2.7.6, 2.7.8).
const (
	AvailFNoInterrupt = 1
	UsedFNoNotify     = 1
)

// MaxSize is the largest split queue size (2.7: Queue Size up to 32768).
const MaxSize = 32768

// MaxIndirect bounds the descriptors in one indirect table (2.7.5.3); Linux
// may exceed the queue size with indirect tables, so the bound is separate.
const MaxIndirect = 1024

const (
	descSize     = 16
	usedElemSize = 8
)

// Config is where the driver placed a queue and how large it is.
type Config struct {
	Size               uint16
	Desc, Avail, Used  uint64 // guest-physical addresses of the three parts
	EventIdx, Indirect bool   // negotiated VIRTIO_F_RING_EVENT_IDX / _INDIRECT_DESC
}

// Queue is the device side of one split virtqueue. It is used by one
// goroutine at a time (the device's worker for this queue).
type Queue struct {
	mem  Memory
	cfg  Config
	desc []byte // descriptor table
	ring []byte // avail ring entries
	used []byte // used ring entries

	availFlags, availIdx, usedEvent word // driver-written
	usedIdx, availEvent             word // device-written (usedIdx shares a word with used flags)

	usedFlags     uint16 // our used ring flags (NO_NOTIFY)
	lastAvail     uint16 // next available entry to take
	nextUsed      uint16 // our used idx
	signalledUsed uint16 // used idx when NeedInterrupt last said yes or no
	broken        bool
}

// New validates cfg against guest memory (2.7: alignment, power-of-two
// size) and returns a queue starting at ring index 0.
func New(mem Memory, cfg Config) (*Queue, error) {
	n := uint64(cfg.Size)
	switch {
	case cfg.Size == 0 || bits.OnesCount16(cfg.Size) != 1:
		return nil, fmt.Errorf("%w: size %d is not a power of two", ErrBadQueue, cfg.Size)
	case cfg.Desc%16 != 0 || cfg.Avail%2 != 0 || cfg.Used%4 != 0:
		return nil, fmt.Errorf("%w: misaligned rings desc %#x avail %#x used %#x", ErrBadQueue, cfg.Desc, cfg.Avail, cfg.Used)
	}
	q := &Queue{mem: mem, cfg: cfg}
	var err error
	if q.desc, err = mem.Slice(cfg.Desc, n*descSize); err != nil {
		return nil, fmt.Errorf("%w: descriptor table: %w", ErrBadQueue, err)
	}
	// Available ring: flags, idx, ring[n], used_event (2.7.6).
	if _, err = mem.Slice(cfg.Avail, 6+2*n); err != nil {
		return nil, fmt.Errorf("%w: available ring: %w", ErrBadQueue, err)
	}
	if q.ring, err = mem.Slice(cfg.Avail+4, 2*n); err != nil {
		return nil, fmt.Errorf("%w: available ring: %w", ErrBadQueue, err)
	}
	// Used ring: flags, idx, ring[n], avail_event (2.7.8).
	if _, err = mem.Slice(cfg.Used, 6+usedElemSize*n); err != nil {
		return nil, fmt.Errorf("%w: used ring: %w", ErrBadQueue, err)
	}
	if q.used, err = mem.Slice(cfg.Used+4, usedElemSize*n); err != nil {
		return nil, fmt.Errorf("%w: used ring: %w", ErrBadQueue, err)
	}
	for _, w := range []struct {
		dst *word
		gpa uint64
	}{
		{&q.availFlags, cfg.Avail},
		{&q.availIdx, cfg.Avail + 2},
		{&q.usedEvent, cfg.Avail + 4 + 2*n},
		{&q.usedIdx, cfg.Used + 2},
		{&q.availEvent, cfg.Used + 4 + usedElemSize*n},
	} {
		// The aligned word around a 2-byte field lies in the same page,
		// and guest RAM regions are page-granular, so this cannot fail
		// for rings that are in RAM.
		b, err := mem.Slice(w.gpa&^3, 4)
		if err != nil {
			return nil, fmt.Errorf("%w: ring index at %#x: %w", ErrBadQueue, w.gpa, err)
		}
		if *w.dst, err = newWord(b, w.gpa); err != nil {
			return nil, err
		}
	}
	return q, nil
}

// Size is the queue size.
func (q *Queue) Size() uint16 { return q.cfg.Size }

// Config returns the queue's configuration.
func (q *Queue) Config() Config { return q.cfg }

// Broken reports whether the queue saw a malformed ring or chain; it
// stays broken until the device is reset.
func (q *Queue) Broken() bool { return q.broken }

func (q *Queue) fail(err error) error {
	q.broken = true
	return err
}

// Pending returns how many chains the driver has made available and the
// device has not taken yet.
func (q *Queue) Pending() (uint16, error) {
	if q.broken {
		return 0, ErrBroken
	}
	n := q.availIdx.load() - q.lastAvail
	if n > q.cfg.Size {
		return 0, q.fail(fmt.Errorf("%w: avail idx %d is %d entries ahead of %d (queue size %d)",
			ErrBadRing, q.lastAvail+n, n, q.lastAvail, q.cfg.Size))
	}
	return n, nil
}

// Pop takes the next available descriptor chain into c, reusing c's
// slices. It returns false if none is available. Any error means the
// queue is broken (ErrBadRing, ErrBadChain) and the device needs reset.
func (q *Queue) Pop(c *Chain) (bool, error) {
	n, err := q.Pending()
	if err != nil || n == 0 {
		return false, err
	}
	// The atomic load of avail idx orders the reads below after it.
	head := binary.LittleEndian.Uint16(q.ring[2*(q.lastAvail%q.cfg.Size):])
	if head >= q.cfg.Size {
		return false, q.fail(fmt.Errorf("%w: head %d >= queue size %d", ErrBadRing, head, q.cfg.Size))
	}
	c.reset(q.mem, head)
	if err := q.walk(c, head); err != nil {
		return false, q.fail(err)
	}
	// avail_event is left behind while the device is busy: the driver
	// kicks at most once when it passes it, and EnableNotify moves it to
	// lastAvail before the device sleeps (2.7.10).
	q.lastAvail++
	return true, nil
}

// walk follows the chain at head, validating every descriptor (2.7.5).
func (q *Queue) walk(c *Chain, head uint16) error {
	table, size := q.desc, uint32(q.cfg.Size)
	idx, count, limit := uint32(head), uint32(0), uint32(q.cfg.Size)
	indirect := false
	for {
		count++
		if count > limit {
			return fmt.Errorf("%w: chain at head %d is longer than %d descriptors (loop?)", ErrBadChain, head, limit)
		}
		d := table[idx*descSize : idx*descSize+descSize]
		addr := binary.LittleEndian.Uint64(d)
		length := binary.LittleEndian.Uint32(d[8:])
		flags := binary.LittleEndian.Uint16(d[12:])
		next := uint32(binary.LittleEndian.Uint16(d[14:]))
		if flags&DescFIndirect != 0 {
			// 2.7.5.3.1: no nested tables, no NEXT with INDIRECT, and a
			// table needs the negotiated feature.
			switch {
			case !q.cfg.Indirect:
				return fmt.Errorf("%w: indirect descriptor without VIRTIO_F_INDIRECT_DESC", ErrBadChain)
			case indirect:
				return fmt.Errorf("%w: nested indirect descriptor", ErrBadChain)
			case flags&DescFNext != 0:
				return fmt.Errorf("%w: indirect descriptor with NEXT", ErrBadChain)
			case length == 0 || length%descSize != 0 || length/descSize > MaxIndirect:
				return fmt.Errorf("%w: indirect table length %d", ErrBadChain, length)
			}
			t, err := q.mem.Slice(addr, uint64(length))
			if err != nil {
				return fmt.Errorf("%w: indirect table: %w", ErrBadChain, err)
			}
			table, size, idx = t, length/descSize, 0
			indirect, count, limit = true, 0, length/descSize
			continue
		}
		if err := c.add(addr, length, flags&DescFWrite != 0); err != nil {
			return err
		}
		if flags&DescFNext == 0 {
			return nil
		}
		if next >= size {
			return fmt.Errorf("%w: next %d >= table size %d", ErrBadChain, next, size)
		}
		idx = next
	}
}

// Push returns chain c to the driver with written bytes written to its
// writable buffers (2.7.8), and marks what the device wrote dirty.
func (q *Queue) Push(c *Chain, written uint32) error {
	return q.PushHead(c.Head, written, c)
}

// PushHead returns the chain at head to the driver; c, if not nil, is the
// chain whose first written writable bytes are marked dirty.
func (q *Queue) PushHead(head uint16, written uint32, c *Chain) error {
	if q.broken {
		return ErrBroken
	}
	if c != nil {
		c.markDirty(written)
	}
	slot := uint64(q.nextUsed % q.cfg.Size)
	e := q.used[slot*usedElemSize : slot*usedElemSize+usedElemSize]
	binary.LittleEndian.PutUint32(e, uint32(head))
	binary.LittleEndian.PutUint32(e[4:], written)
	q.mem.MarkDirty(q.cfg.Used+4+slot*usedElemSize, usedElemSize)
	q.nextUsed++
	// The atomic store publishes the element before the index (2.7.13.3)
	// and fences it against the used_event load in NeedInterrupt.
	q.storeUsedWord()
	q.mem.MarkDirty(q.cfg.Used, 4)
	return nil
}

// NeedInterrupt reports whether the driver wants an interrupt for the
// entries pushed since the last call: with EVENT_IDX when used idx passed
// used_event (2.7.10), else unless avail flags say NO_INTERRUPT (2.7.7).
func (q *Queue) NeedInterrupt() bool {
	old, cur := q.signalledUsed, q.nextUsed
	q.signalledUsed = cur
	if old == cur {
		return false
	}
	if q.cfg.EventIdx {
		ev := q.usedEvent.load()
		return cur-ev-1 < cur-old
	}
	return q.availFlags.load()&AvailFNoInterrupt == 0
}

// DisableNotify asks the driver not to kick while the device is busy
// taking chains (2.7.10): NO_NOTIFY without EVENT_IDX; with EVENT_IDX
// avail_event already trails what was taken.
func (q *Queue) DisableNotify() {
	if !q.cfg.EventIdx {
		q.setUsedFlags(UsedFNoNotify)
	}
}

// EnableNotify asks for a kick on the next available chain and reports
// whether chains became available meanwhile (then the device must keep
// taking them instead of sleeping).
func (q *Queue) EnableNotify() bool {
	if q.cfg.EventIdx {
		q.availEvent.store(q.lastAvail)
	} else {
		q.setUsedFlags(0)
	}
	q.mem.MarkDirty(q.cfg.Used, 4)
	q.mem.MarkDirty(q.cfg.Used+4+usedElemSize*uint64(q.cfg.Size), 2)
	// The store above is a full fence, so this load sees a chain the
	// driver added before it read our flags/avail_event.
	return q.availIdx.load() != q.lastAvail
}

func (q *Queue) setUsedFlags(f uint16) {
	q.usedFlags = f
	q.storeUsedWord()
}

// storeUsedWord writes used flags and idx, which share an aligned word
// the device owns (the used ring is 4-byte aligned, 2.7), in one store.
func (q *Queue) storeUsedWord() {
	q.usedIdx.storeWord(uint32(q.usedFlags) | uint32(q.nextUsed)<<16)
}
