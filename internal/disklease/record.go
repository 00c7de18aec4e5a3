// Package disklease keeps two VMMs from running one VM off the same disk on
// shared storage: a delta lease, as sanlock's and VMFS's on-disk locks do,
// in a small file beside the disk. The holder renews it every second or so;
// another host may take it only after watching it stay unchanged for the
// whole expiry time, so no clocks are compared between hosts. A holder that
// cannot renew (storage unreachable, host partitioned) gives the lease up
// well before that, and the VMM stops its guest: it fences itself.
package disklease

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"
)

// recordSize is one lease record: a whole 4 KiB block, so that it can be
// read and written with O_DIRECT (which on NFS always goes to the server).
const recordSize = 4096

// magic starts every record (version 1 of the layout below).
var magic = [8]byte{'G', 'V', 'L', 'E', 'A', 'S', 'E', 1}

// maxName bounds the host and VM names a record holds.
const maxName = 255

const flagReleased = 1

// Record is the content of a lease file.
//
// Layout (little endian): magic[8], gen u64, nonce u64, wall-clock ns i64
// (the writer's, for people only), flags u8, host len u8 + bytes, VM len u8
// + bytes, zero padding, CRC-32 (IEEE) of the first 4092 bytes at 4092.
type Record struct {
	Gen      uint64 // bumped by every write: a change means a live holder
	Nonce    uint64 // random per acquisition: tells two acquirers apart
	Written  time.Time
	Released bool
	Owner    Owner
}

// Owner is who holds a lease: a VM on a host.
type Owner struct {
	Host string
	VM   string
}

func (o Owner) String() string { return o.VM + " on host " + o.Host }

// free reports whether nobody holds the lease.
func (r Record) free() bool { return r.Released || r.Owner == (Owner{}) }

// ErrCorrupt is returned for a lease file that is not a valid record.
var ErrCorrupt = errors.New("disklease: corrupt lease record")

func (r Record) encode(b []byte) error {
	if len(r.Owner.Host) > maxName || len(r.Owner.VM) > maxName {
		return fmt.Errorf("disklease: owner %q/%q: names are limited to %d bytes", r.Owner.Host, r.Owner.VM, maxName)
	}
	clear(b[:recordSize])
	copy(b, magic[:])
	binary.LittleEndian.PutUint64(b[8:], r.Gen)
	binary.LittleEndian.PutUint64(b[16:], r.Nonce)
	if !r.Written.IsZero() {
		binary.LittleEndian.PutUint64(b[24:], uint64(r.Written.UnixNano()))
	}
	if r.Released {
		b[32] = flagReleased
	}
	off := 33
	for _, s := range []string{r.Owner.Host, r.Owner.VM} {
		b[off] = byte(len(s))
		off += 1 + copy(b[off+1:], s)
	}
	binary.LittleEndian.PutUint32(b[recordSize-4:], crc32.ChecksumIEEE(b[:recordSize-4]))
	return nil
}

func decode(b []byte) (Record, error) {
	var r Record
	if len(b) < recordSize {
		return r, fmt.Errorf("%w: %d bytes, want %d", ErrCorrupt, len(b), recordSize)
	}
	if [8]byte(b[:8]) != magic {
		return r, fmt.Errorf("%w: bad magic %q", ErrCorrupt, b[:8])
	}
	if got, want := crc32.ChecksumIEEE(b[:recordSize-4]), binary.LittleEndian.Uint32(b[recordSize-4:]); got != want {
		return r, fmt.Errorf("%w: checksum %#x, want %#x", ErrCorrupt, got, want)
	}
	r.Gen = binary.LittleEndian.Uint64(b[8:])
	r.Nonce = binary.LittleEndian.Uint64(b[16:])
	if ns := binary.LittleEndian.Uint64(b[24:]); ns != 0 {
		r.Written = time.Unix(0, int64(ns))
	}
	r.Released = b[32]&flagReleased != 0
	off := 33
	var names [2]string
	for i := range names {
		n := int(b[off])
		if off+1+n > recordSize-4 {
			return r, fmt.Errorf("%w: name runs past the record", ErrCorrupt)
		}
		names[i] = string(b[off+1 : off+1+n])
		off += 1 + n
	}
	r.Owner = Owner{Host: names[0], VM: names[1]}
	return r, nil
}
