package vmimport

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// SMBIOSUUID is a source machine's system UUID as its firmware put it in
// the SMBIOS System Information structure (DMTF DSP0134 7.2, bytes
// 08h-17h), with what a guest needs to read it: the SMBIOS version the
// firmware reported.
//
// The same 16 bytes read differently in different guests. DSP0134 2.6
// and later (7.2.1) encode the first three fields (time_low, time_mid,
// time_hi_and_version) little-endian, the rest as RFC 4122; earlier
// versions left the order open and firmware mostly stored the RFC 4122
// (big-endian) bytes. Linux follows the version the tables report
// (drivers/firmware/dmi_scan.c, dmi_save_uuid: "%pUl" from 2.6 on, "%pUb"
// before), and that is what /sys/class/dmi/id/product_uuid and dmidecode
// show. Windows (Win32_ComputerSystemProduct.UUID) reads the first three
// fields little-endian whatever the version, as the note in DSP0134 2.6
// 7.2.1 says "the PC industry (including the ACPI, UEFI, and Microsoft
// specifications) has consistently" done. So on firmware that reports an
// SMBIOS older than 2.6 a Linux and a Windows guest of the same machine
// see two UUIDs whose first three fields are byte-swapped.
//
// govisor's firmware reports SMBIOS 2.8 and encodes its UUID as 7.2.1 says
// (internal/firmware/smbios), so every guest reads the VM's UUID as it is
// written: keeping a source VM's UUID means writing down the text the
// guest read on the source.
type SMBIOSUUID struct {
	// Field names where the configuration says it, for the report
	// ("uuid.bios").
	Field string
	// Raw is the structure's 16 UUID bytes as the source's firmware
	// wrote them.
	Raw [16]byte
	// Wire is true when the source's firmware reports SMBIOS 2.6 or
	// later, so that a Linux guest decodes Raw as 7.2.1 says.
	Wire bool
	// Why says what the source's SMBIOS version follows from, for the
	// report ("virtual hardware 19: SMBIOS 2.7").
	Why string
}

// ParseUUID reads a UUID as 8-4-4-4-12 hex digits (in braces or not, as
// VirtualBox and Hyper-V write it) into its RFC 4122 bytes: the first
// hex digit is the first byte's high nibble.
func ParseUUID(s string) (u [16]byte, ok bool) {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '{' && s[len(s)-1] == '}' {
		s = s[1 : len(s)-1]
	}
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, false
	}
	return parseHex32(s[:8] + s[9:13] + s[14:18] + s[19:23] + s[24:])
}

// parseHex32 reads exactly 32 hex digits.
func parseHex32(h string) (u [16]byte, ok bool) {
	if len(h) != 32 {
		return u, false
	}
	if _, err := hex.Decode(u[:], []byte(h)); err != nil {
		return [16]byte{}, false
	}
	return u, true
}

// ParseHexBytes reads 16 bytes written as 32 hex digits with any spaces
// and dashes between them, as VMware's uuid.bios ("56 4d 12 34 56 78 9a
// bc-de f0 12 34 56 78 9a bc") is.
func ParseHexBytes(s string) (u [16]byte, ok bool) {
	if len(s) > 128 {
		return u, false
	}
	return parseHex32(strings.NewReplacer(" ", "", "-", "", "\t", "").Replace(s))
}

// FormatUUID writes u's bytes in order as 8-4-4-4-12 lower-case hex
// digits, the form govisor VM definitions take.
func FormatUUID(u [16]byte) string {
	h := hex.EncodeToString(u[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// SwapUUIDFields reverses the bytes of each of the first three fields:
// RFC 4122 order to DSP0134 7.2.1's and back.
func SwapUUIDFields(u [16]byte) [16]byte {
	u[0], u[1], u[2], u[3] = u[3], u[2], u[1], u[0]
	u[4], u[5] = u[5], u[4]
	u[6], u[7] = u[7], u[6]
	return u
}

// GuestViews returns the UUID a Linux guest (product_uuid) and a Windows
// guest (Win32_ComputerSystemProduct) of the source machine read.
func (s SMBIOSUUID) GuestViews() (linux, windows string) {
	windows = FormatUUID(SwapUUIDFields(s.Raw))
	if s.Wire {
		return windows, windows
	}
	return FormatUUID(s.Raw), windows
}

// IsWindows says whether a source's guest OS name (VMware's guestOS or
// osType, VirtualBox's OSType) is a Windows one: "windows9-64",
// "winNetStandardGuest", "Windows10_64".
func IsWindows(os string) bool {
	return strings.HasPrefix(strings.ToLower(strings.TrimSpace(os)), "win")
}

// KeepUUID gives vm the UUID its guest read on the source: as a Windows
// guest reads it when the source names a Windows OS, as Linux's
// product_uuid shows it otherwise. The report says which, and the other
// view when the two differ. A UUID of all zeros or all ones is none
// (DSP0134 7.2.1: not present, or settable but not set).
func (vm *VM) KeepUUID(s SMBIOSUUID) {
	if s.Raw == [16]byte{} || s.Raw == [16]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff} {
		vm.Dropped = append(vm.Dropped, fmt.Sprintf("%s: %s, which SMBIOS takes for no UUID (the VM gets a new one)", s.Field, FormatUUID(s.Raw)))
		return
	}
	linux, windows := s.GuestViews()
	who, other, otherWho := "a Linux guest's product_uuid", windows, "a Windows guest"
	vm.UUID = linux
	if IsWindows(vm.OS) {
		vm.UUID, who, other, otherWho = windows, "a Windows guest", linux, "a Linux guest's product_uuid"
	}
	line := fmt.Sprintf("%s (%s) -> SMBIOS UUID %s, as %s read it", s.Field, s.Why, vm.UUID, who)
	if other != vm.UUID {
		line += fmt.Sprintf(" (%s read %s: give the VM that uuid to keep it)", otherWho, other)
	}
	vm.Mapped = append(vm.Mapped, line)
}

// BadUUID reports a source UUID that is not one: the VM gets a new UUID.
func (vm *VM) BadUUID(field, value string) {
	vm.Dropped = append(vm.Dropped, fmt.Sprintf("%s %q: not a UUID (the VM gets a new one)", field, clip(value)))
}

// clip shortens a value quoted in a report.
func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}
