package vhdx

import (
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf16"

	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/diskimage/parentpath"
)

// guidVHDXLocator is the LocatorType of the parent locator Hyper-V writes
// ([MS-VHDX] 2.6.2.6.3 "VHDX Parent Locator").
var guidVHDXLocator = parseGUID("B04AEFB7-D19E-4A81-B789-25B8E9445913")

// Sizes of the Parent Locator Header (2.6.2.6.1) and Entry (2.6.2.6.2).
const (
	locHeaderSize = 20
	locEntrySize  = 12
)

// marshalLocator encodes the parent locator item: header, entries, then
// the keys and values in UTF-16LE.
func marshalLocator(kvs []KeyValue) []byte {
	le := binary.LittleEndian
	b := make([]byte, locHeaderSize+locEntrySize*len(kvs))
	copy(b, guidVHDXLocator[:])
	le.PutUint16(b[18:], uint16(len(kvs)))
	for i, kv := range kvs {
		e := b[locHeaderSize+locEntrySize*i:]
		k, v := utf16le(kv.Key), utf16le(kv.Value)
		le.PutUint32(e[0:], uint32(len(b)))
		le.PutUint16(e[8:], uint16(len(k)))
		b = append(b, k...)
		e = b[locHeaderSize+locEntrySize*i:]
		le.PutUint32(e[4:], uint32(len(b)))
		le.PutUint16(e[10:], uint16(len(v)))
		b = append(b, v...)
	}
	return b
}

// parseLocator decodes a parent locator item, checking every key and
// value lies inside it.
func parseLocator(d []byte) ([]KeyValue, error) {
	if len(d) < locHeaderSize {
		return nil, fmt.Errorf("%w: parent locator of %d bytes", ErrBadMetadata, len(d))
	}
	le := binary.LittleEndian
	var typ GUID
	copy(typ[:], d)
	if typ != guidVHDXLocator {
		return nil, fmt.Errorf("%w: parent locator type %x", diskimage.ErrUnsupported, typ)
	}
	n := int(le.Uint16(d[18:]))
	if locHeaderSize+locEntrySize*n > len(d) {
		return nil, fmt.Errorf("%w: %d parent locator entries in %d bytes", ErrBadMetadata, n, len(d))
	}
	kvs := make([]KeyValue, 0, n)
	for i := range n {
		e := d[locHeaderSize+locEntrySize*i:]
		ko, vo := uint64(le.Uint32(e[0:])), uint64(le.Uint32(e[4:]))
		kl, vl := uint64(le.Uint16(e[8:])), uint64(le.Uint16(e[10:]))
		if ko+kl > uint64(len(d)) || vo+vl > uint64(len(d)) || kl == 0 {
			return nil, fmt.Errorf("%w: parent locator entry %d outside the item", ErrBadMetadata, i)
		}
		kvs = append(kvs, KeyValue{fromUTF16le(d[ko : ko+kl]), fromUTF16le(d[vo : vo+vl])})
	}
	return kvs, nil
}

func utf16le(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[2*i:], c)
	}
	return b
}

func fromUTF16le(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u))
}

// locatorValue returns the value of key, "" if absent.
func (m *Metadata) locatorValue(key string) string {
	for _, kv := range m.ParentLocator {
		if kv.Key == key {
			return kv.Value
		}
	}
	return ""
}

// guidString parses "{8B7CA206-4790-4B9A-B8FE-575F050F886E}" (the form of
// parent_linkage) into on-disk bytes; ok is false for anything else.
func guidString(s string) (g GUID, ok bool) {
	s = strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}")
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return g, false
	}
	for _, c := range strings.ReplaceAll(s, "-", "") {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return g, false
		}
	}
	return parseGUID(s), true
}

// formatGUID is the inverse of guidString, braces included.
func formatGUID(g GUID) string {
	return fmt.Sprintf("{%02X%02X%02X%02X-%02X%02X-%02X%02X-%02X%02X-%02X%02X%02X%02X%02X%02X}",
		g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15])
}

// parentCandidates lists where the parent of the differencing disk at
// child may be, best first ([MS-VHDX] 2.6.2.6.3 keys): relative_path
// against the child's folder, absolute_win32_path if it is a host path,
// then the file names of absolute_win32_path, volume_path and
// relative_path in the child's folder (a Hyper-V checkpoint chain copied
// off its host keeps its files together).
func (img *Image) parentCandidates(child string) []string {
	c := parentpath.For(child)
	c.Relative(img.meta.locatorValue("relative_path"))
	c.Absolute(img.meta.locatorValue("absolute_win32_path"))
	for _, key := range []string{"absolute_win32_path", "volume_path", "relative_path"} {
		c.Beside(img.meta.locatorValue(key))
	}
	return c.List()
}
