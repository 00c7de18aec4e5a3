package virtqueue

import (
	"fmt"
	"io"
)

// Chain is one descriptor chain: the driver's readable buffers followed by
// its writable buffers (2.7.4.2), as slices of guest memory. A Chain is
// reused across Pop calls so the hot path does not allocate.
type Chain struct {
	// Head is the index of the chain's first descriptor, returned on the
	// used ring.
	Head uint16
	// Readable are the device-readable buffers, in order.
	Readable [][]byte
	// Writable are the device-writable buffers, in order.
	Writable [][]byte
	// ReadLen and WriteLen are the total bytes of each part.
	ReadLen, WriteLen uint64

	writeGPA []uint64 // guest address of each writable buffer
	mem      Memory
}

func (c *Chain) reset(mem Memory, head uint16) {
	c.Head = head
	c.Readable = c.Readable[:0]
	c.Writable = c.Writable[:0]
	c.writeGPA = c.writeGPA[:0]
	c.ReadLen, c.WriteLen = 0, 0
	c.mem = mem
}

// add appends one buffer, enforcing readable-before-writable order.
func (c *Chain) add(addr uint64, length uint32, write bool) error {
	if !write && len(c.Writable) > 0 {
		return fmt.Errorf("%w: readable descriptor after a writable one", ErrBadChain)
	}
	b, err := c.mem.Slice(addr, uint64(length))
	if err != nil {
		return fmt.Errorf("%w: buffer: %w", ErrBadChain, err)
	}
	if length == 0 {
		return nil
	}
	if write {
		c.Writable = append(c.Writable, b)
		c.writeGPA = append(c.writeGPA, addr)
		c.WriteLen += uint64(length)
	} else {
		c.Readable = append(c.Readable, b)
		c.ReadLen += uint64(length)
	}
	return nil
}

// ReadAt copies readable bytes starting at offset off of the readable part
// into p; it returns io.EOF if the part ends first.
func (c *Chain) ReadAt(p []byte, off int64) (int, error) {
	return gather(c.Readable, p, off)
}

// WriteAt copies p into the writable part at offset off and marks what
// it wrote dirty; it returns io.ErrShortWrite if the part ends first.
// (Bytes written directly into Writable are marked dirty by Push, as far
// as its written count reaches.)
func (c *Chain) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, io.ErrShortWrite
	}
	done := 0
	for i, b := range c.Writable {
		if done == len(p) {
			break
		}
		if off >= int64(len(b)) {
			off -= int64(len(b))
			continue
		}
		n := copy(b[off:], p[done:])
		c.mem.MarkDirty(c.writeGPA[i]+uint64(off), uint64(n))
		done += n
		off = 0
	}
	if done < len(p) {
		return done, io.ErrShortWrite
	}
	return done, nil
}

// Segments calls fn for each piece of bufs in [off, off+n), in order,
// stopping at the first error; used to hand guest buffers to ReadAt and
// WriteAt of a disk without copying.
func Segments(bufs [][]byte, off, n uint64, fn func(b []byte, at uint64) error) error {
	at := uint64(0)
	for _, b := range bufs {
		if n == 0 {
			return nil
		}
		l := uint64(len(b))
		if off >= l {
			off -= l
			continue
		}
		b = b[off:]
		off = 0
		if uint64(len(b)) > n {
			b = b[:n]
		}
		if err := fn(b, at); err != nil {
			return err
		}
		at += uint64(len(b))
		n -= uint64(len(b))
	}
	return nil
}

func gather(bufs [][]byte, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, io.EOF
	}
	done := 0
	for _, b := range bufs {
		if done == len(p) {
			break
		}
		if off >= int64(len(b)) {
			off -= int64(len(b))
			continue
		}
		done += copy(p[done:], b[off:])
		off = 0
	}
	if done < len(p) {
		return done, io.EOF
	}
	return done, nil
}

// markDirty marks the first n bytes of the writable part dirty.
func (c *Chain) markDirty(n uint32) {
	left := uint64(n)
	for i, b := range c.Writable {
		if left == 0 {
			return
		}
		l := min(left, uint64(len(b)))
		c.mem.MarkDirty(c.writeGPA[i], l)
		left -= l
	}
}
