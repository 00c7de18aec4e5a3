// Package vmdk reads and writes VMware virtual disks, following VMware's
// "Virtual Disk Format 1.1" specification: monolithicSparse and
// streamOptimized read and write; monolithicFlat, twoGbMaxExtentSparse,
// twoGbMaxExtentFlat and ESXi's vmfs (a -flat.vmdk) read; snapshot chains
// (a sparse child naming its parent) read through OpenWith, hosted ones
// and ESXi's vmfsSparse (COWD -delta.vmdk) and seSparse (-sesparse.vmdk)
// snapshots alike.
package vmdk

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// Sentinel errors of the vmdk package.
var (
	ErrBadDescriptor = errors.New("vmdk: bad descriptor")
	ErrBadHeader     = errors.New("vmdk: bad sparse extent header")
	ErrStreamOrder   = errors.New("vmdk: streamOptimized images are write-once")
)

// maxDescriptorSize caps how much descriptor text is read: real ones are a
// few hundred bytes (spec "The Descriptor File").
const maxDescriptorSize = 1 << 20

// ExtentLine is one line of the descriptor's "Extent description" section
// (spec "Extent Descriptions"): ACCESS SIZE TYPE "FILENAME" [OFFSET].
type ExtentLine struct {
	Access   string // RW, RDONLY or NOACCESS
	Sectors  int64
	Type     string // FLAT, SPARSE, ZERO, VMFS, VMFSSPARSE, ...
	Filename string
	Offset   int64 // in sectors, FLAT/VMFS only
}

// Descriptor is a parsed VMDK text descriptor (spec "The Descriptor File").
type Descriptor struct {
	Version            int
	CID                uint32
	ParentCID          uint32
	CreateType         string
	ParentFileNameHint string
	Extents            []ExtentLine
	// DDB holds the disk database: ddb.adapterType, ddb.geometry.*, ...
	DDB map[string]string
}

// Sectors is the sum of the extent sizes: the virtual size in sectors.
func (d *Descriptor) Sectors() int64 {
	var n int64
	for _, e := range d.Extents {
		n += e.Sectors
	}
	return n
}

// ParseDescriptor parses descriptor text. Unknown keys are kept in DDB when
// they start with "ddb." and ignored otherwise, as VMware does.
func ParseDescriptor(text string) (*Descriptor, error) {
	if len(text) > maxDescriptorSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadDescriptor, len(text))
	}
	// Embedded descriptors are NUL-padded to their sector count.
	if i := strings.IndexByte(text, 0); i >= 0 {
		text = text[:i]
	}
	d := &Descriptor{ParentCID: 0xffffffff, DDB: map[string]string{}}
	sawHeader := false
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" {
			continue
		}
		if line[0] == '#' {
			if strings.HasPrefix(line, "# Disk DescriptorFile") {
				sawHeader = true
			}
			continue
		}
		if e, ok, err := parseExtentLine(line); ok {
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: %v", ErrBadDescriptor, n+1, err)
			}
			d.Extents = append(d.Extents, e)
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%w: line %d: %q is neither key=value nor an extent", ErrBadDescriptor, n+1, line)
		}
		key = strings.TrimSpace(key)
		val = unquote(strings.TrimSpace(val))
		sawHeader = true
		var err error
		switch key {
		case "version":
			d.Version, err = strconv.Atoi(val)
		case "CID":
			d.CID, err = parseHex32(val)
		case "parentCID":
			d.ParentCID, err = parseHex32(val)
		case "createType":
			d.CreateType = val
		case "parentFileNameHint":
			d.ParentFileNameHint = val
		default:
			if strings.HasPrefix(key, "ddb.") {
				d.DDB[key] = val
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %s: %v", ErrBadDescriptor, n+1, key, err)
		}
	}
	if !sawHeader || d.CreateType == "" {
		return nil, fmt.Errorf("%w: no createType", ErrBadDescriptor)
	}
	if len(d.Extents) == 0 {
		return nil, fmt.Errorf("%w: no extents", ErrBadDescriptor)
	}
	var total int64
	for _, e := range d.Extents {
		if total += e.Sectors; total > maxSectors {
			return nil, fmt.Errorf("%w: extents add up to more than %d sectors", ErrBadDescriptor, int64(maxSectors))
		}
	}
	return d, nil
}

