// Package esxtest writes VMware disks the way ESXi lays out a VM folder,
// for tests: a vmfs base (descriptor + -flat.vmdk) and snapshot children
// as vmfsSparse (descriptor + COWD -delta.vmdk) or seSparse (descriptor +
// -sesparse.vmdk). It writes the formats from their published facts (see
// the vmdk package's cowd.go and sesparse.go) independently of the reader,
// so tests compare two implementations, and qemu-img a third.
package esxtest

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

const sector = 512

// Layer is what one snapshot records over its parent.
type Layer struct {
	// Kind is "vmfsSparse" (COWD) or "seSparse".
	Kind string
	// Data maps guest byte offsets to the bytes this layer stores there;
	// offsets and lengths must be whole grains.
	Data map[int64][]byte
	// Zero lists guest byte ranges [start, end) recorded as zero grains,
	// Unmapped ranges as unmapped (SCSI UNMAP) grains: seSparse only.
	Zero, Unmapped [][2]int64
	// GrainSectors is the COWD grain size (default 1: ESXi's 512 bytes).
	GrainSectors int
	// SkipGrains leaves that many unused grain slots before the first
	// stored seSparse grain, so indices exceed 4096 and exercise the
	// entry's split index bits.
	SkipGrains int64
}

// WriteBase writes dir/name.vmdk (createType "vmfs") over dir/name-flat.vmdk
// holding data, with content ID cid.
func WriteBase(dir, name string, data []byte, cid uint32) error {
	if len(data)%sector != 0 {
		return fmt.Errorf("esxtest: base of %d bytes is not whole sectors", len(data))
	}
	flat := name + "-flat.vmdk"
	if err := os.WriteFile(filepath.Join(dir, flat), data, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name+".vmdk"), []byte(Descriptor(cid, 0xffffffff, "vmfs", "", int64(len(data))/sector, "VMFS", flat)), 0o644)
}

// WriteDelta writes the snapshot dir/name.vmdk over the parent descriptor
// named parent (whose CID is parentCID), recording l on a disk of size bytes.
func WriteDelta(dir, name, parent string, parentCID, cid uint32, size int64, l Layer) error {
	var (
		body       []byte
		err        error
		file, kind string
	)
	switch l.Kind {
	case "vmfsSparse":
		file, kind = name+"-delta.vmdk", "VMFSSPARSE"
		body, err = COWD(size, l.GrainSectors, l.Data)
	case "seSparse":
		file, kind = name+"-sesparse.vmdk", "SESPARSE"
		body, err = SESparse(size, l)
	default:
		return fmt.Errorf("esxtest: layer kind %q", l.Kind)
	}
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, file), body, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name+".vmdk"), []byte(Descriptor(cid, parentCID, l.Kind, parent, size/sector, kind, file)), 0o644)
}

// Descriptor is a descriptor as ESXi writes one: CID before parentCID (qemu
// finds the first "CID"), ddb keys ESXi adds that readers must skip.
func Descriptor(cid, parentCID uint32, createType, parent string, sectors int64, extentType, file string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\nCID=%08x\nparentCID=%08x\n", cid, parentCID)
	if parent != "" {
		b.WriteString("isNativeSnapshot=\"no\"\n")
	}
	fmt.Fprintf(&b, "createType=\"%s\"\n", createType)
	if parent != "" {
		fmt.Fprintf(&b, "parentFileNameHint=\"%s\"\n", parent)
	}
	fmt.Fprintf(&b, "# Extent description\nRW %d %s \"%s\"\n\n", sectors, extentType, file)
	b.WriteString("# The Disk Data Base\n#DDB\n\nddb.adapterType = \"lsilogic\"\nddb.deletable = \"true\"\n")
	fmt.Fprintf(&b, "ddb.longContentID = \"%032x\"\nddb.uuid = \"60 00 C2 9a 5b 1e 2f 3c-4d 5e 6f 70 81 92 a3 b4\"\nddb.virtualHWVersion = \"14\"\n", cid)
	return b.String()
}

// grains splits data into grain-sized pieces by guest grain index, in the
// order the file stores them: descending offsets, so the tables, not the
// file order, must put them in place.
func grains(data map[int64][]byte, grainBytes int64) ([]int64, map[int64][]byte, error) {
	out := map[int64][]byte{}
	var order []int64
	offs := make([]int64, 0, len(data))
	for off := range data {
		offs = append(offs, off)
	}
	slices.Sort(offs)
	slices.Reverse(offs)
	for _, off := range offs {
		d := data[off]
		if off%grainBytes != 0 || int64(len(d))%grainBytes != 0 {
			return nil, nil, fmt.Errorf("esxtest: %d bytes at %d are not whole %d-byte grains", len(d), off, grainBytes)
		}
		for i := int64(0); i < int64(len(d)); i += grainBytes {
			g := (off + i) / grainBytes
			if _, dup := out[g]; !dup {
				order = append(order, g)
			}
			out[g] = d[i : i+grainBytes]
		}
	}
	return order, out, nil
}

