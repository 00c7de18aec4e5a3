package migration

import (
	"encoding/binary"
	"fmt"
	"time"
)

// postCopyReadTimeout bounds the wait for the source's next frame during
// post-copy: a silent source would leave the VM waiting on a page forever.
const postCopyReadTimeout = 30 * time.Second

// discardFrame records pages the destination must fetch after the handover.
func (r *receiver) discardFrame(p []byte) error {
	if r.pcd == nil {
		return fmt.Errorf("%w: DISCARD without the post-copy feature", ErrProtocol)
	}
	gpa, first, words, err := decodeDiscard(p)
	if err != nil {
		return err
	}
	i := -1
	for j, reg := range r.dstRegs {
		if reg.GPA == gpa {
			i = j
		}
	}
	if i < 0 {
		return fmt.Errorf("%w: DISCARD for a region at %#x, which guest RAM does not have", ErrProtocol, gpa)
	}
	pages := r.dstRegs[i].Size / PageSize
	n := (pages + 63) / 64
	if uint64(first)+uint64(len(words)) > n {
		return fmt.Errorf("%w: DISCARD words %d-%d past the region's %d", ErrProtocol, first, uint64(first)+uint64(len(words)), n)
	}
	if last := uint64(first) + uint64(len(words)); last == n && pages%64 != 0 && words[len(words)-1]>>(pages%64) != 0 {
		return fmt.Errorf("%w: DISCARD names pages past the region at %#x", ErrProtocol, gpa)
	}
	if r.missing == nil {
		r.missing = make([][]uint64, len(r.dstRegs))
	}
	if r.missing[i] == nil {
		r.missing[i] = make([]uint64, n)
	}
	for k, w := range words {
		r.missing[i][int(first)+k] |= w
	}
	return nil
}

// armPostCopy hands the missing pages to the destination after Commit.
func (r *receiver) armPostCopy() error {
	if r.missing == nil {
		return nil
	}
	left := uint64(0)
	for i := range r.missing {
		if r.missing[i] == nil {
			r.missing[i] = make([]uint64, (r.dstRegs[i].Size/PageSize+63)/64)
		}
		left += uint64(countBits(r.missing[i]))
	}
	if left == 0 {
		return nil
	}
	// The destination's copy; r.missing tracks what is still to come.
	arg := make([][]uint64, len(r.missing))
	for i, bm := range r.missing {
		arg[i] = append([]uint64(nil), bm...)
	}
	if err := r.pcd.ArmPostCopy(arg, r.request); err != nil {
		return fmt.Errorf("migration: start post-copy: %w", err)
	}
	r.armed, r.missingLeft = true, left
	return nil
}

// request asks the source for a page the VM waits on (any goroutine).
func (r *receiver) request(gpa uint64) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.reqErr != nil {
		return
	}
	err := writeFrame(r.w, MsgPageRequest, 0, binary.LittleEndian.AppendUint64(nil, gpa))
	if err == nil {
		err = r.w.Flush()
	}
	r.reqErr = err
}

// postCopy receives the missing pages until POSTCOPY_END, then ends
// post-copy on the destination, tells the source and closes conn.
func (r *receiver) postCopy() {
	err := r.postCopyPages()
	r.pcd.EndPostCopy(err)
	if err == nil {
		// The VM has all of its memory now and runs on whether or not
		// POSTCOPY_OK arrives; if it is lost, the source (which never
		// resumes after the handover) reports the migration failed. Receive
		// returned long ago, so a failed send has no caller to go to.
		_ = r.send(MsgPostCopyOK, nil)
	} else if !r.noAbort {
		r.conn.SetWriteDeadline(time.Now().Add(time.Second))
		r.send(MsgAbort, abortReason(err))
	}
	r.conn.Close()
}

func (r *receiver) postCopyPages() error {
	r.place = r.placeMissing
	var got uint64
	for {
		r.conn.SetReadDeadline(time.Now().Add(postCopyReadTimeout))
		f, err := r.fr.next()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrPostCopy, err)
		}
		switch {
		case f.Type == MsgPages && (f.Flags == 0 || f.Flags == FlagCompressed):
			before := r.pages
			err = r.pagesFrame(f)
			got += r.pages - before
		case f.Type == MsgPostCopyEnd && f.Flags == 0:
			if len(f.Payload) != 8 {
				return fmt.Errorf("%w: POSTCOPY_END of %d bytes", ErrCorrupt, len(f.Payload))
			}
			if n := binary.LittleEndian.Uint64(f.Payload); n != got || r.missingLeft != 0 {
				return fmt.Errorf("%w: post-copy ended with %d pages sent, %d arrived, %d still missing", ErrProtocol, n, got, r.missingLeft)
			}
			return nil
		case f.Type == MsgAbort:
			r.noAbort = true
			return fmt.Errorf("%w: source: %s", ErrAborted, sanitize(f.Payload))
		default:
			return fmt.Errorf("%w: unexpected %v frame during post-copy", ErrProtocol, f.Type)
		}
		if err != nil {
			return err
		}
	}
}

// placeMissing installs a page the destination lacked; each comes once.
func (r *receiver) placeMissing(gpa uint64, data []byte) error {
	i, p := -1, uint64(0)
	for j, reg := range r.dstRegs {
		if gpa >= reg.GPA && gpa-reg.GPA < reg.Size {
			i, p = j, (gpa-reg.GPA)/PageSize
		}
	}
	if i < 0 || r.missing[i][p/64]&(1<<(p%64)) == 0 {
		return fmt.Errorf("%w: post-copy page %#x was not missing (or came twice)", ErrProtocol, gpa)
	}
	if err := r.pcd.PlacePage(gpa, data); err != nil {
		return fmt.Errorf("migration: place guest page %#x: %w", gpa, err)
	}
	r.missing[i][p/64] &^= 1 << (p % 64)
	r.missingLeft--
	return nil
}

// send writes one frame and flushes; safe beside request.
func (r *receiver) send(typ MsgType, payload []byte) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if err := writeFrame(r.w, typ, 0, payload); err != nil {
		return err
	}
	if err := r.w.Flush(); err != nil {
		return fmt.Errorf("migration: send %v: %w", typ, err)
	}
	return nil
}
