package vhd

import (
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf16"

	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/diskimage/parentpath"
)

// Platform codes of parent locator entries (spec "Dynamic Disk Header
// Format", Parent Locator Entries).
const (
	PlatformNone = 0
	PlatformW2ru = 0x57327275 // "W2ru": Windows relative path, UTF-16 little-endian
	PlatformW2ku = 0x57326b75 // "W2ku": Windows absolute path, UTF-16 little-endian
	PlatformMacX = 0x4d616358 // "MacX": file URL, UTF-8
	platformWi2r = 0x57693272 // "Wi2r": deprecated relative path, bytes
	platformWi2k = 0x5769326b // "Wi2k": deprecated absolute path, bytes
	// maxLocatorBytes bounds what one locator may make Open read.
	maxLocatorBytes = 64 << 10
)

// Locator is a Parent Locator Entry: where in the file a form of the
// parent's path is stored.
type Locator struct {
	Code       uint32 // Platform Code
	DataSpace  uint32 // Platform Data Space (sectors, though Hyper-V writes bytes)
	DataLength uint32 // Platform Data Length, in bytes
	DataOffset uint64 // Platform Data Offset: absolute file offset
}

func (l Locator) marshal(b []byte) {
	be := binary.BigEndian
	be.PutUint32(b[0:], l.Code)
	be.PutUint32(b[4:], l.DataSpace)
	be.PutUint32(b[8:], l.DataLength)
	be.PutUint64(b[16:], l.DataOffset)
}

func parseLocator(b []byte) Locator {
	be := binary.BigEndian
	return Locator{Code: be.Uint32(b[0:]), DataSpace: be.Uint32(b[4:]), DataLength: be.Uint32(b[8:]), DataOffset: be.Uint64(b[16:])}
}

// EncodeLocator is the platform data of a locator with code for path:
// UTF-16LE for W2ru and W2ku, a file URL for MacX.
func EncodeLocator(code uint32, path string) []byte {
	switch code {
	case PlatformW2ru, PlatformW2ku:
		b := make([]byte, 2*len(utf16.Encode([]rune(path))))
		putUTF16(b, path, binary.LittleEndian)
		return b
	case PlatformMacX:
		return []byte("file://" + path)
	}
	return []byte(path)
}

// decodeLocator turns a locator's platform data into a path, "" for codes
// that name no usable path.
func decodeLocator(code uint32, b []byte) string {
	switch code {
	case PlatformW2ru, PlatformW2ku:
		return getUTF16(b, binary.LittleEndian)
	case PlatformMacX:
		s := strings.TrimRight(string(b), "\x00")
		s = strings.TrimPrefix(s, "file://")
		return strings.TrimPrefix(s, "localhost")
	case platformWi2r, platformWi2k:
		return strings.TrimRight(string(b), "\x00")
	}
	return ""
}

// putUTF16 stores s in b as UTF-16 with order, NUL padded (truncated to b).
func putUTF16(b []byte, s string, order binary.ByteOrder) {
	clear(b)
	for i, u := range utf16.Encode([]rune(s)) {
		if 2*i+2 > len(b) {
			break
		}
		order.PutUint16(b[2*i:], u)
	}
}

// getUTF16 decodes NUL-terminated UTF-16 in order.
func getUTF16(b []byte, order binary.ByteOrder) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := order.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

// parentCandidates lists where the parent of the differencing disk at
// child may be, best first: the relative locators (W2ru, Wi2r, against
// the child's folder), the absolute locators that are host paths, the
// file names of all locators and of the Parent Unicode Name in the
// child's folder (a chain copied off a Windows host keeps its files
// together).
func (img *Image) parentCandidates(child string) []string {
	type located struct {
		code uint32
		path string
	}
	var locs []located
	for _, l := range img.dyn.Locators {
		if l.Code == PlatformNone || l.DataLength == 0 || l.DataLength > maxLocatorBytes {
			continue
		}
		b := make([]byte, l.DataLength)
		if _, err := img.f.ReadAt(b, int64(min(l.DataOffset, 1<<62))); err != nil {
			continue
		}
		locs = append(locs, located{l.Code, decodeLocator(l.Code, b)})
	}
	c := parentpath.For(child)
	for _, l := range locs {
		if l.code == PlatformW2ru || l.code == platformWi2r {
			c.Relative(l.path)
		}
	}
	for _, l := range locs {
		if l.code != PlatformW2ru && l.code != platformWi2r {
			c.Absolute(l.path)
		}
	}
	for _, l := range locs {
		c.Beside(l.path)
	}
	c.Beside(img.dyn.ParentName)
	return c.List()
}

// errNoParent is the error for a differencing disk whose parent is not
// where its locators say, naming the places looked at and the fix.
func errNoParent(child, name string, tried []string) error {
	return fmt.Errorf("%w: vhd differencing disk %s: parent %q not found (looked for %s); put the parent next to the child (or at the path its locator names) and retry",
		diskimage.ErrParent, child, name, strings.Join(tried, ", "))
}
