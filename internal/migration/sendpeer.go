package migration

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"
)

// roundAcked records a ROUND_ACK; rounds are acknowledged in order and
// only once they were sent.
func (s *sender) roundAcked(p []byte) error {
	if !s.roundAck || len(p) != 4 {
		return fmt.Errorf("%w: unexpected ROUND_ACK (%d bytes)", ErrProtocol, len(p))
	}
	r := int64(binary.LittleEndian.Uint32(p))
	if r != s.acked.Load()+1 || r >= s.sentRounds.Load() {
		return fmt.Errorf("%w: ROUND_ACK for round %d after %d, %d rounds sent", ErrProtocol, r, s.acked.Load(), s.sentRounds.Load())
	}
	s.acked.Store(r)
	select {
	case s.ackedWake <- struct{}{}:
	default:
	}
	return nil
}

// waitRound waits until the destination has applied every round sent, so
// that a round's time and the bandwidth include the destination's work and
// the pause does not start behind a backlog in socket buffers.
func (s *sender) waitRound() error {
	if !s.roundAck {
		return nil
	}
	for s.acked.Load() < int64(s.round)-1 {
		select {
		case <-s.ackedWake:
		case <-s.peerDone:
			if s.acked.Load() >= int64(s.round)-1 {
				return nil
			}
			return fmt.Errorf("migration: wait for ROUND_ACK %d: %w", s.round-1, s.peerErr)
		case <-s.ctx.Done():
			return fmt.Errorf("migration: wait for ROUND_ACK %d: %w", s.round-1, s.ctx.Err())
		}
	}
	return nil
}

// handshake exchanges preambles and HELLOs.
func (s *sender) handshake() error {
	s.regs = s.src.Regions()
	if _, err := newLayout(s.regs); err != nil {
		return fmt.Errorf("migration: source memory: %w", err)
	}
	if ds, ok := s.src.(DiskSource); ok && len(ds.Disks()) > 0 {
		s.disks, s.sizes = ds, ds.Disks()
		for i, sz := range s.sizes {
			if sz <= 0 {
				return fmt.Errorf("migration: source disk %d has size %d", i, sz)
			}
		}
	}
	if err := writePreamble(s.w, ProtocolVersion); err != nil {
		return fmt.Errorf("migration: send preamble: %w", err)
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("migration: send preamble: %w", err)
	}
	v, err := readPreamble(s.fr.r)
	if err != nil {
		return fmt.Errorf("migration: destination: %w", err)
	}
	if v != ProtocolVersion {
		return fmt.Errorf("%w: destination speaks protocol version %d, this source speaks %d", ErrVersion, v, ProtocolVersion)
	}
	features := FeatureRoundAck
	if s.opts.PostCopy {
		if len(s.sizes) > 0 {
			return errors.New("migration: post-copy moves memory only: disks must be on shared storage, not mirrored")
		}
		features |= FeaturePostCopy
	}
	if s.opts.Compress {
		features |= FeatureCompress
	}
	if _, ok := s.conn.(*net.UnixConn); ok {
		if _, ok := s.src.(FileSource); ok {
			features |= FeatureFiles
		}
	}
	h := hello{Features: features, Regions: s.regs, Disks: s.sizes}
	if err := s.writeFrame(MsgHello, 0, h.encode()); err != nil {
		return err
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("migration: send HELLO: %w", err)
	}
	f, err := s.fr.next()
	if err != nil {
		return fmt.Errorf("migration: wait for destination HELLO: %w", err)
	}
	switch {
	case f.Type == MsgAbort:
		return fmt.Errorf("%w: %s", ErrAborted, sanitize(f.Payload))
	case f.Type != MsgHello || len(f.Payload) != 8:
		return fmt.Errorf("%w: destination answered HELLO with %v (%d bytes)", ErrProtocol, f.Type, len(f.Payload))
	}
	accepted := binary.LittleEndian.Uint64(f.Payload)
	if accepted&^features != 0 {
		return fmt.Errorf("%w: destination accepted features %#x never offered", ErrProtocol, accepted&^features)
	}
	s.compress = accepted&FeatureCompress != 0
	s.roundAck = accepted&FeatureRoundAck != 0
	s.postCopy = accepted&FeaturePostCopy != 0
	if s.opts.PostCopy && !s.postCopy {
		return fmt.Errorf("%w: the destination cannot take a post-copy migration", ErrProtocol)
	}
	s.files = accepted&FeatureFiles != 0
	return nil
}

// readPeer reads the destination's frames until the connection ends.
func (s *sender) readPeer() {
	defer close(s.peerDone)
	for {
		f, err := s.fr.next()
		if err != nil {
			s.peerErr = err
			return
		}
		switch f.Type {
		case MsgAck:
			select {
			case s.ack <- struct{}{}:
			default:
			}
		case MsgDone:
			select {
			case s.done <- struct{}{}:
			default:
			}
		case MsgRoundAck:
			s.peerErr = s.roundAcked(f.Payload)
		case MsgPageRequest:
			s.peerErr = s.pageRequested(f.Payload)
		case MsgPostCopyOK:
			if !s.inPostCopy.Load() {
				s.peerErr = fmt.Errorf("%w: unexpected POSTCOPY_OK", ErrProtocol)
				break
			}
			s.postCopyOK <- struct{}{}
			return
		case MsgAbort:
			s.peerErr = fmt.Errorf("%w: destination: %s", ErrAborted, sanitize(f.Payload))
		default:
			s.peerErr = fmt.Errorf("%w: destination sent %v", ErrProtocol, f.Type)
		}
		if s.peerErr != nil || (f.Type == MsgDone && !s.inPostCopy.Load()) {
			// Unblock a writer stuck on a peer that stopped reading.
			s.conn.SetWriteDeadline(time.Unix(1, 0))
			return
		}
	}
}
