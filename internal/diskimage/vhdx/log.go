package vhdx

import (
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/govisor/govisor/internal/diskimage"
)

const (
	logSector   = 4 * kib
	logEntrySig = 0x65676f6c // "loge"
	descDataSig = 0x63736564 // "desc"
	descZeroSig = 0x6f72657a // "zero"
	dataSig     = 0x61746164 // "data"
	logHdrSize  = 64
	descSize    = 32
)

// logDescriptor is a zero or data descriptor of a log entry ([MS-VHDX]
// 2.3.1.2 and 2.3.1.3), with its data sector resolved.
type logDescriptor struct {
	zero       bool
	fileOffset uint64
	zeroLength uint64
	data       []byte // 4 KiB to write, data descriptors only
}

// logEntry is a validated log entry ([MS-VHDX] 2.3.1.1).
type logEntry struct {
	off        int64 // offset inside the log
	length     int64
	tail       int64
	seq        uint64
	flushedEnd uint64
	lastEnd    uint64
	descs      []logDescriptor
}

// logReader reads the circular log region.
type logReader struct {
	f      diskimage.File
	base   int64
	length int64
	guid   GUID
	budget int64 // bytes entryAt may still read: bounds work on hostile logs
}

// read reads n bytes at circular offset off.
func (l *logReader) read(off, n int64) ([]byte, error) {
	b := make([]byte, n)
	for done := int64(0); done < n; {
		pos := (off + done) % l.length
		k := min(n-done, l.length-pos)
		if _, err := l.f.ReadAt(b[done:done+k], l.base+pos); err != nil {
			return nil, fmt.Errorf("read log at %#x: %w", l.base+pos, err)
		}
		done += k
	}
	return b, nil
}

// entryAt parses and fully validates the entry at off: signature, LogGuid,
// sizes, CRC-32C over the whole entry, and every descriptor's sequence
// number and data sector. It returns nil for anything invalid.
func (l *logReader) entryAt(off int64) *logEntry {
	hb, err := l.read(off, logSector)
	if err != nil {
		return nil
	}
	le := binary.LittleEndian
	if le.Uint32(hb) != logEntrySig {
		return nil
	}
	length := int64(le.Uint32(hb[8:]))
	tail := int64(le.Uint32(hb[12:]))
	ndesc := int64(le.Uint32(hb[24:]))
	if length < logSector || length%logSector != 0 || length > l.length || tail%logSector != 0 || tail >= l.length {
		return nil
	}
	var guid GUID
	copy(guid[:], hb[32:])
	if guid != l.guid {
		return nil
	}
	descSectors := (logHdrSize + ndesc*descSize + logSector - 1) / logSector
	if descSectors > length/logSector {
		return nil
	}
	if l.budget -= length; l.budget < 0 {
		return nil
	}
	b, err := l.read(off, length)
	if err != nil || crc32c(b, 4) != le.Uint32(b[4:]) {
		return nil
	}
	e := &logEntry{off: off, length: length, tail: tail, seq: le.Uint64(b[16:]),
		flushedEnd: le.Uint64(b[48:]), lastEnd: le.Uint64(b[56:])}
	dataPos := descSectors * logSector
	for i := int64(0); i < ndesc; i++ {
		d := b[logHdrSize+i*descSize:]
		sig := le.Uint32(d)
		if le.Uint64(d[24:]) != e.seq {
			return nil
		}
		switch sig {
		case descZeroSig:
			zl, fo := le.Uint64(d[8:]), le.Uint64(d[16:])
			if zl%logSector != 0 || fo%logSector != 0 {
				return nil
			}
			e.descs = append(e.descs, logDescriptor{zero: true, fileOffset: fo, zeroLength: zl})
		case descDataSig:
			fo := le.Uint64(d[16:])
			if fo%logSector != 0 || dataPos+logSector > length {
				return nil
			}
			s := b[dataPos : dataPos+logSector]
			dataPos += logSector
			if le.Uint32(s) != dataSig || (uint64(le.Uint32(s[4:]))<<32|uint64(le.Uint32(s[4092:]))) != e.seq {
				return nil
			}
			// The 4 KiB written back: LeadingBytes (8), the sector's 4084
			// data bytes, TrailingBytes (4) ([MS-VHDX] 2.3.1.3, 2.3.1.4).
			data := make([]byte, logSector)
			copy(data[0:8], d[8:16])
			copy(data[8:4092], s[8:4092])
			copy(data[4092:], d[4:8])
			e.descs = append(e.descs, logDescriptor{fileOffset: fo, data: data})
		default:
			return nil
		}
	}
	return e
}

