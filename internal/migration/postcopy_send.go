package migration

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"time"
)

const (
	// maxDiscardWords bounds the bitmap words of one DISCARD frame.
	maxDiscardWords = (MaxFrame - 12) / 8
	// maxRequestPages bounds the pages one PAGE_REQUEST names.
	maxRequestPages = 512
	// postCopyPush is how many pages the source pushes in address order
	// between two looks at the destination's requests: small, so that a
	// request waits behind little data.
	postCopyPush = 32
	// requestQueue is how many page requests wait for the sender; more are
	// dropped, which only delays them: every page is pushed in the end.
	requestQueue = 4096
)

// encodeDiscard is a DISCARD payload: region start, first bitmap word, words.
func encodeDiscard(gpa uint64, first uint32, words []uint64) []byte {
	b := binary.LittleEndian.AppendUint64(make([]byte, 0, 12+8*len(words)), gpa)
	b = binary.LittleEndian.AppendUint32(b, first)
	for _, w := range words {
		b = binary.LittleEndian.AppendUint64(b, w)
	}
	return b
}

func decodeDiscard(p []byte) (gpa uint64, first uint32, words []uint64, err error) {
	if len(p) < 20 || (len(p)-12)%8 != 0 {
		return 0, 0, nil, fmt.Errorf("%w: DISCARD of %d bytes", ErrCorrupt, len(p))
	}
	gpa, first = binary.LittleEndian.Uint64(p), binary.LittleEndian.Uint32(p[8:])
	for p = p[12:]; len(p) > 0; p = p[8:] {
		words = append(words, binary.LittleEndian.Uint64(p))
	}
	return gpa, first, words, nil
}

// finishPostCopy pauses the source, tells the destination which pages it
// lacks (those dirtied since they were sent) and hands the VM over; then it
// sends those pages, the ones the destination waits for first.
func (s *sender) finishPostCopy(mem [][]uint64) error {
	if err := s.pause(mem, nil); err != nil {
		return err
	}
	for i, bm := range mem {
		if i >= len(s.regs) {
			break
		}
		for w := 0; w < len(bm); w += maxDiscardWords {
			chunk := bm[w:min(len(bm), w+maxDiscardWords)]
			if countBits(chunk) == 0 {
				continue
			}
			if err := s.writeFrame(MsgDiscard, 0, encodeDiscard(s.regs[i].GPA, uint32(w), chunk)); err != nil {
				return err
			}
		}
	}
	s.inPostCopy.Store(true)
	if err := s.handover(); err != nil {
		return err
	}
	s.stats.PostCopy = true
	if err := s.servePostCopy(mem); err != nil {
		return fmt.Errorf("%w: %v", ErrPostCopy, err)
	}
	return nil
}

// servePostCopy sends every page set in pending (which it clears),
// requested pages first, then POSTCOPY_END, and waits for POSTCOPY_OK.
func (s *sender) servePostCopy(pending [][]uint64) error {
	if cap(s.buf) < readChunk {
		s.buf = make([]byte, readChunk)
	}
	page := s.buf[:PageSize]
	send := func(i int, p uint64) error {
		pending[i][p/64] &^= 1 << (p % 64)
		if p >= s.regs[i].Size/PageSize {
			return nil // a stray bit past the region's end
		}
		gpa := s.regs[i].GPA + p*PageSize
		if err := s.src.ReadMemory(gpa, page); err != nil {
			return fmt.Errorf("read guest memory at %#x: %w", gpa, err)
		}
		s.stats.PostCopyPages++
		return s.addPage(gpa, page)
	}
	left := countBits(pending...)
	s.left = uint64(left)
	s.progress(Progress{PostCopy: true})
	ci, cw := 0, 0 // push cursor: region, bitmap word
	for ; left > 0; s.left = uint64(left) {
		served := false
		for drained := false; !drained && left > 0; {
			select {
			case gpa := <-s.requests:
				i, p, ok := s.pageIndex(gpa)
				if !ok || i >= len(pending) || pending[i][p/64]&(1<<(p%64)) == 0 {
					continue // sent already
				}
				if err := send(i, p); err != nil {
					return err
				}
				s.stats.PostCopyRequested++
				left--
				served = true
			default:
				drained = true
			}
		}
		if served {
			if err := s.flushPages(); err != nil {
				return err
			}
		}
		for n := 0; n < postCopyPush && left > 0; {
			for ci < len(pending) && cw < len(pending[ci]) && pending[ci][cw] == 0 {
				cw++
			}
			if ci >= len(pending) {
				break
			}
			if cw >= len(pending[ci]) {
				ci, cw = ci+1, 0
				continue
			}
			p := uint64(cw*64 + bits.TrailingZeros64(pending[ci][cw]))
			if err := send(ci, p); err != nil {
				return err
			}
			left--
			n++
		}
		if err := s.flushPages(); err != nil {
			return err
		}
	}
	end := binary.LittleEndian.AppendUint64(nil, s.stats.PostCopyPages)
	if err := s.writeFrame(MsgPostCopyEnd, 0, end); err != nil {
		return err
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("send POSTCOPY_END: %w", err)
	}
	timer := time.NewTimer(s.opts.HandoverTimeout)
	defer timer.Stop()
	select {
	case <-s.postCopyOK:
		return nil
	case <-s.peerDone:
		if len(s.postCopyOK) > 0 {
			return nil
		}
		return fmt.Errorf("wait for POSTCOPY_OK: %w", s.peerErr)
	case <-timer.C:
		return fmt.Errorf("no POSTCOPY_OK within %v", s.opts.HandoverTimeout)
	}
}

// flushPages sends the queued pages now.
func (s *sender) flushPages() error {
	if err := s.flushBatch(); err != nil {
		return err
	}
	// Cancellation no longer cuts conn here: a destination that stopped
	// reading must not hang the source forever.
	s.conn.SetWriteDeadline(time.Now().Add(s.opts.HandoverTimeout))
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("send pages: %w", err)
	}
	return nil
}

// pageIndex finds the region and page number of gpa.
func (s *sender) pageIndex(gpa uint64) (int, uint64, bool) {
	for i, r := range s.regs {
		if gpa >= r.GPA && gpa-r.GPA < r.Size {
			return i, (gpa - r.GPA) / PageSize, true
		}
	}
	return 0, 0, false
}

// pageRequested queues the pages of a PAGE_REQUEST (readPeer's goroutine).
func (s *sender) pageRequested(p []byte) error {
	if !s.inPostCopy.Load() || len(p) == 0 || len(p)%8 != 0 || len(p)/8 > maxRequestPages {
		return fmt.Errorf("%w: unexpected PAGE_REQUEST (%d bytes)", ErrProtocol, len(p))
	}
	for ; len(p) > 0; p = p[8:] {
		gpa := binary.LittleEndian.Uint64(p)
		if _, _, ok := s.pageIndex(gpa); !ok || gpa%PageSize != 0 {
			return fmt.Errorf("%w: PAGE_REQUEST for %#x, not a page of guest RAM", ErrProtocol, gpa)
		}
		select {
		case s.requests <- gpa:
		default:
		}
	}
	return nil
}
