package acpi

import (
	"encoding/binary"
	"fmt"
)

// A small ACPI Machine Language encoder, enough for a static DSDT. Section
// numbers refer to the ACPI Specification 6.5, chapter 20 "ACPI Machine
// Language (AML) Specification" and section 6.4 "Resource Data Types".

// AML opcodes (section 20.3).
const (
	opZero        = 0x00
	opOne         = 0x01
	opName        = 0x08
	opBytePrefix  = 0x0A
	opWordPrefix  = 0x0B
	opDWordPrefix = 0x0C
	opQWordPrefix = 0x0E
	opScope       = 0x10
	opBuffer      = 0x11
	opPackage     = 0x12
	opExtPrefix   = 0x5B
	opExtDevice   = 0x82 // DeviceOp is ExtOpPrefix 0x82
	opOnes        = 0xFF

	rootChar        = '\\'
	dualNamePrefix  = 0x2E
	multiNamePrefix = 0x2F
)

// pkgLength encodes the PkgLength of a package whose body (everything after
// the PkgLength) is n bytes long (section 20.2.4). The encoded length counts
// the PkgLength bytes themselves: one byte holds up to 63; otherwise bits 7-6
// of the lead byte give the number (1-3) of following bytes, its bits 3-0 the
// low nibble, and the following bytes the rest, least significant first.
func pkgLength(n int) ([]byte, error) {
	if n+1 <= 0x3F {
		return []byte{byte(n + 1)}, nil
	}
	for extra := 1; extra <= 3; extra++ {
		total := n + 1 + extra
		if total < 1<<(4+8*extra) {
			b := make([]byte, 1+extra)
			b[0] = byte(extra<<6) | byte(total&0x0F)
			for i := 1; i <= extra; i++ {
				b[i] = byte(total >> (4 + 8*(i-1)))
			}
			return b, nil
		}
	}
	return nil, fmt.Errorf("acpi: AML package of %d bytes is too long", n)
}

// nameSeg encodes a NameSeg (section 20.2.2): four characters, a lead of
// A-Z or '_' and then A-Z, 0-9 or '_', padded with '_'.
func nameSeg(s string) ([]byte, error) {
	if len(s) == 0 || len(s) > 4 {
		return nil, fmt.Errorf("acpi: bad AML name segment %q", s)
	}
	seg := []byte("____")
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c == '_' || (c >= 'A' && c <= 'Z') || (i > 0 && c >= '0' && c <= '9')
		if !ok {
			return nil, fmt.Errorf("acpi: bad AML name segment %q", s)
		}
		seg[i] = c
	}
	return seg, nil
}

// nameString encodes a NameString (section 20.2.2): an optional root prefix
// '\' and dot-separated segments, using the dual and multi name prefixes for
// two or more segments.
func nameString(s string) ([]byte, error) {
	var out []byte
	if len(s) > 0 && s[0] == rootChar {
		out = append(out, rootChar)
		s = s[1:]
	}
	var segs [][]byte
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			seg, err := nameSeg(s[start:i])
			if err != nil {
				return nil, err
			}
			segs = append(segs, seg)
			start = i + 1
		}
	}
	switch {
	case len(segs) == 2:
		out = append(out, dualNamePrefix)
	case len(segs) > 2:
		if len(segs) > 255 {
			return nil, fmt.Errorf("acpi: AML name %q has too many segments", s)
		}
		out = append(out, multiNamePrefix, byte(len(segs)))
	}
	for _, seg := range segs {
		out = append(out, seg...)
	}
	return out, nil
}

// amlBuilder accumulates AML; the first error sticks and ends encoding, so
// a table is written in straight-line code and checked once.
type amlBuilder struct {
	b   []byte
	err error
}

// bytes returns the encoded AML or the first encoding error.
func (a *amlBuilder) bytes() ([]byte, error) { return a.b, a.err }

// integer appends the shortest encoding of v (section 20.2.3 ComputationalData):
// ZeroOp, OneOp, OnesOp for all-ones, or a Byte/Word/DWord/QWord prefix.
func (a *amlBuilder) integer(v uint64) {
	switch {
	case v == 0:
		a.b = append(a.b, opZero)
	case v == 1:
		a.b = append(a.b, opOne)
	case v == ^uint64(0):
		a.b = append(a.b, opOnes)
	case v <= 0xFF:
		a.b = append(a.b, opBytePrefix, byte(v))
	case v <= 0xFFFF:
		a.b = binary.LittleEndian.AppendUint16(append(a.b, opWordPrefix), uint16(v))
	case v <= 0xFFFFFFFF:
		a.b = binary.LittleEndian.AppendUint32(append(a.b, opDWordPrefix), uint32(v))
	default:
		a.b = binary.LittleEndian.AppendUint64(append(a.b, opQWordPrefix), v)
	}
}