// activeSequence finds the sequence to replay ([MS-VHDX] 2.3.2): of the
// valid entries, take the one with the highest sequence number whose Tail
// leads to it through entries with consecutive sequence numbers, each
// starting where the previous one ends. Returns the entries in order.
func (l *logReader) activeSequence() ([]*logEntry, error) {
	var all []*logEntry
	for off := int64(0); off < l.length; off += logSector {
		if e := l.entryAt(off); e != nil {
			all = append(all, e)
		}
	}
	byOff := map[int64]*logEntry{}
	for _, e := range all {
		byOff[e.off] = e
	}
	sort.Slice(all, func(i, j int) bool { return all[i].seq > all[j].seq })
	for _, head := range all {
		var seq []*logEntry
		cur := byOff[head.tail]
		for steps := 0; cur != nil && steps < len(all); steps++ {
			if len(seq) > 0 && cur.seq != seq[len(seq)-1].seq+1 {
				break
			}
			seq = append(seq, cur)
			if cur == head {
				return seq, nil
			}
			cur = byOff[(cur.off+cur.length)%l.length]
		}
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("%w: the header names a log but no valid entry matches its GUID", ErrBadLog)
	}
	return nil, fmt.Errorf("%w: no complete sequence among %d entries", ErrBadLog, len(all))
}

// replayLog applies the active log sequence to t ([MS-VHDX] 2.3.3): each
// data sector and zero range is written at its file offset, and the file
// is extended to the head entry's LastFileOffset. fileSize must cover
// FlushedFileOffset, or the file was truncated after the log was written.
func replayLog(f diskimage.File, h *Header, fileSize int64, t replayTarget) error {
	if h.LogLength == 0 || h.LogLength%mib != 0 || h.LogLength > maxLogLength ||
		h.LogOffset%mib != 0 || h.LogOffset > uint64(fileSize) || uint64(h.LogLength) > uint64(fileSize)-h.LogOffset {
		return fmt.Errorf("%w: log at %#x+%#x in a %d-byte file", ErrBadLog, h.LogOffset, h.LogLength, fileSize)
	}
	l := &logReader{f: f, base: int64(h.LogOffset), length: int64(h.LogLength), guid: h.LogGUID, budget: 4 * int64(h.LogLength)}
	seq, err := l.activeSequence()
	if err != nil {
		return err
	}
	head := seq[len(seq)-1]
	if head.flushedEnd > uint64(fileSize) {
		return fmt.Errorf("%w: file is %d bytes, the log says %d were flushed", ErrBadLog, fileSize, head.flushedEnd)
	}
	if head.lastEnd > maxVirtualSize*2 {
		return fmt.Errorf("%w: last file offset %d", ErrBadLog, head.lastEnd)
	}
	ndesc := 0
	for _, e := range seq {
		if ndesc += len(e.descs); ndesc > maxReplayDescriptors {
			return fmt.Errorf("%w: more than %d descriptors", ErrBadLog, maxReplayDescriptors)
		}
	}
	for _, e := range seq {
		for _, d := range e.descs {
			if d.fileOffset > maxVirtualSize*2 || d.zeroLength > maxVirtualSize {
				return fmt.Errorf("%w: descriptor at file offset %#x", ErrBadLog, d.fileOffset)
			}
			if d.zero {
				err = t.zero(int64(d.fileOffset), int64(d.zeroLength))
			} else {
				_, err = t.WriteAt(d.data, int64(d.fileOffset))
			}
			if err != nil {
				return fmt.Errorf("replay at %#x: %w", d.fileOffset, err)
			}
		}
	}
	return t.extend(int64(head.lastEnd))
}
