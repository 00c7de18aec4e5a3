package blk

import (
	"encoding/binary"
	"io"
	"time"

	"github.com/govisor/govisor/internal/virtio/virtqueue"
)

type virtqueueChain = virtqueue.Chain

// request is a worker's scratch space, reused for every request so the
// hot path does not allocate.
type request struct {
	hdr    [headerSize]byte
	seg    [segSize]byte
	status [1]byte
	off    int64 // disk offset of the current segment walk
	write  bool
	d      *Device
	iov    [][]byte // the request's data buffers, for VectorIO
}

// zeros backs writes of zeros for images without ZeroWriter.
var zeros [64 << 10]byte

// handle serves one request (5.2.6) and returns the bytes written into the
// chain: the data read plus the status byte.
func (d *Device) handle(c *virtqueue.Chain, r *request) uint32 {
	if c.WriteLen == 0 {
		return 0 // nowhere to put a status; the driver sees length 0
	}
	start := time.Now()
	statusAt := int64(c.WriteLen - 1)
	written := uint32(1)
	var st byte
	if _, err := c.ReadAt(r.hdr[:], 0); err != nil {
		st = StatusIOErr
		d.stats.errors.Add(1)
	} else {
		st, written = d.dispatch(c, r, statusAt)
		typ := binary.LittleEndian.Uint32(r.hdr[0:])
		var n uint64
		switch {
		case st != StatusOK:
		case typ == TypeIn:
			n = uint64(written - 1)
		case typ == TypeOut:
			n = c.ReadLen - headerSize
		}
		d.stats.account(typ, n, st, time.Since(start))
	}
	r.status[0] = st
	c.WriteAt(r.status[:], statusAt)
	return written
}

func (d *Device) dispatch(c *virtqueue.Chain, r *request, statusAt int64) (byte, uint32) {
	typ := binary.LittleEndian.Uint32(r.hdr[0:])
	sector := binary.LittleEndian.Uint64(r.hdr[8:])
	switch typ {
	case TypeIn:
		n := uint64(statusAt)
		if !d.inRange(sector, n) {
			return StatusIOErr, 1
		}
		if err := d.transfer(c.Writable, 0, n, int64(sector*SectorSize), false, r); err != nil {
			return d.ioerr(), 1
		}
		return StatusOK, uint32(n) + 1
	case TypeOut:
		n := c.ReadLen - headerSize
		if d.readOnly || !d.inRange(sector, n) {
			return StatusIOErr, 1
		}
		if err := d.transfer(c.Readable, headerSize, n, int64(sector*SectorSize), true, r); err != nil {
			return d.ioerr(), 1
		}
		return StatusOK, 1
	case TypeFlush:
		if d.readOnly {
			return StatusOK, 1
		}
		if err := d.img.Flush(); err != nil {
			return d.ioerr(), 1
		}
		return StatusOK, 1
	case TypeGetID:
		n := min(uint64(statusAt), IDBytes)
		c.WriteAt(d.serial[:n], 0)
		return StatusOK, uint32(n) + 1
	case TypeDiscard, TypeWriteZeroes:
		if d.readOnly {
			return StatusIOErr, 1
		}
		if typ == TypeDiscard && d.discarder == nil {
			return StatusUnsupp, 1
		}
		return d.discardOrZero(c, r, typ == TypeDiscard), 1
	}
	return StatusUnsupp, 1
}

func (d *Device) ioerr() byte {
	d.ioErrors.Add(1)
	return StatusIOErr
}

// inRange checks that n bytes at sector are whole sectors inside the disk.
func (d *Device) inRange(sector, n uint64) bool {
	return n%SectorSize == 0 && n <= MaxTransfer && sector <= d.capacity && n/SectorSize <= d.capacity-sector
}

// transfer moves n bytes between the chain's buffers (starting skip bytes
// in) and the disk at off: in one vectored call when the image has one
// (a 1 MiB request is up to 256 guest pages, so this is one system call
// instead of up to 256), else one guest buffer at a time.
func (d *Device) transfer(bufs [][]byte, skip, n uint64, off int64, write bool, r *request) error {
	r.off, r.write, r.d = off, write, d
	if d.vec == nil {
		return virtqueue.Segments(bufs, skip, n, r.segment)
	}
	r.iov = r.iov[:0]
	virtqueue.Segments(bufs, skip, n, r.gather)
	var err error
	if write {
		_, err = d.vec.WritevAt(r.iov, off)
	} else {
		var k int
		k, err = d.vec.ReadvAt(r.iov, off)
		if err == io.EOF && uint64(k) == n {
			err = nil
		}
	}
	clear(r.iov) // guest memory is not kept past the request
	return err
}

// gather collects the request's buffers into r.iov (a method value, so
// no closure is allocated per request).
func (r *request) gather(b []byte, at uint64) error {
	r.iov = append(r.iov, b)
	return nil
}

// segment is the per-buffer step of transfer; a method value on the
// reused request, so no closure is allocated per request.
func (r *request) segment(b []byte, at uint64) error {
	off := r.off + int64(at)
	if r.write {
		_, err := r.d.img.WriteAt(b, off)
		return err
	}
	n, err := r.d.img.ReadAt(b, off)
	if err == io.EOF && n == len(b) {
		err = nil
	}
	return err
}

// discardOrZero serves DISCARD and WRITE_ZEROES (5.2.6.2): segments of
// sector, num_sectors, flags.
func (d *Device) discardOrZero(c *virtqueue.Chain, r *request, discard bool) byte {
	body := c.ReadLen - headerSize
	if body == 0 || body%segSize != 0 || body/segSize > maxSegments {
		return StatusIOErr
	}
	for i := uint64(0); i < body/segSize; i++ {
		if _, err := c.ReadAt(r.seg[:], int64(headerSize+i*segSize)); err != nil {
			return StatusIOErr
		}
		sector := binary.LittleEndian.Uint64(r.seg[0:])
		count := uint64(binary.LittleEndian.Uint32(r.seg[8:]))
		flags := binary.LittleEndian.Uint32(r.seg[12:])
		limit := uint64(MaxWriteZeroesSectors)
		if discard {
			limit = MaxDiscardSectors
		}
		switch {
		case flags&^flagUnmap != 0, discard && flags&flagUnmap != 0:
			return StatusUnsupp // reserved bits, or unmap on discard (5.2.6.2)
		case count > limit || sector > d.capacity || count > d.capacity-sector:
			return StatusIOErr
		}
		off, n := int64(sector*SectorSize), int64(count*SectorSize)
		var err error
		switch {
		case discard:
			err = d.discarder.Discard(off, n)
		case d.zeroer != nil:
			err = d.zeroer.WriteZeroes(off, n, flags&flagUnmap != 0)
		default:
			err = d.writeZeros(off, n)
		}
		if err != nil {
			return d.ioerr()
		}
	}
	return StatusOK
}

func (d *Device) writeZeros(off, n int64) error {
	for n > 0 {
		k := min(n, int64(len(zeros)))
		if _, err := d.img.WriteAt(zeros[:k], off); err != nil {
			return err
		}
		off += k
		n -= k
	}
	return nil
}
