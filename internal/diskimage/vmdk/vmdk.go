package vmdk

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/govisor/govisor/internal/diskimage"
)

// FormatName is the name diskimage reports for VMDK images.
const FormatName = "vmdk"

// CreateOptions selects what Create writes.
type CreateOptions struct {
	// Subformat is "monolithicSparse" (the default) or "streamOptimized".
	Subformat string
}

// extent is one piece of the virtual disk named by a descriptor extent line.
type extent interface {
	size() int64
	readAt(p []byte, off int64) error
	writeAt(p []byte, off int64) error
	// extentMap reports whether the run at off holds data, and its length
	// (at most n).
	extentMap(off, n int64) (bool, int64, error)
	flush() error
	close() error
}

// Image is an open VMDK. It implements diskimage.Image and diskimage.Mapper
// and is safe for concurrent use.
type Image struct {
	desc     *Descriptor
	exts     []extent
	starts   []int64
	size     int64
	readOnly bool
	stream   *streamWriter
	parent   diskimage.Image // a differencing disk's parent (see OpenWith)
	// parentPath is where parent was opened from.
	parentPath string
}

// Probe reports whether header starts like a VMDK: a sparse extent header
// ("KDMV"), a text descriptor, or the data file of an ESXi snapshot (which
// Open refuses with a pointer to its descriptor, rather than it being
// taken for a raw disk).
func Probe(header []byte) bool {
	if len(header) >= 4 && binary.LittleEndian.Uint32(header) == magic {
		return true
	}
	return bytes.HasPrefix(header, []byte("# Disk DescriptorFile")) || esxDataFile(header) != ""
}

// Open opens a VMDK given its descriptor file or its monolithic sparse
// extent. Differencing disks (a parent) are refused with
// diskimage.ErrUnsupported.
func Open(path string, readOnly bool) (*Image, error) {
	img, err := open(path, readOnly)
	if err != nil {
		return nil, fmt.Errorf("vmdk: open %s: %w", path, err)
	}
	return img, nil
}

func openFile(path string, readOnly bool) (*os.File, error) {
	if readOnly {
		return os.Open(path)
	}
	return os.OpenFile(path, os.O_RDWR, 0)
}

func open(path string, readOnly bool) (*Image, error) {
	f, err := openFile(path, readOnly)
	if err != nil {
		return nil, err
	}
	return openOn(f, filepath.Dir(path), readOnly)
}

// openOn opens the VMDK in f, a sparse extent or a descriptor whose extent
// files are named relative to dir. It owns f: f is closed on failure, and
// when it holds a descriptor.
func openOn(f diskimage.File, dir string, readOnly bool) (*Image, error) {
	return openOnParent(f, dir, readOnly, false)
}

// openOnParent is openOn that, with parent set, also opens a differencing
// disk (the caller attaches its parent).
func openOnParent(f diskimage.File, dir string, readOnly, parent bool) (*Image, error) {
	head := make([]byte, sectorSize)
	n, err := f.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		f.Close()
		return nil, err
	}
	head = head[:n]
	img := &Image{readOnly: readOnly}
	if n >= 4 && binary.LittleEndian.Uint32(head) == magic {
		se, err := openSparse(f, !readOnly)
		if err != nil {
			f.Close()
			return nil, err
		}
		img.exts = []extent{se}
		if img.desc, err = embeddedDescriptor(se); err != nil {
			f.Close()
			return nil, err
		}
		if err := checkParent(img.desc); err != nil && !parent {
			f.Close()
			return nil, err
		}
		img.starts = []int64{0}
		img.size = se.size()
		return img, nil
	}
	if kind := esxDataFile(head); kind != "" {
		f.Close()
		return nil, fmt.Errorf("%w: this is the data file of an ESXi %s snapshot: open the snapshot's descriptor (the .vmdk without -delta/-sesparse, e.g. vm-000001.vmdk), which names its parent", diskimage.ErrUnsupported, kind)
	}
	text, err := io.ReadAll(io.NewSectionReader(f, 0, maxDescriptorSize+1))
	f.Close()
	if err != nil {
		return nil, err
	}
	d, err := ParseDescriptor(string(text))
	if err != nil {
		return nil, err
	}
	if err := checkParent(d); err != nil && !parent {
		return nil, err
	}
	img.desc = d
	if err := img.openExtents(dir); err != nil {
		img.Close()
		return nil, err
	}
	return img, nil
}

