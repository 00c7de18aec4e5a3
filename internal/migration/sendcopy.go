package migration

import (
	"fmt"
	"math/bits"
	"time"

	"github.com/klauspost/compress/s2"

	"github.com/govisor/govisor/internal/allzero"
)

const (
	// batchPages is the number of pages per PAGES frame (about 512 KiB).
	batchPages = 128
	// readChunk is how much memory the full copy reads at once.
	readChunk = 64 * PageSize
)

// writeFrame writes a frame and applies the bandwidth limit.
func (s *sender) writeFrame(typ MsgType, flags uint8, payload []byte) error {
	if err := writeFrame(s.w, typ, flags, payload); err != nil {
		return err
	}
	s.tick()
	return s.limit()
}

// limit sleeps while the bytes sent since limitStart exceed the budget,
// reporting progress meanwhile (a slow link may take seconds per frame).
func (s *sender) limit() error {
	if s.opts.Bandwidth <= 0 || s.limitStart.IsZero() {
		return nil
	}
	sent := s.stats.BytesSent + int64(s.w.Buffered()) - s.limitBytes
	due := s.limitStart.Add(time.Duration(float64(sent) / float64(s.opts.Bandwidth) * float64(time.Second)))
	for {
		d := time.Until(due)
		if d <= 0 {
			return nil
		}
		t := time.NewTimer(min(d, progressInterval))
		select {
		case <-t.C:
			s.tick()
		case <-s.ctx.Done():
			t.Stop()
			return fmt.Errorf("migration: %w", s.ctx.Err())
		case <-s.peerDone:
			t.Stop()
			return fmt.Errorf("migration: destination: %w", s.peerErr)
		}
	}
}

// addPage queues one page for sending; data is copied.
func (s *sender) addPage(gpa uint64, data []byte) error {
	if s.batch.add(gpa, data) {
		s.stats.ZeroPages++
	}
	s.stats.PagesSent++
	s.roundPages++
	s.scanned(1)
	if s.batch.count >= batchPages {
		return s.flushBatch()
	}
	return nil
}

// scanned counts n pages of this round as dealt with, for Progress.
func (s *sender) scanned(n uint64) { s.left -= min(n, s.left) }

// flushBatch sends the queued pages as one PAGES frame.
func (s *sender) flushBatch() error {
	if s.batch.count == 0 {
		return nil
	}
	payload, flags := s.batch.buf, uint8(0)
	if s.compress {
		s.comp = s2.Encode(s.comp[:cap(s.comp)], payload)
		if len(s.comp) < len(payload) {
			payload, flags = s.comp, FlagCompressed
		}
	}
	err := s.writeFrame(MsgPages, flags, payload)
	s.batch.reset()
	return err
}

