package acpi

import "fmt"

// AML encoders for control methods and operation regions (ACPI 6.5
// section 20.2.5 "Term Objects Encoding"), enough for the hotplug AML.

// More AML opcodes (section 20.3).
const (
	opMethod     = 0x14
	opLocal0     = 0x60
	opStore      = 0x70
	opAnd        = 0x7B
	opNotify     = 0x86
	opIf         = 0xA0
	opExtOpRegn  = 0x80 // OpRegionOp is ExtOpPrefix 0x80
	opExtField   = 0x81 // FieldOp is ExtOpPrefix 0x81
	opNullName   = 0x00
	regionSysIO  = 0x01 // RegionSpace SystemIO (section 19.6.100)
	fieldDWord   = 0x03 // FieldFlags AccessType DWordAcc (section 19.6.48)
	fieldNoLock  = 0x00 // LockRule NoLock
	fieldWrZeros = 0x02 << 5
)

// Notify values (section 5.6.6, table 5.166).
const (
	notifyDeviceCheck  = 1
	notifyEjectRequest = 3
)

// method appends Method(n, args) { body }, not serialized (section 19.6.85).
func (a *amlBuilder) method(n string, args int, body func()) {
	if args < 0 || args > 7 {
		a.fail(fmt.Errorf("acpi: AML method %s with %d arguments", n, args))
		return
	}
	a.pkg([]byte{opMethod}, func() {
		a.nameString(n)
		a.b = append(a.b, byte(args)) // MethodFlags: ArgCount in bits 2-0
		body()
	})
}

// opRegion appends OperationRegion(n, SystemIO, base, length) (section 19.6.100).
func (a *amlBuilder) opRegionIO(n string, base, length uint64) {
	a.b = append(a.b, opExtPrefix, opExtOpRegn)
	a.nameString(n)
	a.b = append(a.b, regionSysIO)
	a.integer(base)
	a.integer(length)
}

// fieldUnit is one named field of a Field list and its width in bits.
type fieldUnit struct {
	name string
	bits int
}

// fieldDWordAcc appends Field(region, DWordAcc, NoLock, WriteAsZeros) { units }
// (section 19.6.48); every unit must be a multiple of 32 bits wide, as the
// access width is.
func (a *amlBuilder) fieldDWordAcc(region string, units []fieldUnit) {
	a.pkg([]byte{opExtPrefix, opExtField}, func() {
		a.nameString(region)
		a.b = append(a.b, fieldDWord|fieldNoLock|fieldWrZeros)
		for _, u := range units {
			seg, err := nameSeg(u.name)
			if err != nil {
				a.fail(err)
				return
			}
			if u.bits <= 0 || u.bits%32 != 0 || u.bits >= 1<<28 {
				a.fail(fmt.Errorf("acpi: AML field %s of %d bits", u.name, u.bits))
				return
			}
			// NamedField := NameSeg PkgLength, the PkgLength holding the
			// width in bits itself (section 20.2.5.2).
			a.b = append(append(a.b, seg...), rawPkgLength(uint32(u.bits))...)
		}
	})
}

// local appends LocalN (N = 0..7).
func (a *amlBuilder) local(n int) {
	if n < 0 || n > 7 {
		a.fail(fmt.Errorf("acpi: AML Local%d", n))
		return
	}
	a.b = append(a.b, opLocal0+byte(n))
}

// store appends Store(value, target) (section 19.6.132); value and target
// append their own encodings.
func (a *amlBuilder) store(value, target func()) {
	a.b = append(a.b, opStore)
	value()
	target()
}

// ifAnd appends If (And(x, mask)) { body } (sections 19.6.60 and 19.6.5),
// with no target for the And result.
func (a *amlBuilder) ifAnd(x func(), mask uint64, body func()) {
	a.pkg([]byte{opIf}, func() {
		a.b = append(a.b, opAnd)
		x()
		a.integer(mask)
		a.b = append(a.b, opNullName)
		body()
	})
}

// notify appends Notify(obj, value) (section 19.6.93).
func (a *amlBuilder) notify(obj string, value uint64) {
	a.b = append(a.b, opNotify)
	a.nameString(obj)
	a.integer(value)
}

// call appends an invocation of a method that takes no arguments.
func (a *amlBuilder) call(n string) { a.nameString(n) }

// rawPkgLength encodes v in the PkgLength format without counting the
// encoding's own bytes, as field widths use it (v < 1<<28).
func rawPkgLength(v uint32) []byte {
	if v <= 0x3F {
		return []byte{byte(v)}
	}
	extra := 1
	for v >= 1<<(4+8*extra) {
		extra++
	}
	b := []byte{byte(extra<<6) | byte(v&0x0F)}
	for i := 0; i < extra; i++ {
		b = append(b, byte(v>>(4+8*i)))
	}
	return b
}
