// Package tableloader encodes the command file that QEMU passes firmware
// as fw_cfg "etc/table-loader": how to place blobs read from fw_cfg in
// guest memory and patch the pointers and checksums between them. SeaBIOS
// (src/fw/romfile_loader.c) and OVMF (QemuFwCfgAcpiPlatformDxe) execute it
// to install ACPI tables.
//
// The format is QEMU's hw/acpi/bios-linker-loader.c: a sequence of 128-byte
// little-endian entries, a 32-bit command followed by its arguments, file
// names NUL-padded to 56 bytes.
package tableloader

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Command numbers (BIOS_LINKER_LOADER_COMMAND_*).
const (
	CmdAllocate    = 1
	CmdAddPointer  = 2
	CmdAddChecksum = 3
)

// Zone says where an allocation may go (BIOS_LINKER_LOADER_ALLOC_ZONE_*).
type Zone uint8

// Allocation zones.
const (
	ZoneHigh Zone = 1 // anywhere in RAM below 4 GiB
	ZoneFSeg Zone = 2 // the F segment (0xF0000-0xFFFFF), where an OS scans for the RSDP
)

// Sizes of the format.
const (
	EntrySize   = 128
	FileNameLen = 56
)

// ErrBad is returned for arguments QEMU's linker would also refuse.
var ErrBad = errors.New("tableloader: bad command")

// Loader accumulates commands. Files must be allocated before a command
// names them, as firmware requires.
type Loader struct {
	b     []byte
	sizes map[string]uint32
}

// New returns an empty command file.
func New() *Loader { return &Loader{sizes: map[string]uint32{}} }

// Bytes returns the encoded command file.
func (l *Loader) Bytes() []byte { return l.b }

func (l *Loader) entry(cmd uint32) []byte {
	e := make([]byte, EntrySize)
	binary.LittleEndian.PutUint32(e, cmd)
	l.b = append(l.b, e...)
	return l.b[len(l.b)-EntrySize+4:]
}

func putName(dst []byte, name string) error {
	if name == "" || len(name) >= FileNameLen {
		return fmt.Errorf("%w: file name %q", ErrBad, name)
	}
	copy(dst[:FileNameLen], name)
	return nil
}

// Allocate tells the firmware to load the fw_cfg file of size bytes into
// memory aligned to align (a power of two) in zone.
func (l *Loader) Allocate(file string, size, align uint32, zone Zone) error {
	if align == 0 || align&(align-1) != 0 || (zone != ZoneHigh && zone != ZoneFSeg) {
		return fmt.Errorf("%w: allocate %q align %d zone %d", ErrBad, file, align, zone)
	}
	if _, ok := l.sizes[file]; ok {
		return fmt.Errorf("%w: %q allocated twice", ErrBad, file)
	}
	var a [FileNameLen + 5]byte
	if err := putName(a[:], file); err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(a[FileNameLen:], align)
	a[FileNameLen+4] = byte(zone)
	copy(l.entry(CmdAllocate), a[:])
	l.sizes[file] = size
	return nil
}

// AddPointer tells the firmware to add the address where it placed src to
// the size-byte little-endian field at offset in dest.
func (l *Loader) AddPointer(dest, src string, offset uint32, size uint8) error {
	ds, ok1 := l.sizes[dest]
	_, ok2 := l.sizes[src]
	if !ok1 || !ok2 || (size != 1 && size != 2 && size != 4 && size != 8) || uint64(offset)+uint64(size) > uint64(ds) {
		return fmt.Errorf("%w: pointer %q+%d (%d bytes) to %q", ErrBad, dest, offset, size, src)
	}
	var a [2*FileNameLen + 5]byte
	if err := putName(a[:], dest); err != nil {
		return err
	}
	if err := putName(a[FileNameLen:], src); err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(a[2*FileNameLen:], offset)
	a[2*FileNameLen+4] = size
	copy(l.entry(CmdAddPointer), a[:])
	return nil
}

// AddChecksum tells the firmware to set the byte at offset in file so that
// the bytes of [start, start+length) sum to zero.
func (l *Loader) AddChecksum(file string, offset, start, length uint32) error {
	fs, ok := l.sizes[file]
	if !ok || offset >= fs || uint64(start)+uint64(length) > uint64(fs) || offset < start || offset >= start+length {
		return fmt.Errorf("%w: checksum %q at %d over %d+%d", ErrBad, file, offset, start, length)
	}
	var a [FileNameLen + 12]byte
	if err := putName(a[:], file); err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(a[FileNameLen:], offset)
	binary.LittleEndian.PutUint32(a[FileNameLen+4:], start)
	binary.LittleEndian.PutUint32(a[FileNameLen+8:], length)
	copy(l.entry(CmdAddChecksum), a[:])
	return nil
}