// eisaID appends the compressed EISA ID of a 7-character PNP ID such as
// "PNP0A03" as a DWord constant (section 19.6.35 EISAID): three letters of
// five bits each (letter - 0x40) and four hex digits, stored big-endian.
func (a *amlBuilder) eisaID(id string) {
	v, err := eisaIDValue(id)
	if err != nil {
		a.fail(err)
		return
	}
	a.b = binary.LittleEndian.AppendUint32(append(a.b, opDWordPrefix), v)
}

// eisaIDValue returns the integer value AML gives to EISAID(id).
func eisaIDValue(id string) (uint32, error) {
	if len(id) != 7 {
		return 0, fmt.Errorf("acpi: bad EISA ID %q", id)
	}
	var v uint32
	for i := 0; i < 3; i++ {
		c := id[i]
		if c < 'A' || c > 'Z' {
			return 0, fmt.Errorf("acpi: bad EISA ID %q", id)
		}
		v = v<<5 | uint32(c-0x40)
	}
	for i := 3; i < 7; i++ {
		c := id[i]
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, fmt.Errorf("acpi: bad EISA ID %q", id)
		}
		v = v<<4 | uint32(d)
	}
	// The 32-bit big-endian value read as a little-endian DWord.
	return v>>24 | (v>>8)&0xFF00 | (v<<8)&0xFF0000 | v<<24, nil
}

// name appends a NamedObject: Name(n, <value appended by value>) (section 19.6.90).
func (a *amlBuilder) name(n string, value func()) {
	a.b = append(a.b, opName)
	a.nameString(n)
	value()
}

// nameString appends an encoded NameString.
func (a *amlBuilder) nameString(n string) {
	ns, err := nameString(n)
	if err != nil {
		a.fail(err)
		return
	}
	a.b = append(a.b, ns...)
}

// pkg appends op, then a PkgLength covering everything body appends.
func (a *amlBuilder) pkg(op []byte, body func()) {
	a.b = append(a.b, op...)
	start := len(a.b)
	body()
	if a.err != nil {
		return
	}
	n := len(a.b) - start
	pl, err := pkgLength(n)
	if err != nil {
		a.fail(err)
		return
	}
	// Make room for the PkgLength bytes in front of the body.
	a.b = append(a.b, pl...)
	copy(a.b[start+len(pl):], a.b[start:start+n])
	copy(a.b[start:], pl)
}

// scope appends Scope(n) { body } (section 19.6.122).
func (a *amlBuilder) scope(n string, body func()) {
	a.pkg([]byte{opScope}, func() { a.nameString(n); body() })
}

// device appends Device(n) { body } (section 19.6.31).
func (a *amlBuilder) device(n string, body func()) {
	a.pkg([]byte{opExtPrefix, opExtDevice}, func() { a.nameString(n); body() })
}

// pkgOf appends Package(len(elems)) { elems } of integers (section 19.6.102).
func (a *amlBuilder) pkgOf(elems ...uint64) {
	if len(elems) > 255 {
		a.fail(fmt.Errorf("acpi: AML package of %d elements", len(elems)))
		return
	}
	a.pkg([]byte{opPackage}, func() {
		a.b = append(a.b, byte(len(elems)))
		for _, e := range elems {
			a.integer(e)
		}
	})
}

// buffer appends Buffer(len(data)) { data } (section 19.6.10).
func (a *amlBuilder) buffer(data []byte) {
	a.pkg([]byte{opBuffer}, func() {
		a.integer(uint64(len(data)))
		a.b = append(a.b, data...)
	})
}

func (a *amlBuilder) fail(err error) {
	if a.err == nil {
		a.err = err
	}
}

// resourceTemplate builds the byte list of a ResourceTemplate (section 6.4).
type resourceTemplate struct{ b []byte }