func parseHex32(s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 16, 32)
	return uint32(v), err
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

// parseExtentLine recognises an extent line by its access keyword; ok is
// false for lines that are not extents at all.
func parseExtentLine(line string) (e ExtentLine, ok bool, err error) {
	access, rest, _ := strings.Cut(line, " ")
	switch access {
	case "RW", "RDONLY", "NOACCESS":
	default:
		return e, false, nil
	}
	e.Access = access
	fields := strings.Fields(rest)
	if len(fields) < 2 {
		return e, true, fmt.Errorf("extent %q: too few fields", line)
	}
	if e.Sectors, err = strconv.ParseInt(fields[0], 10, 64); err != nil || e.Sectors < 0 || e.Sectors > maxSectors {
		return e, true, fmt.Errorf("extent %q: bad size %q", line, fields[0])
	}
	e.Type = fields[1]
	if e.Type == "ZERO" {
		return e, true, nil
	}
	// The file name is quoted and may contain spaces.
	q1 := strings.IndexByte(rest, '"')
	q2 := strings.LastIndexByte(rest, '"')
	if q1 < 0 || q2 <= q1 {
		return e, true, fmt.Errorf("extent %q: no quoted file name", line)
	}
	e.Filename = rest[q1+1 : q2]
	if tail := strings.Fields(rest[q2+1:]); len(tail) > 0 {
		if e.Offset, err = strconv.ParseInt(tail[0], 10, 64); err != nil || e.Offset < 0 || e.Offset > maxSectors {
			return e, true, fmt.Errorf("extent %q: bad offset %q", line, tail[0])
		}
	}
	return e, true, nil
}

// String formats the descriptor as VMware and qemu write it.
func (d *Descriptor) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Disk DescriptorFile\nversion=%d\nCID=%08x\nparentCID=%08x\ncreateType=\"%s\"\n", d.Version, d.CID, d.ParentCID, d.CreateType)
	if d.ParentFileNameHint != "" {
		fmt.Fprintf(&b, "parentFileNameHint=\"%s\"\n", d.ParentFileNameHint)
	}
	b.WriteString("\n# Extent description\n")
	for _, e := range d.Extents {
		fmt.Fprintf(&b, "%s %d %s", e.Access, e.Sectors, e.Type)
		if e.Type != "ZERO" {
			fmt.Fprintf(&b, " \"%s\"", e.Filename)
			if e.Type == "FLAT" || e.Type == "VMFS" {
				fmt.Fprintf(&b, " %d", e.Offset)
			}
		}
		b.WriteByte('\n')
	}
	b.WriteString("\n# The Disk Data Base\n#DDB\n\n")
	for _, k := range []string{"ddb.virtualHWVersion", "ddb.geometry.cylinders", "ddb.geometry.heads", "ddb.geometry.sectors", "ddb.adapterType"} {
		if v, ok := d.DDB[k]; ok {
			fmt.Fprintf(&b, "%s = \"%s\"\n", k, v)
		}
	}
	return b.String()
}

// extentPath resolves an extent file name relative to the descriptor's
// directory. Absolute names and names leaving that directory are refused:
// a descriptor from an untrusted image must not read arbitrary host files.
func extentPath(dir, name string) (string, error) {
	if name == "" || filepath.IsAbs(name) || !filepath.IsLocal(name) {
		return "", fmt.Errorf("%w: extent file %q is not a plain relative name", ErrBadDescriptor, name)
	}
	return filepath.Join(dir, name), nil
}

// newDescriptor makes the descriptor govisor writes for a single-extent
// image, with the geometry ddb keys the spec lists ("The Disk Database").
func newDescriptor(createType, file string, sectors int64, cid uint32) *Descriptor {
	cyl := sectors / (16 * 63)
	cyl = min(cyl, 16383)
	return &Descriptor{
		Version: 1, CID: cid, ParentCID: 0xffffffff, CreateType: createType,
		Extents: []ExtentLine{{Access: "RW", Sectors: sectors, Type: "SPARSE", Filename: file}},
		DDB: map[string]string{
			"ddb.virtualHWVersion":   "4",
			"ddb.geometry.cylinders": strconv.FormatInt(cyl, 10),
			"ddb.geometry.heads":     "16",
			"ddb.geometry.sectors":   "63",
			"ddb.adapterType":        "ide",
		},
	}
}