// COWD builds an ESX Server sparse extent (VMware "Virtual Disk Format
// 1.1", "ESX Server Sparse Extents") of size bytes storing data: the
// 2048-byte header, the grain directory at sector 4, the grain tables
// this data needs, then the grains.
func COWD(size int64, grainSectors int, data map[int64][]byte) ([]byte, error) {
	if grainSectors <= 0 {
		grainSectors = 1
	}
	gb := int64(grainSectors) * sector
	cover := gb * 4096
	numGD := (size + cover - 1) / cover
	order, gs, err := grains(data, gb)
	if err != nil {
		return nil, err
	}
	gdSecs := (numGD*4 + sector - 1) / sector
	var tables []int64 // directory indices with a table, in file order
	for _, g := range order {
		if t := g / 4096; !slices.Contains(tables, t) {
			tables = append(tables, t)
		}
	}
	gtStart := 4 + gdSecs
	grainStart := gtStart + int64(len(tables))*32
	end := grainStart + int64(len(order))*int64(grainSectors)
	b := make([]byte, end*sector)
	le := binary.LittleEndian
	copy(b, "COWD")
	for i, v := range []uint32{1, 3, uint32(size / sector), uint32(grainSectors), 4, uint32(numGD), uint32(end)} {
		le.PutUint32(b[4+4*i:], v)
	}
	for i, t := range tables {
		le.PutUint32(b[4*sector+t*4:], uint32(gtStart+int64(i)*32))
	}
	for i, g := range order {
		sec := grainStart + int64(i)*int64(grainSectors)
		t := slices.Index(tables, g/4096)
		le.PutUint32(b[(gtStart+int64(t)*32)*sector+(g%4096)*4:], uint32(sec))
		copy(b[sec*sector:], gs[g])
	}
	return b, nil
}

// SESparse builds a seSparse extent of size bytes recording l (layout as
// qemu's block/vmdk.c reads it): constant header, volatile header, grain
// directory, the grain tables the layer needs, then the grains.
func SESparse(size int64, l Layer) ([]byte, error) {
	const gb, per = 8 * sector, 4096
	order, gs, err := grains(l.Data, gb)
	if err != nil {
		return nil, err
	}
	entries := map[int64]uint64{} // grain index -> table entry
	mark := func(rs [][2]int64, kind uint64) error {
		for _, r := range rs {
			if r[0]%gb != 0 || r[1]%gb != 0 {
				return fmt.Errorf("esxtest: range %v is not whole grains", r)
			}
			for g := r[0] / gb; g < r[1]/gb; g++ {
				entries[g] = kind << 60
			}
		}
		return nil
	}
	if err := mark(l.Zero, 2); err != nil {
		return nil, err
	}
	if err := mark(l.Unmapped, 1); err != nil {
		return nil, err
	}
	for i, g := range order {
		idx := uint64(l.SkipGrains) + uint64(i)
		entries[g] = 3<<60 | (idx&0xfff)<<48 | idx>>12
	}
	var tables []int64
	for g := range entries {
		if t := g / per; !slices.Contains(tables, t) {
			tables = append(tables, t)
		}
	}
	slices.Sort(tables)
	slices.Reverse(tables)
	numGD := (size + gb*per - 1) / (gb * per)
	gdSecs := (numGD*8 + sector - 1) / sector
	gtStart := 2 + gdSecs
	grainStart := gtStart + int64(len(tables))*64
	nGrains := l.SkipGrains + int64(len(order))
	end := grainStart + nGrains*8
	b := make([]byte, end*sector)
	le := binary.LittleEndian
	head := []uint64{0xcafebabe, 0x200000001, uint64(size / sector), 8, 64, 0, 0, 0, 0, 0,
		1, 1, 0, 0, 0, 0, 2, uint64(gdSecs), uint64(gtStart), uint64(len(tables)) * 64,
		0, 0, 0, 0, uint64(grainStart), uint64(nGrains) * 8}
	for i, v := range head {
		le.PutUint64(b[8*i:], v)
	}
	le.PutUint64(b[sector:], 0xcafecafe)
	for i, t := range tables {
		le.PutUint64(b[2*sector+t*8:], 0x10000000<<32|uint64(i))
	}
	for g, v := range entries {
		t := slices.Index(tables, g/per)
		le.PutUint64(b[(gtStart+int64(t)*64)*sector+(g%per)*8:], v)
	}
	for i, g := range order {
		copy(b[(grainStart+(l.SkipGrains+int64(i))*8)*sector:], gs[g])
	}
	return b, nil
}