// Small resource descriptor tags (section 6.4.2): type bit 7 clear, item
// name in bits 6-3, length in bits 2-0.
const (
	tagIRQNoFlags = 0x04<<3 | 2 // IRQ descriptor, 2 bytes (6.4.2.1)
	tagIO         = 0x08<<3 | 7 // I/O port descriptor, 7 bytes (6.4.2.5)
	tagEnd        = 0x0F<<3 | 1 // End tag, 1 byte (6.4.2.9)
)

// Large resource descriptor tags (section 6.4.3): bit 7 set, item name below.
const (
	tagDWordAddr = 0x87 // 6.4.3.5.2
	tagWordAddr  = 0x88 // 6.4.3.5.3
	tagQWordAddr = 0x8A // 6.4.3.5.1
)

// Address space descriptor fields (section 6.4.3.5, table 6.50 and the
// type-specific flags of tables 6.51 and 6.52).
const (
	resTypeMemory = 0
	resTypeIO     = 1
	resTypeBus    = 2

	// General flags: bit 3 _MAF, bit 2 _MIF, bit 1 _DEC=0 (positive
	// decode), bit 0 = 0: the bridge produces the range for its children.
	genFlagsProducerFixed = 1<<3 | 1<<2

	ioRangeEntire       = 3      // _RNG: both ISA and non-ISA ranges
	memReadWrite        = 1      // _RW
	memNonCacheable     = 0 << 1 // _MEM
	memCacheable        = 1 << 1 // _MEM
	memTypeAddressRange = 0 << 3 // _MTP: AddressRangeMemory
	memTypeFlagsMMIO    = memReadWrite | memNonCacheable | memTypeAddressRange
	memTypeFlagsMMIO64  = memReadWrite | memCacheable | memTypeAddressRange
)

// io appends IO(Decode16, min, min, align, length): a fixed I/O range (6.4.2.5).
func (r *resourceTemplate) io(base uint16, align, length byte) {
	r.b = append(r.b, tagIO, 1) // information bit 0: 16-bit decode
	r.b = binary.LittleEndian.AppendUint16(r.b, base)
	r.b = binary.LittleEndian.AppendUint16(r.b, base)
	r.b = append(r.b, align, length)
}

// irqNoFlags appends IRQNoFlags(){irq}: an edge, active-high ISA IRQ (6.4.2.1).
func (r *resourceTemplate) irqNoFlags(irq uint8) {
	r.b = append(r.b, tagIRQNoFlags)
	r.b = binary.LittleEndian.AppendUint16(r.b, 1<<(irq&15))
}

// wordAddr appends a Word Address Space descriptor (6.4.3.5.3) for
// [min, max], produced by the bridge.
func (r *resourceTemplate) wordAddr(resType, typeFlags byte, min, max uint16) {
	r.b = append(r.b, tagWordAddr)
	r.b = binary.LittleEndian.AppendUint16(r.b, 13)
	r.b = append(r.b, resType, genFlagsProducerFixed, typeFlags)
	for _, v := range []uint16{0, min, max, 0, max - min + 1} { // granularity, min, max, translation, length
		r.b = binary.LittleEndian.AppendUint16(r.b, v)
	}
}

// dwordMemory appends a DWord memory Address Space descriptor (6.4.3.5.2).
func (r *resourceTemplate) dwordMemory(typeFlags byte, min, max uint32) {
	r.b = append(r.b, tagDWordAddr)
	r.b = binary.LittleEndian.AppendUint16(r.b, 23)
	r.b = append(r.b, resTypeMemory, genFlagsProducerFixed, typeFlags)
	for _, v := range []uint32{0, min, max, 0, max - min + 1} {
		r.b = binary.LittleEndian.AppendUint32(r.b, v)
	}
}

// qwordMemory appends a QWord memory Address Space descriptor (6.4.3.5.1).
func (r *resourceTemplate) qwordMemory(typeFlags byte, min, max uint64) {
	r.b = append(r.b, tagQWordAddr)
	r.b = binary.LittleEndian.AppendUint16(r.b, 43)
	r.b = append(r.b, resTypeMemory, genFlagsProducerFixed, typeFlags)
	for _, v := range []uint64{0, min, max, 0, max - min + 1} {
		r.b = binary.LittleEndian.AppendUint64(r.b, v)
	}
}

// end returns the template bytes closed by an End tag whose checksum byte
// makes the whole template sum to zero (6.4.2.9).
func (r *resourceTemplate) end() []byte {
	b := append(r.b, tagEnd, 0)
	b[len(b)-1] = -checksum(b)
	return b
}

// checksum returns the 8-bit sum of b.
func checksum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return s
}
