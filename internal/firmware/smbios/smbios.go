// Package smbios builds the SMBIOS tables govisor hands firmware over
// fw_cfg, as QEMU does (hw/smbios/smbios.c): "etc/smbios/smbios-tables"
// holds the structures and "etc/smbios/smbios-anchor" a 2.1 (32-bit) entry
// point. SeaBIOS copies both into the F segment, adding its own BIOS
// Information (type 0) and fixing the table address and checksums
// (src/fw/biostables.c); OVMF installs each structure through its SMBIOS
// protocol (OvmfPkg SmbiosPlatformDxe). Guests read them as DMI:
// /sys/class/dmi/id, dmidecode, Windows' WMI, cloud-init's platform checks.
//
// Formats: DMTF DSP0134 "System Management BIOS (SMBIOS) Reference
// Specification" 3.x: 5.2.1 (the 2.1 entry point), 6.1 (structures and
// their strings), 7.2 (type 1), 7.4 (type 3), 7.5 (type 4), 7.17 (type
// 16), 7.18 (type 17), 7.20 (type 19), 7.33 (type 32), 7.46 (type 127).
package smbios

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Version is the SMBIOS version the tables follow (2.8, as QEMU's pc
// machines with the 32-bit entry point).
const (
	VersionMajor = 2
	VersionMinor = 8
)

// fw_cfg file names (QEMU's hw/smbios/smbios.c, fw_cfg_build_smbios).
const (
	FileTables = "etc/smbios/smbios-tables"
	FileAnchor = "etc/smbios/smbios-anchor"
)

// MemRange is a guest RAM range, for the memory array's mapped addresses.
type MemRange struct{ Start, Size uint64 }

// Config is what the tables say about the machine.
type Config struct {
	// UUID is the system's (type 1), in RFC 4122 byte order; zero means
	// none was given (SMBIOS 7.2.1: "present but not set").
	UUID [16]byte
	// Serial is the system's serial number (type 1), e.g. the VM's name.
	Serial string
	CPUs   int // vCPUs, reported as one socket
	// RAM lists the guest's RAM ranges (type 19); their sum is the
	// memory device's size (type 17).
	RAM []MemRange
}

// Manufacturer and product govisor's machines report.
const (
	manufacturer = "govisor"
	product      = "govisor VM"
	family       = "Virtual Machine"
)

// Tables are the two fw_cfg files.
type Tables struct {
	Structures []byte // etc/smbios/smbios-tables
	Anchor     []byte // etc/smbios/smbios-anchor
}

// Build makes the tables for cfg.
func Build(cfg Config) (Tables, error) {
	if cfg.CPUs < 1 || cfg.CPUs > 255 {
		return Tables{}, fmt.Errorf("smbios: %d vCPUs: type 4 counts 1 to 255 in its 8-bit fields", cfg.CPUs)
	}
	var total uint64
	for _, r := range cfg.RAM {
		total += r.Size
	}
	if total == 0 {
		return Tables{}, errors.New("smbios: no RAM")
	}
	b := &builder{}
	b.type1(cfg)
	b.type3()
	b.type4(cfg.CPUs)
	array := b.type16(total)
	b.type17(array, total)
	for _, r := range cfg.RAM {
		b.type19(array, r)
	}
	b.type32()
	b.end()
	if len(b.out) > 0xFFFF {
		return Tables{}, fmt.Errorf("smbios: %d bytes of structures, more than the 2.1 entry point's 16-bit length", len(b.out))
	}
	return Tables{Structures: b.out, Anchor: anchor(len(b.out), b.count, b.largest)}, nil
}

// builder appends structures with consecutive handles.
type builder struct {
	out     []byte
	handle  uint16
	count   int
	largest int
}

// add appends a structure of the given type: its formatted area (after the
// 4-byte header) and its strings, numbered from 1 in the order given
// (6.1.3); an empty string is left out and its field must say 0.
func (b *builder) add(typ byte, formatted []byte, strs ...string) uint16 {
	h := b.handle
	b.handle++
	start := len(b.out)
	b.out = append(b.out, typ, byte(4+len(formatted)))
	b.out = binary.LittleEndian.AppendUint16(b.out, h)
	b.out = append(b.out, formatted...)
	n := 0
	for _, s := range strs {
		if s != "" {
			b.out = append(append(b.out, s...), 0)
			n++
		}
	}
	if n == 0 {
		b.out = append(b.out, 0) // an empty string-set is two NULs
	}
	b.out = append(b.out, 0)
	b.count++
	b.largest = max(b.largest, len(b.out)-start)
	return h
}

// strIndex numbers strs as add does: the field value of each (0 if empty).
func strIndex(strs ...string) []byte {
	idx := make([]byte, len(strs))
	n := byte(0)
	for i, s := range strs {
		if s != "" {
			n++
			idx[i] = n
		}
	}
	return idx
}

// type1 is System Information (7.2), length 0x1B.
func (b *builder) type1(cfg Config) {
	s := strIndex(manufacturer, product, "", cfg.Serial, "", family)
	f := []byte{s[0], s[1], s[2], s[3]}
	f = append(f, smbiosUUID(cfg.UUID)...)
	f = append(f, 0x06, s[4], s[5]) // wake-up type: power switch; SKU; family
	b.add(1, f, manufacturer, product, "", cfg.Serial, "", family)
}

// smbiosUUID is u in SMBIOS's encoding (7.2.1): since 2.6 the first three
// fields are little-endian, the rest as in RFC 4122.
func smbiosUUID(u [16]byte) []byte {
	out := make([]byte, 16)
	copy(out, u[:])
	out[0], out[1], out[2], out[3] = u[3], u[2], u[1], u[0]
	out[4], out[5] = u[5], u[4]
	out[6], out[7] = u[7], u[6]
	return out
}

// type3 is System Enclosure or Chassis (7.4), length 0x16 (2.7+).
func (b *builder) type3() {
	f := []byte{
		1,       // manufacturer (string 1)
		0x01,    // type: other
		0, 0, 0, // version, serial, asset tag: none
		0x03, 0x03, // boot-up and power supply state: safe
		0x03,       // thermal state: safe
		0x02,       // security status: unknown
		0, 0, 0, 0, // OEM-defined
		0,    // height: unspecified
		0,    // power cords: unspecified
		0, 0, // no contained elements (count, record length)
		0, // SKU: none
	}
	b.add(3, f, manufacturer)
}

// type4 is Processor Information (7.5), length 0x2A (2.6+): one socket
// holding every vCPU, one thread each.
func (b *builder) type4(cpus int) {
	f := []byte{
		1,    // socket designation (string 1)
		0x03, // processor type: central processor
		0x01, // family: other (and family 2 below)
		2,    // manufacturer (string 2)
	}
	f = append(f, make([]byte, 8)...)             // processor ID: not given
	f = append(f, 0)                              // version: none
	f = append(f, 0)                              // voltage: unknown
	f = binary.LittleEndian.AppendUint16(f, 0)    // external clock: unknown
	f = binary.LittleEndian.AppendUint16(f, 2000) // max speed, MHz (as QEMU: 0 fails Windows' SVVP)
	f = binary.LittleEndian.AppendUint16(f, 2000) // current speed
	f = append(f, 0x41, 0x01)                     // status: populated, enabled; upgrade: other
	for range 3 {
		f = binary.LittleEndian.AppendUint16(f, 0xFFFF) // L1, L2, L3 cache handles: none
	}
	f = append(f, 0, 0, 0)                            // serial, asset tag, part number: none
	f = append(f, byte(cpus), byte(cpus), byte(cpus)) // cores, cores enabled, threads
	f = binary.LittleEndian.AppendUint16(f, 0x02)     // characteristics: unknown
	f = binary.LittleEndian.AppendUint16(f, 0x01)     // family 2: other
	b.add(4, f, "CPU 0", manufacturer)
}

// type16 is Physical Memory Array (7.17), length 0x17 (2.7+).
func (b *builder) type16(total uint64) uint16 {
	f := []byte{0x01, 0x03, 0x06} // location: other; use: system memory; error correction: multi-bit ECC
	kib := total >> 10
	if kib >= 0x80000000 {
		f = binary.LittleEndian.AppendUint32(f, 0x80000000) // see the extended field
	} else {
		f = binary.LittleEndian.AppendUint32(f, uint32(kib))
		total = 0
	}
	f = binary.LittleEndian.AppendUint16(f, 0xFFFE) // error information: not provided
	f = binary.LittleEndian.AppendUint16(f, 1)      // memory devices
	f = binary.LittleEndian.AppendUint64(f, total)  // extended maximum capacity, bytes
	return b.add(16, f)
}

// type17 is Memory Device (7.18), length 0x28 (2.8): one device holding
// all of the guest's RAM.
func (b *builder) type17(array uint16, total uint64) {
	f := binary.LittleEndian.AppendUint16(nil, array)
	f = binary.LittleEndian.AppendUint16(f, 0xFFFE) // error information: not provided
	f = binary.LittleEndian.AppendUint16(f, 0xFFFF) // total width: unknown
	f = binary.LittleEndian.AppendUint16(f, 0xFFFF) // data width: unknown
	mib := total >> 20
	if mib >= 0x7FFF {
		f = binary.LittleEndian.AppendUint16(f, 0x7FFF) // see the extended size
	} else {
		f = binary.LittleEndian.AppendUint16(f, uint16(mib))
	}
	f = append(f, 0x09, 0)                        // form factor: DIMM; not in a set
	f = append(f, 1, 0, 0x07)                     // device locator (string 1); bank: none; type: RAM
	f = binary.LittleEndian.AppendUint16(f, 0x02) // type detail: other
	f = binary.LittleEndian.AppendUint16(f, 0)    // speed: unknown
	f = append(f, 2, 0, 0, 0, 0)                  // manufacturer (string 2); serial, asset, part: none; attributes
	ext := uint32(0)
	if mib >= 0x7FFF {
		ext = uint32(min(mib, 0x7FFFFFFF))
	}
	f = binary.LittleEndian.AppendUint32(f, ext) // extended size, MiB
	f = binary.LittleEndian.AppendUint16(f, 0)   // configured speed: unknown
	for range 3 {
		f = binary.LittleEndian.AppendUint16(f, 0) // min, max, configured voltage: unknown
	}
	b.add(17, f, "DIMM 0", manufacturer)
}

// type19 is Memory Array Mapped Address (7.20), length 0x1F (2.7+).
func (b *builder) type19(array uint16, r MemRange) {
	end := r.Start + r.Size - 1
	var f []byte
	if end>>10 >= 0xFFFFFFFF {
		f = binary.LittleEndian.AppendUint32(f, 0xFFFFFFFF) // see the extended addresses
		f = binary.LittleEndian.AppendUint32(f, 0xFFFFFFFF)
	} else {
		f = binary.LittleEndian.AppendUint32(f, uint32(r.Start>>10))
		f = binary.LittleEndian.AppendUint32(f, uint32(end>>10))
	}
	f = binary.LittleEndian.AppendUint16(f, array)
	f = append(f, 1) // partition width
	if end>>10 >= 0xFFFFFFFF {
		f = binary.LittleEndian.AppendUint64(f, r.Start)
		f = binary.LittleEndian.AppendUint64(f, end)
	} else {
		f = append(f, make([]byte, 16)...)
	}
	b.add(19, f)
}

// type32 is System Boot Information (7.33): no errors detected.
func (b *builder) type32() { b.add(32, make([]byte, 7)) }

// end is End-of-Table (7.46).
func (b *builder) end() { b.add(127, nil) }

// anchor is the 2.1 entry point (5.2.1), 31 bytes: firmware fills in the
// table's address and redoes both checksums; they are right here too.
func anchor(tableLen, count, largest int) []byte {
	a := make([]byte, 0x1F)
	copy(a, "_SM_")
	a[5] = 0x1F
	a[6], a[7] = VersionMajor, VersionMinor
	binary.LittleEndian.PutUint16(a[8:], uint16(largest))
	copy(a[0x10:], "_DMI_")
	binary.LittleEndian.PutUint16(a[0x16:], uint16(tableLen))
	binary.LittleEndian.PutUint16(a[0x1C:], uint16(count))
	a[0x1E] = VersionMajor<<4 | VersionMinor // BCD revision
	a[0x15] = checksum(a[0x10:0x1F])
	a[4] = checksum(a)
	return a
}

// checksum is the byte that makes b sum to zero.
func checksum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return -s
}
