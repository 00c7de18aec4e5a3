package snapshot

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Encoder appends little-endian values to a byte slice: the building block
// of the hand-written section encodings (machine and device state), which
// are fast and carry no type information, so every type's
// encode function has a decode function beside it that reads the same
// fields in the same order.
type Encoder struct {
	buf []byte
}

// NewEncoder returns an Encoder that appends to buf (which may be nil).
func NewEncoder(buf []byte) *Encoder { return &Encoder{buf: buf} }

// Bytes returns what was encoded.
func (e *Encoder) Bytes() []byte { return e.buf }

// U8 appends one byte.
func (e *Encoder) U8(v uint8) { e.buf = append(e.buf, v) }

// Bool appends a boolean as one byte, 0 or 1.
func (e *Encoder) Bool(v bool) {
	b := uint8(0)
	if v {
		b = 1
	}
	e.buf = append(e.buf, b)
}

// U16 appends a uint16.
func (e *Encoder) U16(v uint16) { e.buf = binary.LittleEndian.AppendUint16(e.buf, v) }

// U32 appends a uint32.
func (e *Encoder) U32(v uint32) { e.buf = binary.LittleEndian.AppendUint32(e.buf, v) }

// U64 appends a uint64.
func (e *Encoder) U64(v uint64) { e.buf = binary.LittleEndian.AppendUint64(e.buf, v) }

// I64 appends an int64 (two's complement).
func (e *Encoder) I64(v int64) { e.U64(uint64(v)) }

// Int appends an int as an int64.
func (e *Encoder) Int(v int) { e.I64(int64(v)) }

// Raw appends p without a length: for fixed-size arrays, whose size the
// decoder knows.
func (e *Encoder) Raw(p []byte) { e.buf = append(e.buf, p...) }

// Len appends a slice length as a uint32.
func (e *Encoder) Len(n int) { e.U32(uint32(n)) }

// Blob appends p with its length.
func (e *Encoder) Blob(p []byte) {
	e.Len(len(p))
	e.Raw(p)
}

// String appends s with its length.
func (e *Encoder) String(s string) {
	e.Len(len(s))
	e.buf = append(e.buf, s...)
}

// Time appends a wall-clock time: a zero flag, then Unix nanoseconds. The
// monotonic reading and the location are not kept.
func (e *Encoder) Time(t time.Time) {
	e.Bool(!t.IsZero())
	if !t.IsZero() {
		e.I64(t.UnixNano())
	}
}

// Decoder reads what an Encoder wrote, checking every read against the
// input left. The first failure sticks: later reads return zero values and
// Err reports it, so a decode function can read a whole struct and check
// once at the end.
type Decoder struct {
	buf []byte
	off int
	err error
}

// NewDecoder returns a Decoder reading p.
func NewDecoder(p []byte) *Decoder { return &Decoder{buf: p} }

// Err returns the first failure, wrapping ErrCorrupt.
func (d *Decoder) Err() error { return d.err }

// Remaining returns the number of bytes not yet read.
func (d *Decoder) Remaining() int { return len(d.buf) - d.off }

// Fail records a failure (the first one sticks) found by the caller's own
// checks, such as a value out of range.
func (d *Decoder) Fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
}

// Finish fails if input is left over, and returns Err.
func (d *Decoder) Finish() error {
	if d.err == nil && d.Remaining() != 0 {
		d.Fail("%d bytes left after the state", d.Remaining())
	}
	return d.err
}

// take returns the next n bytes, or nil after recording a truncation.
func (d *Decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > d.Remaining() {
		d.Fail("truncated: %d bytes needed at offset %d, %d left", n, d.off, d.Remaining())
		return nil
	}
	p := d.buf[d.off : d.off+n : d.off+n]
	d.off += n
	return p
}

// U8 reads one byte.
func (d *Decoder) U8() uint8 {
	if p := d.take(1); p != nil {
		return p[0]
	}
	return 0
}

// Bool reads a boolean, refusing bytes other than 0 and 1.
func (d *Decoder) Bool() bool {
	switch v := d.U8(); v {
	case 0:
		return false
	case 1:
		return true
	default:
		d.Fail("boolean byte %#x at offset %d", v, d.off-1)
		return false
	}
}

// U16 reads a uint16.
func (d *Decoder) U16() uint16 {
	if p := d.take(2); p != nil {
		return binary.LittleEndian.Uint16(p)
	}
	return 0
}

// U32 reads a uint32.
func (d *Decoder) U32() uint32 {
	if p := d.take(4); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}

// U64 reads a uint64.
func (d *Decoder) U64() uint64 {
	if p := d.take(8); p != nil {
		return binary.LittleEndian.Uint64(p)
	}
	return 0
}

// I64 reads an int64.
func (d *Decoder) I64() int64 { return int64(d.U64()) }

// Int reads an int written by Encoder.Int, refusing values outside
// [0, max]: every int in a state is a count or an index.
func (d *Decoder) Int(field string, max int) int {
	v := d.I64()
	if d.err == nil && (v < 0 || v > int64(max)) {
		d.Fail("%s is %d, want 0 to %d", field, v, max)
		return 0
	}
	return int(v)
}

// Raw fills dst (a fixed-size array's bytes) from the input.
func (d *Decoder) Raw(dst []byte) {
	if p := d.take(len(dst)); p != nil {
		copy(dst, p)
	}
}

// Len reads a slice length for field, refusing more than max elements or
// more than the input left could hold at minSize bytes each, so that no
// allocation follows an unchecked size.
func (d *Decoder) Len(field string, max, minSize int) int {
	v := d.U32()
	if d.err != nil {
		return 0
	}
	if uint64(v) > uint64(max) {
		d.Fail("%s has %d elements, at most %d allowed", field, v, max)
		return 0
	}
	if minSize > 0 && uint64(v)*uint64(minSize) > uint64(d.Remaining()) {
		d.Fail("%s has %d elements of at least %d bytes, %d bytes left", field, v, minSize, d.Remaining())
		return 0
	}
	return int(v)
}

// Blob reads a byte slice written by Encoder.Blob, of at most max bytes.
// The result is a copy; nil if the length is zero.
func (d *Decoder) Blob(field string, max int) []byte {
	n := d.Len(field, max, 1)
	if n == 0 {
		return nil
	}
	return append([]byte(nil), d.take(n)...)
}

// String reads a string written by Encoder.String, of at most max bytes.
func (d *Decoder) String(field string, max int) string {
	n := d.Len(field, max, 1)
	return string(d.take(n))
}

// Time reads a time written by Encoder.Time (in UTC).
func (d *Decoder) Time() time.Time {
	if !d.Bool() {
		return time.Time{}
	}
	return time.Unix(0, d.I64()).UTC()
}