// embeddedDescriptor reads the descriptor a monolithic sparse extent carries
// (spec "The Descriptor File": descriptorOffset/descriptorSize). A bare
// extent without one gets a synthesised descriptor.
func embeddedDescriptor(se *sparseExtent) (*Descriptor, error) {
	h := se.hdr
	if h.DescriptorOffset == 0 || h.DescriptorSize == 0 {
		return newDescriptor("monolithicSparse", "", int64(h.Capacity), 0), nil
	}
	if h.DescriptorSize*sectorSize > maxDescriptorSize || h.DescriptorOffset > uint64(se.fileSize)/sectorSize {
		return nil, fmt.Errorf("%w: descriptor of %d sectors at sector %d", ErrBadHeader, h.DescriptorSize, h.DescriptorOffset)
	}
	b := make([]byte, min(int64(h.DescriptorSize)*sectorSize, se.fileSize-int64(h.DescriptorOffset)*sectorSize))
	if _, err := se.f.ReadAt(b, int64(h.DescriptorOffset)*sectorSize); err != nil {
		return nil, fmt.Errorf("read descriptor: %w", err)
	}
	d, err := ParseDescriptor(string(b))
	if err != nil {
		return nil, err
	}
	if len(d.Extents) != 1 || d.Extents[0].Type != "SPARSE" {
		return nil, fmt.Errorf("%w: embedded descriptor has %d extents", diskimage.ErrUnsupported, len(d.Extents))
	}
	return d, nil
}

func checkParent(d *Descriptor) error {
	if d.ParentCID != 0xffffffff || d.ParentFileNameHint != "" {
		return fmt.Errorf("%w: differencing disk (parent %q); convert its parent chain with VMware or qemu-img first", diskimage.ErrUnsupported, d.ParentFileNameHint)
	}
	return nil
}

// openExtents opens each extent a text descriptor names, relative to dir.
func (img *Image) openExtents(dir string) error {
	for i, el := range img.desc.Extents {
		img.starts = append(img.starts, img.size)
		img.size += el.Sectors * sectorSize
		if el.Type == "ZERO" {
			img.exts = append(img.exts, zeroExtent(el.Sectors*sectorSize))
			continue
		}
		p, err := extentPath(dir, el.Filename)
		if err != nil {
			return err
		}
		ro := img.readOnly || el.Access != "RW"
		f, err := openFile(p, ro)
		if err != nil {
			return fmt.Errorf("extent %d: %w", i, err)
		}
		switch el.Type {
		case "FLAT", "VMFS":
			img.exts = append(img.exts, &flatExtent{f: f, base: el.Offset * sectorSize, n: el.Sectors * sectorSize, writable: !ro})
		case "VMFSSPARSE", "SESPARSE":
			ee, err := img.openESX(i, el, f)
			if err != nil {
				f.Close()
				return err
			}
			img.exts = append(img.exts, ee)
		case "SPARSE":
			se, err := openSparse(f, !ro)
			if err != nil {
				f.Close()
				return fmt.Errorf("extent %d (%s): %w", i, el.Filename, err)
			}
			if se.size() < el.Sectors*sectorSize {
				f.Close()
				return fmt.Errorf("%w: extent %d holds %d bytes, descriptor says %d", diskimage.ErrCorrupt, i, se.size(), el.Sectors*sectorSize)
			}
			img.exts = append(img.exts, se)
		default:
			f.Close()
			return fmt.Errorf("%w: extent type %s", diskimage.ErrUnsupported, el.Type)
		}
	}
	return nil
}

// Create makes a new VMDK of size bytes (rounded up to a sector).
func Create(path string, size int64, opts CreateOptions) (*Image, error) {
	size = (size + sectorSize - 1) &^ (sectorSize - 1)
	if size <= 0 || size > maxSectors*sectorSize {
		return nil, fmt.Errorf("vmdk: create %s: size %d out of range", path, size)
	}
	var cidb [4]byte
	rand.Read(cidb[:])
	cid := binary.LittleEndian.Uint32(cidb[:])
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("vmdk: %w", err)
	}
	switch opts.Subformat {
	case "", "monolithicSparse":
		if err := writeSparseLayout(f, size, cid); err != nil {
			f.Close()
			return nil, fmt.Errorf("vmdk: create %s: %w", path, err)
		}
		f.Close()
		return Open(path, false)
	case "streamOptimized":
		sw, err := newStreamWriter(f, size, cid)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("vmdk: create %s: %w", path, err)
		}
		return &Image{desc: newDescriptor("streamOptimized", filepath.Base(path), size/sectorSize, cid), size: size, stream: sw}, nil
	}
	f.Close()
	return nil, fmt.Errorf("vmdk: create %s: %w: subformat %q", path, diskimage.ErrUnsupported, opts.Subformat)
}

