package acpi

import "fmt"

// Relocatable is the ACPI tables as firmware installs them from QEMU's
// fw_cfg table loader (QEMU hw/acpi/bios-linker-loader.c): the tables as
// one blob and the RSDP as another, each pointer holding an offset into
// Tables that the firmware turns into an address once it has placed the
// blobs, then fixing up the checksums.
type Relocatable struct {
	Tables []byte // FACS, DSDT, FADT, MADT, XSDT, RSDT; pointers are offsets into Tables
	RSDP   []byte // the revision 2 RSDP; its pointers are offsets into Tables

	TablePointers []Pointer  // pointer fields in Tables
	RSDPPointers  []Pointer  // pointer fields in RSDP
	TableSums     []Checksum // header checksums in Tables, in order
	RSDPSums      []Checksum // the RSDP's two checksums, in the order to compute
}

// Pointer is a little-endian pointer field of Size bytes at Offset.
type Pointer struct {
	Offset uint32
	Size   uint8
}

// Checksum is a checksum byte at Offset covering [Start, Start+Length).
type Checksum struct {
	Offset, Start, Length uint32
}

// BuildRelocatable lays the tables for cfg out from offset 0 and lists the
// fields the firmware must relocate.
func BuildRelocatable(cfg Config) (*Relocatable, error) {
	img, at, err := build(cfg, 0)
	if err != nil {
		return nil, err
	}
	r := &Relocatable{RSDP: append([]byte(nil), img[at.rsdp:at.rsdp+rsdpSize]...), Tables: img}
	// The RSDP lives in its own blob (firmware puts it in the F segment,
	// where an OS scans for it, section 5.2.5.1); blank its copy here so
	// that only one "RSD PTR " exists.
	clear(img[at.rsdp : at.rsdp+rsdpSize])
	p := func(off uint64, size uint8) Pointer { return Pointer{Offset: uint32(off), Size: size} }
	r.TablePointers = []Pointer{
		p(at.fadt+fadtFirmwareCtrl, 4), // section 5.2.9: FIRMWARE_CTRL -> FACS
		p(at.fadt+fadtDSDT, 4),         // DSDT
		p(at.fadt+fadtXDSDT, 8),        // X_DSDT
	}
	for i := range at.tables {
		r.TablePointers = append(r.TablePointers, p(at.xsdt+headerSize+8*uint64(i), 8), p(at.rsdt+headerSize+4*uint64(i), 4))
	}
	r.RSDPPointers = []Pointer{{Offset: 16, Size: 4}, {Offset: 24, Size: 8}} // RsdtAddress, XsdtAddress (5.2.5.3)
	for _, t := range []uint64{at.dsdt, at.fadt, at.madt, at.xsdt, at.rsdt} {
		length := uint32(img[t+4]) | uint32(img[t+5])<<8 | uint32(img[t+6])<<16 | uint32(img[t+7])<<24
		if uint64(length) > uint64(len(img))-t {
			return nil, fmt.Errorf("acpi: table at %#x of length %d overruns the image", t, length)
		}
		r.TableSums = append(r.TableSums, Checksum{Offset: uint32(t) + 9, Start: uint32(t), Length: length})
	}
	// The first checksum covers the ACPI 1.0 part (20 bytes), the extended
	// one the whole structure including the first (5.2.5.3).
	r.RSDPSums = []Checksum{{Offset: 8, Start: 0, Length: 20}, {Offset: 32, Start: 0, Length: rsdpSize}}
	// Checksum bytes start at 0, as QEMU leaves them: SeaBIOS subtracts the
	// range's sum from the byte, but OVMF (QemuFwCfgAcpi.c
	// ProcessCmdAddChecksum) overwrites it with the sum's negation, counting
	// the old byte in, and skips a table whose sum is then not 0: with the
	// sums build computed left in, a UEFI guest got no FADT and no MADT.
	for _, c := range r.TableSums {
		img[c.Offset] = 0
	}
	for _, c := range r.RSDPSums {
		r.RSDP[c.Offset] = 0
	}
	return r, nil
}
