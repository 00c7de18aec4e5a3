// Package efivars reads the UEFI variables in an OVMF variable store (the
// flash contents of OVMF_VARS*.fd, as the firmware leaves them in a VM's
// variable file): to check what a guest's firmware stored, and to show it.
//
// Layout: a firmware volume header (UEFI PI specification 1.8, volume 3,
// section 3.2.1 "Firmware Volume", EFI_FIRMWARE_VOLUME_HEADER), then a
// variable store header and the variables one after another, each aligned
// to 4 bytes (EDK II MdeModulePkg/Include/Guid/VariableFormat.h:
// VARIABLE_STORE_HEADER, VARIABLE_HEADER and AUTHENTICATED_VARIABLE_HEADER).
// The store is written by the guest: every offset and size is checked.
package efivars

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf16"
)

// Sizes and markers of the format.
const (
	fvSignature      = "_FVH"
	fvSignatureAt    = 40
	fvHeaderLenAt    = 48
	storeHeaderSize  = 28
	storeFormatted   = 0x5A
	startID          = 0x55AA
	authHeaderSize   = 60
	plainHeaderSize  = 32
	stateAdded       = 0x3F // VAR_ADDED: the live copy of a variable
	maxVariableCount = 1 << 16
)

// Store signatures (VariableFormat.h): the authenticated format OVMF uses,
// and the plain one.
var (
	authVariableGUID  = guid(0xaaf32c78, 0x947b, 0x439a, 0xa1, 0x80, 0x2e, 0x14, 0x4e, 0xc3, 0x77, 0x92)
	plainVariableGUID = guid(0xddcf3616, 0x3275, 0x4164, 0x98, 0xb6, 0xfe, 0x85, 0x70, 0x7f, 0xfe, 0x7d)
)

// ErrFormat is returned for a store that is not one.
var ErrFormat = errors.New("efivars: not an OVMF variable store")

// Variable is one live UEFI variable.
type Variable struct {
	Name       string
	Vendor     [16]byte // the vendor GUID, as stored (mixed-endian)
	Attributes uint32
	Data       []byte
}

// List returns the live variables of store in the order they were written.
func List(store []byte) ([]Variable, error) {
	if len(store) < fvHeaderLenAt+2 || string(store[fvSignatureAt:fvSignatureAt+4]) != fvSignature {
		return nil, fmt.Errorf("%w: no firmware volume header", ErrFormat)
	}
	hl := int(binary.LittleEndian.Uint16(store[fvHeaderLenAt:]))
	if hl < fvHeaderLenAt+2 || hl+storeHeaderSize > len(store) {
		return nil, fmt.Errorf("%w: firmware volume header of %d bytes", ErrFormat, hl)
	}
	sh := store[hl : hl+storeHeaderSize]
	var header int
	switch {
	case bytes.Equal(sh[:16], authVariableGUID[:]):
		header = authHeaderSize
	case bytes.Equal(sh[:16], plainVariableGUID[:]):
		header = plainHeaderSize
	default:
		return nil, fmt.Errorf("%w: unknown variable store signature", ErrFormat)
	}
	size := int64(binary.LittleEndian.Uint32(sh[16:]))
	if sh[20] != storeFormatted || size < storeHeaderSize || int64(hl)+size > int64(len(store)) {
		return nil, fmt.Errorf("%w: variable store of %d bytes, format %#x", ErrFormat, size, sh[20])
	}
	area := store[hl+storeHeaderSize : hl+int(size)]
	var out []Variable
	for off := 0; off+header <= len(area) && len(out) < maxVariableCount; {
		h := area[off : off+header]
		if binary.LittleEndian.Uint16(h) != startID {
			break // the free space (all 0xFF) starts here
		}
		state, attrs := h[2], binary.LittleEndian.Uint32(h[4:])
		sizes := h[header-24:] // NameSize, DataSize, VendorGuid end every header
		nameSize := int64(binary.LittleEndian.Uint32(sizes))
		dataSize := int64(binary.LittleEndian.Uint32(sizes[4:]))
		end := int64(off) + int64(header) + nameSize + dataSize
		if end > int64(len(area)) {
			return out, fmt.Errorf("%w: variable at %#x runs past the store", ErrFormat, off)
		}
		if state == stateAdded {
			v := Variable{Attributes: attrs}
			copy(v.Vendor[:], sizes[8:24])
			nameAt := off + header
			v.Name = ucs2(area[nameAt : nameAt+int(nameSize)])
			v.Data = bytes.Clone(area[nameAt+int(nameSize) : end])
			out = append(out, v)
		}
		off = int((end + 3) &^ 3)
	}
	return out, nil
}

// Get returns the live variable called name (the last written, should a
// store hold two), and whether there is one.
func Get(store []byte, name string) (Variable, bool, error) {
	vars, err := List(store)
	var found Variable
	ok := false
	for _, v := range vars {
		if v.Name == name {
			found, ok = v, true
		}
	}
	return found, ok, err
}

// ucs2 decodes a NUL-terminated UCS-2 name.
func ucs2(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

// guid lays out an EFI_GUID as stored: three little-endian fields, then bytes.
func guid(a uint32, b, c uint16, d ...byte) [16]byte {
	var g [16]byte
	binary.LittleEndian.PutUint32(g[0:], a)
	binary.LittleEndian.PutUint16(g[4:], b)
	binary.LittleEndian.PutUint16(g[6:], c)
	copy(g[8:], d)
	return g
}
