package vhdx

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"unicode/utf16"
)

// Layout of a new file, the one Hyper-V and qemu use: headers and region
// tables in the first MiB, then a 1 MiB log, the metadata region and the
// BAT, each 1 MiB aligned ([MS-VHDX] 2.1).
const (
	newLogOff  = 1 * mib
	newLogLen  = 1 * mib
	newMetaOff = 2 * mib
	newMetaLen = 1 * mib
	newBATOff  = 3 * mib
)

// Create makes a new VHDX of size bytes (rounded up to 512) and returns it
// open for writing.
func Create(path string, size int64, opts CreateOptions) (*Image, error) {
	bs := opts.BlockSize
	if bs == 0 {
		bs = DefaultBlockSize
	}
	size = (size + 511) &^ 511
	m := &Metadata{BlockSize: bs, VirtualSize: uint64(size), LogicalSectorSize: 512, PhysicalSectorSize: 4096,
		LeaveBlocksAllocated: opts.Fixed}
	rand.Read(m.Page83[:])
	if bs < minBlockSize || bs > maxBlockSize || bs&(bs-1) != 0 {
		return nil, fmt.Errorf("vhdx: create %s: block size %d not a power of two in 1..256 MiB", path, bs)
	}
	if size <= 0 || size > maxVirtualSize {
		return nil, fmt.Errorf("vhdx: create %s: size %d out of range", path, size)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("vhdx: %w", err)
	}
	if err := writeLayout(f, m, opts.Fixed); err != nil {
		f.Close()
		return nil, fmt.Errorf("vhdx: create %s: %w", path, err)
	}
	f.Close()
	return Open(path, false)
}

func writeLayout(f *os.File, m *Metadata, fixed bool) error {
	n := m.batEntries()
	batLen := (n*8 + mib - 1) / mib * mib
	end := int64(newBATOff) + batLen
	bat := make([]byte, batLen)
	if fixed {
		// Every payload block present, laid out in order after the BAT.
		for blk := int64(0); blk < m.dataBlocks(); blk++ {
			idx := blk + blk/m.chunkRatio()
			binary.LittleEndian.PutUint64(bat[idx*8:], uint64(end/mib)<<20|stateFullyPresent)
			end += int64(m.BlockSize)
		}
	}
	id := make([]byte, 64*1024)
	copy(id, fileIDSig)
	for i, c := range utf16.Encode([]rune("govisor")) {
		binary.LittleEndian.PutUint16(id[8+2*i:], c)
	}
	h := &Header{SequenceNumber: 1, Version: 1, LogLength: newLogLen, LogOffset: newLogOff}
	rand.Read(h.FileWriteGUID[:])
	rand.Read(h.DataWriteGUID[:])
	rt := marshalRegionTable([]RegionEntry{
		{GUID: guidBAT, FileOffset: newBATOff, Length: uint32(batLen), Required: true},
		{GUID: guidMetadata, FileOffset: newMetaOff, Length: newMetaLen, Required: true},
	})
	h2 := *h
	h2.SequenceNumber = 2
	for _, w := range []struct {
		b   []byte
		off int64
	}{
		{id, 0}, {h.Marshal(), header1Off}, {h2.Marshal(), header2Off}, {rt, region1Off}, {rt, region2Off},
		{m.Marshal(newMetaLen), newMetaOff}, {bat, newBATOff},
	} {
		if _, err := f.WriteAt(w.b, w.off); err != nil {
			return err
		}
	}
	if err := f.Truncate(end); err != nil {
		return err
	}
	return f.Sync()
}
