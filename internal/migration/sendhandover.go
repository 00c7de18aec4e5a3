package migration

import (
	"fmt"
	"hash/crc32"
	"time"
)

// finish pauses the source, sends what remains and hands the VM over.
func (s *sender) finish(mem [][]uint64, dsk [][]uint64) error {
	if err := s.pause(mem, dsk); err != nil {
		return err
	}
	s.left = uint64(countBits(mem...))
	if err := s.sendDirty(mem, dsk); err != nil {
		return err
	}
	return s.handover()
}

// pause stops the source for the handover and adds to mem and dsk (the
// sets not sent yet) what the guest dirtied since they were taken.
func (s *sender) pause(mem, dsk [][]uint64) error {
	if err := s.src.Pause(); err != nil {
		return fmt.Errorf("migration: pause source: %w", err)
	}
	s.paused, s.pausedAt = true, time.Now()
	s.limitStart = time.Time{} // no bandwidth limit while paused
	mem2, dsk2, err := s.takeDirty()
	if err != nil {
		return err
	}
	orBitmaps(mem, mem2)
	orBitmaps(dsk, dsk2)
	return nil
}

// handover sends the device state and COMPLETE, waits for the ACK, sends GO
// and waits for DONE: the destination then runs the VM.
func (s *sender) handover() error {
	state, err := s.src.DeviceState()
	if err != nil {
		return fmt.Errorf("migration: capture device state: %w", err)
	}
	for off := 0; off < len(state); off += MaxFrame {
		if err := s.writeFrame(MsgDeviceState, 0, state[off:min(len(state), off+MaxFrame)]); err != nil {
			return err
		}
	}
	if s.files {
		if err := s.handOver(); err != nil {
			return err
		}
	}
	t := totals{Round: uint32(s.round), Pages: s.stats.PagesSent, DiskBlocks: s.stats.DiskBlocks,
		StateLen: uint64(len(state)), StateCRC: crc32.Checksum(state, castagnoli)}
	if err := s.writeFrame(MsgComplete, 0, t.encode()); err != nil {
		return err
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("migration: send COMPLETE: %w", err)
	}
	s.progress(Progress{Paused: true})
	if err := s.wait(s.ack, "ACK"); err != nil {
		return err
	}
	if s.opts.BeforeGo != nil {
		if err := s.opts.BeforeGo(); err != nil {
			return fmt.Errorf("migration: before the handover: %w", err)
		}
	}
	// From here the destination may run: the source must never resume, and
	// cancelling can no longer take the VM back.
	s.disarm()
	if err := s.writeFrame(MsgGo, 0, nil); err != nil {
		return err
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("migration: send GO: %w", err)
	}
	s.goSent = true
	timer := time.NewTimer(s.opts.HandoverTimeout)
	defer timer.Stop()
	select {
	case <-s.done:
		s.stats.Downtime = time.Since(s.pausedAt)
		return nil
	case <-s.peerDone:
		if len(s.done) > 0 {
			s.stats.Downtime = time.Since(s.pausedAt)
			return nil
		}
		return fmt.Errorf("%w: connection ended after GO: %v", ErrHandoverUnknown, s.peerErr)
	case <-timer.C:
		return fmt.Errorf("%w: no DONE within %v of GO", ErrHandoverUnknown, s.opts.HandoverTimeout)
	}
}

// wait waits for a message from the destination (or its failure).
func (s *sender) wait(c chan struct{}, what string) error {
	select {
	case <-c:
		return nil
	case <-s.peerDone:
		if len(c) > 0 {
			return nil
		}
		return fmt.Errorf("migration: wait for %s: %w", what, s.peerErr)
	case <-s.ctx.Done():
		return fmt.Errorf("migration: wait for %s: %w", what, s.ctx.Err())
	}
}