// writeSparseLayout writes an empty monolithicSparse extent the way VMware
// lays it out (spec "Hosted Sparse Extent" and its layout figure): header,
// embedded descriptor, redundant GD and its GTs, GD and its GTs, all grain
// tables preallocated, then grains from overHead on.
func writeSparseLayout(f *os.File, size int64, cid uint32) error {
	sectors := size / sectorSize
	grains := (sectors + defaultGrain - 1) / defaultGrain
	numGT := (grains + gtesPerGT - 1) / gtesPerGT
	gdSecs := (numGT*4 + sectorSize - 1) / sectorSize
	gtSecs := int64(gtesPerGT * 4 / sectorSize)
	rgd := int64(1 + descriptorSecs)
	gd := rgd + gdSecs + numGT*gtSecs
	end := gd + gdSecs + numGT*gtSecs
	overhead := (end + defaultGrain - 1) / defaultGrain * defaultGrain
	hdr := SparseHeader{
		Version: 1, Flags: flagNewlineTest | flagRedundantGT, Capacity: uint64(sectors), GrainSize: defaultGrain,
		DescriptorOffset: 1, DescriptorSize: descriptorSecs, NumGTEsPerGT: gtesPerGT,
		RGDOffset: uint64(rgd), GDOffset: uint64(gd), OverHead: uint64(overhead),
	}
	meta := make([]byte, end*sectorSize)
	copy(meta, hdr.Marshal())
	desc := newDescriptor("monolithicSparse", filepath.Base(f.Name()), sectors, cid).String()
	copy(meta[sectorSize:], desc)
	for _, dir := range []int64{rgd, gd} {
		for i := int64(0); i < numGT; i++ {
			binary.LittleEndian.PutUint32(meta[dir*sectorSize+i*4:], uint32(dir+gdSecs+i*gtSecs))
		}
	}
	if _, err := f.WriteAt(meta, 0); err != nil {
		return err
	}
	if err := f.Truncate(overhead * sectorSize); err != nil {
		return err
	}
	return f.Sync()
}

// Descriptor returns the image's parsed descriptor.
func (img *Image) Descriptor() *Descriptor { return img.desc }

// VirtualSize is the guest-visible size in bytes.
func (img *Image) VirtualSize() int64 { return img.size }

// Format returns "vmdk".
func (img *Image) Format() string { return FormatName }

// Subformat returns the descriptor's createType.
func (img *Image) Subformat() string { return img.desc.CreateType }

// locate finds the extent holding off.
func (img *Image) locate(off int64) int {
	i := len(img.starts) - 1
	for i > 0 && img.starts[i] > off {
		i--
	}
	return i
}

// ReadAt reads guest data across extents; holes read as zeros.
func (img *Image) ReadAt(p []byte, off int64) (int, error) {
	p, short := diskimage.ClipRead(p, off, img.size)
	if len(p) == 0 {
		return 0, short
	}
	if img.stream != nil {
		if err := img.stream.readAt(p, off); err != nil {
			return 0, fmt.Errorf("vmdk: %w", err)
		}
		return len(p), short
	}
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		i := img.locate(pos)
		in := pos - img.starts[i]
		n := int(min(int64(len(p)-done), img.exts[i].size()-in, img.size-pos))
		if n <= 0 {
			return done, fmt.Errorf("%w: extent %d is shorter than the descriptor says", diskimage.ErrCorrupt, i)
		}
		if err := img.exts[i].readAt(p[done:done+n], in); err != nil {
			return done, fmt.Errorf("vmdk: read at %#x: %w", pos, err)
		}
		done += n
	}
	return done, short
}