// sendAll sends every non-zero page of RAM and every non-zero disk block:
// the destination starts all-zero, so zero pages need no message at all.
func (s *sender) sendAll() error {
	if cap(s.buf) < readChunk {
		s.buf = make([]byte, readChunk)
	}
	hinter, _ := s.src.(ZeroHinter)
	s.left = 0
	for _, r := range s.regs {
		s.left += r.Size / PageSize
	}
	for i, r := range s.regs {
		var zero []uint64
		if hinter != nil {
			zero = hinter.NeverWritten(i)
		}
		for off := uint64(0); off < r.Size; off += readChunk {
			buf := s.buf[:min(readChunk, r.Size-off)]
			if allSet(zero, off/PageSize, uint64(len(buf))/PageSize) {
				s.scanned(uint64(len(buf)) / PageSize)
				continue // never written: the destination's zero page is right
			}
			if err := s.src.ReadMemory(r.GPA+off, buf); err != nil {
				return fmt.Errorf("migration: read guest memory at %#x: %w", r.GPA+off, err)
			}
			for p := 0; p < len(buf); p += PageSize {
				if page := buf[p : p+PageSize]; !allzero.Is(page) {
					if err := s.addPage(r.GPA+off+uint64(p), page); err != nil {
						return err
					}
				} else {
					s.scanned(1)
				}
			}
		}
	}
	if err := s.flushBatch(); err != nil {
		return err
	}
	for d, size := range s.sizes {
		for blk := uint64(0); blk*DiskBlockSize < uint64(size); blk++ {
			if err := s.sendDiskBlock(d, blk, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// sendDirty sends the pages and disk blocks set in the bitmaps; pages that
// became zero are sent as ZERO entries so the destination clears them.
func (s *sender) sendDirty(mem, dsk [][]uint64) error {
	if cap(s.buf) < readChunk {
		s.buf = make([]byte, readChunk)
	}
	page := s.buf[:PageSize]
	for i, bm := range mem {
		if i >= len(s.regs) {
			break
		}
		r := s.regs[i]
		for w, word := range bm {
			for word != 0 {
				p := uint64(w*64 + bits.TrailingZeros64(word))
				word &= word - 1
				if p >= r.Size/PageSize {
					break
				}
				gpa := r.GPA + p*PageSize
				if err := s.src.ReadMemory(gpa, page); err != nil {
					return fmt.Errorf("migration: read guest memory at %#x: %w", gpa, err)
				}
				if err := s.addPage(gpa, page); err != nil {
					return err
				}
			}
		}
	}
	if err := s.flushBatch(); err != nil {
		return err
	}
	for d, bm := range dsk {
		if d >= len(s.sizes) {
			break
		}
		for w, word := range bm {
			for word != 0 {
				blk := uint64(w*64 + bits.TrailingZeros64(word))
				word &= word - 1
				if blk*DiskBlockSize >= uint64(s.sizes[d]) {
					break
				}
				if err := s.sendDiskBlock(d, blk, false); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// sendDiskBlock sends block blk of disk d; a zero block is skipped when
// skipZero (the full copy) and sent without data otherwise.
func (s *sender) sendDiskBlock(d int, blk uint64, skipZero bool) error {
	off := blk * DiskBlockSize
	n := min(DiskBlockSize, uint64(s.sizes[d])-off)
	if cap(s.buf) < DiskBlockSize+32 {
		s.buf = make([]byte, max(readChunk, DiskBlockSize+32))
	}
	data := s.buf[32 : 32+n]
	if err := s.disks.ReadDisk(d, int64(off), data); err != nil {
		return fmt.Errorf("migration: read disk %d at %#x: %w", d, off, err)
	}
	b := diskBlock{Disk: uint32(d), Offset: off, Length: uint32(n), Data: data}
	if allzero.Is(data) {
		if skipZero {
			return nil
		}
		b.Data = nil
	}
	s.stats.DiskBlocks++
	s.roundDisk++
	return s.writeFrame(MsgDisk, 0, b.encode(s.comp[:0]))
}

// endRound sends ROUND_END with this round's counts and flushes.
func (s *sender) endRound() error {
	if err := s.flushBatch(); err != nil {
		return err
	}
	t := totals{Round: uint32(s.round), Pages: s.roundPages, DiskBlocks: s.roundDisk}
	// Before the frame leaves: its ROUND_ACK may arrive before Flush returns.
	s.sentRounds.Store(int64(s.round) + 1)
	if err := s.writeFrame(MsgRoundEnd, 0, t.encode()); err != nil {
		return err
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("migration: send round %d: %w", s.round, err)
	}
	s.round++
	s.roundPages, s.roundDisk = 0, 0
	return nil
}

// takeDirty collects the memory and disk dirty bitmaps.
func (s *sender) takeDirty() (mem, dsk [][]uint64, err error) {
	mem, err = s.src.DirtyBitmap()
	if err != nil {
		return nil, nil, fmt.Errorf("migration: read dirty log: %w", err)
	}
	for d := range s.sizes {
		bm, err := s.disks.DirtyDiskBlocks(d)
		if err != nil {
			return nil, nil, fmt.Errorf("migration: read dirty blocks of disk %d: %w", d, err)
		}
		dsk = append(dsk, bm)
	}
	return mem, dsk, nil
}

// allSet reports whether bits [first, first+n) of bm are all set; a nil or
// short bitmap is not.
func allSet(bm []uint64, first, n uint64) bool {
	if bm == nil || (first+n+63)/64 > uint64(len(bm)) {
		return false
	}
	for p := first; p < first+n; p++ {
		if bm[p/64]&(1<<(p%64)) == 0 {
			return false
		}
	}
	return true
}