// WriteAt writes guest data. For a streamOptimized image being created,
// writes may come in any order until Close (see streamWriter).
func (img *Image) WriteAt(p []byte, off int64) (int, error) {
	if img.readOnly {
		return 0, diskimage.ErrReadOnly
	}
	if off < 0 || off > img.size || int64(len(p)) > img.size-off {
		return 0, fmt.Errorf("vmdk: write of %d bytes at %#x outside a %d-byte disk", len(p), off, img.size)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if img.stream != nil {
		if err := img.stream.writeAt(p, off); err != nil {
			return 0, fmt.Errorf("vmdk: %w", err)
		}
		return len(p), nil
	}
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		i := img.locate(pos)
		in := pos - img.starts[i]
		n := int(min(int64(len(p)-done), img.exts[i].size()-in))
		if n <= 0 {
			return done, fmt.Errorf("%w: extent %d is shorter than the descriptor says", diskimage.ErrCorrupt, i)
		}
		if err := img.exts[i].writeAt(p[done:done+n], in); err != nil {
			return done, fmt.Errorf("vmdk: write at %#x: %w", pos, err)
		}
		done += n
	}
	return done, nil
}

// Map reports data and zero runs of [off, off+length).
func (img *Image) Map(off, length int64) ([]diskimage.Extent, error) {
	if off < 0 || length < 0 || off > img.size {
		return nil, fmt.Errorf("vmdk: map %#x+%#x outside the disk", off, length)
	}
	length = min(length, img.size-off)
	var out []diskimage.Extent
	add := func(pos, n int64, zero bool) {
		if k := len(out); k > 0 && out[k-1].Zero == zero {
			out[k-1].Length += n
		} else {
			out = append(out, diskimage.Extent{Offset: pos, Length: n, Zero: zero})
		}
	}
	if img.stream != nil {
		add(off, length, false)
		return out, nil
	}
	for pos := off; pos < off+length; {
		i := img.locate(pos)
		in := pos - img.starts[i]
		data, n, err := img.exts[i].extentMap(in, min(off+length-pos, img.exts[i].size()-in))
		if err != nil {
			return nil, fmt.Errorf("vmdk: map at %#x: %w", pos, err)
		}
		if n <= 0 {
			return nil, fmt.Errorf("%w: extent %d is shorter than the descriptor says", diskimage.ErrCorrupt, i)
		}
		add(pos, n, !data)
		pos += n
	}
	return out, nil
}

// Flush makes completed writes durable. A streamOptimized image being
// created only becomes a valid file at Close.
func (img *Image) Flush() error {
	if img.readOnly || img.stream != nil {
		return nil
	}
	for _, e := range img.exts {
		if err := e.flush(); err != nil {
			return fmt.Errorf("vmdk: flush: %w", err)
		}
	}
	return nil
}

// Close flushes and closes every extent; for a streamOptimized image being
// created it writes the whole stream.
func (img *Image) Close() error {
	if img.stream != nil {
		if err := img.stream.close(); err != nil {
			return fmt.Errorf("vmdk: finish stream: %w", err)
		}
		return nil
	}
	err := img.Flush()
	for _, e := range img.exts {
		if cerr := e.close(); err == nil && cerr != nil {
			err = fmt.Errorf("vmdk: close: %w", cerr)
		}
	}
	if img.parent != nil {
		if cerr := img.parent.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}
	return err
}

// flatExtent is a FLAT/VMFS extent: raw sectors at an offset in a file.
type flatExtent struct {
	f        diskimage.File
	base, n  int64
	writable bool
}

func (e *flatExtent) size() int64 { return e.n }
func (e *flatExtent) readAt(p []byte, off int64) error {
	k, err := e.f.ReadAt(p, e.base+off)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	clear(p[k:]) // a short flat file reads as zeros, as qemu does
	return nil
}
func (e *flatExtent) writeAt(p []byte, off int64) error {
	if !e.writable {
		return diskimage.ErrReadOnly
	}
	_, err := e.f.WriteAt(p, e.base+off)
	return err
}
func (e *flatExtent) extentMap(off, n int64) (bool, int64, error) { return true, n, nil }
func (e *flatExtent) flush() error {
	if !e.writable {
		return nil
	}
	return e.f.Sync()
}
func (e *flatExtent) close() error { return e.f.Close() }

// zeroExtent is a ZERO extent: reads as zeros, refuses writes.
type zeroExtent int64

func (z zeroExtent) size() int64                      { return int64(z) }
func (z zeroExtent) readAt(p []byte, off int64) error { clear(p); return nil }
func (z zeroExtent) writeAt(p []byte, off int64) error {
	return fmt.Errorf("%w: write to a ZERO extent", diskimage.ErrReadOnly)
}
func (z zeroExtent) extentMap(off, n int64) (bool, int64, error) { return false, n, nil }
func (z zeroExtent) flush() error                                { return nil }
func (z zeroExtent) close() error                                { return nil }
