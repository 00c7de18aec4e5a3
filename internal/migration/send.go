package migration

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/bits"
	"net"
	"sync/atomic"
	"time"
)

// sender is the state of one outgoing migration.
type sender struct {
	ctx   context.Context
	conn  net.Conn
	w     *bufio.Writer
	fr    *frameReader
	src   Source
	disks DiskSource // nil without disk mirroring
	sizes []int64    // mirrored disk sizes
	regs  []Region   // in src.Regions order
	opts  Options

	compress bool
	roundAck bool // FeatureRoundAck negotiated
	files    bool // FeatureFiles was agreed
	batch    pageBatch
	comp     []byte
	buf      []byte

	limitStart time.Time // bandwidth limiter epoch
	limitBytes int64

	round      int
	sentRounds atomic.Int64 // s.round, readable by readPeer
	roundPages uint64
	roundDisk  uint64
	throttle   int
	paused     bool
	goSent     bool
	pausedAt   time.Time

	// Results of the goroutine reading the destination's frames.
	peerStarted bool
	peerDone    chan struct{}
	peerErr     error // set before peerDone closes
	ack, done   chan struct{}
	acked       atomic.Int64  // highest round the destination acknowledged, -1 for none
	ackedWake   chan struct{} // signalled on every ROUND_ACK

	// Post-copy (FeaturePostCopy negotiated and opts.PostCopy).
	postCopy   bool
	inPostCopy atomic.Bool   // the post-copy handover began; readPeer reads on after DONE
	requests   chan uint64   // pages the destination waits for
	postCopyOK chan struct{} // POSTCOPY_OK arrived
	disarm     func() bool   // stops ctx cancellation from cutting conn

	stats Stats

	left       uint64    // pages left to send in this round, for Progress
	last       Progress  // the latest report, repeated between rounds
	lastReport time.Time // when Progress was last called
}

// A round whose dirty set is below shrinkRatio of the previous one's counts
// as converging; at or below smallDirtySet pages the pause is short anyway.
const (
	shrinkRatio   = 0.8
	smallDirtySet = 256
)

// progressInterval is how often Progress is called while pages flow
// between the per-round reports: a full copy of a large VM takes long.
const progressInterval = 100 * time.Millisecond

// Send migrates src over conn with pre-copy: a full copy of RAM (and
// mirrored disks) while the guest runs, then rounds of what the guest
// dirtied until the rest fits opts.MaxDowntime and stops shrinking (or
// opts.MaxRounds), then a pause, the last dirty set and the device state.
// It returns nil once the destination runs the VM; the source is then left
// paused and its caller must stop it. On any failure before the handover
// (cancelled ctx, broken connection, destination error) Send resumes the
// source if it paused it and returns the error: the source VM keeps running. ErrHandoverUnknown
// is the one case where the source stays paused. Send does not close conn,
// but conn is not usable afterwards. Progress is called on Send's goroutine.
func Send(ctx context.Context, conn net.Conn, src Source, opts Options) (Stats, error) {
	if opts.MaxDowntime <= 0 {
		opts.MaxDowntime = 300 * time.Millisecond
	}
	if opts.MaxRounds <= 0 {
		opts.MaxRounds = 30
	}
	if opts.HandoverTimeout <= 0 {
		opts.HandoverTimeout = 10 * time.Second
	}
	s := &sender{
		ctx: ctx, conn: conn, src: src, opts: opts,
		fr:         newFrameReader(conn),
		peerDone:   make(chan struct{}),
		ack:        make(chan struct{}, 1),
		done:       make(chan struct{}, 1),
		ackedWake:  make(chan struct{}, 1),
		requests:   make(chan uint64, requestQueue),
		postCopyOK: make(chan struct{}, 1),
	}
	s.acked.Store(-1)
	s.w = bufio.NewWriterSize(countingWriter{conn, s}, 1<<20)
	start := time.Now()
	// Cancelling ctx unblocks every read and write on conn.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	s.disarm = stop
	err := s.run()
	stop()
	if err != nil {
		err = s.fail(err)
	}
	if s.peerStarted {
		// Leave no goroutine reading conn behind.
		conn.SetReadDeadline(time.Unix(1, 0))
		<-s.peerDone
	}
	s.stats.Total = time.Since(start)
	s.stats.Throttle = s.throttle
	s.stats.Rounds = s.round
	return s.stats, err
}

// countingWriter counts bytes that reach the connection.
type countingWriter struct {
	c net.Conn
	s *sender
}

func (cw countingWriter) Write(p []byte) (int, error) {
	n, err := cw.c.Write(p)
	cw.s.stats.BytesSent += int64(n)
	return n, err
}

// tick repeats the latest progress report with the current counts when
// progressInterval has passed since the previous one. It is called between
// frames (never inside a flush, where Buffered is stale).
func (s *sender) tick() {
	if s.opts.Progress == nil || time.Since(s.lastReport) < progressInterval {
		return
	}
	p := s.last
	if !s.limitStart.IsZero() {
		queued := s.stats.BytesSent + int64(s.w.Buffered())
		p.Bandwidth = float64(queued-s.limitBytes) / max(time.Since(s.limitStart).Seconds(), 1e-6)
		if s.opts.Bandwidth > 0 {
			p.Bandwidth = min(p.Bandwidth, float64(s.opts.Bandwidth))
		}
	}
	s.progress(p)
}

// fail turns a failure into the error Send returns: it resumes the source
// first (unless GO was sent), then tells the destination (best effort) and
// prefers the destination's own reason when it gave one.
func (s *sender) fail(err error) error {
	if s.goSent {
		// The destination may be running: never resume, never abort.
		return err
	}
	var errs []error
	if s.throttle > 0 {
		if t, ok := s.src.(Throttler); ok {
			if terr := t.Throttle(0); terr != nil {
				errs = append(errs, fmt.Errorf("migration: unthrottle source: %w", terr))
			}
		}
		s.throttle = 0
	}
	if s.paused {
		if rerr := s.src.Resume(); rerr != nil {
			errs = append(errs, fmt.Errorf("migration: resume source after failure: %w", rerr))
		} else {
			s.paused = false
			s.stats.Resumed = true
		}
	}
	peerGaveUp := func() bool {
		return errors.Is(s.peerErr, ErrAborted) || errors.Is(s.peerErr, ErrProtocol) || errors.Is(s.peerErr, ErrCorrupt)
	}
	if s.peerStarted {
		select {
		case <-s.peerDone:
			if peerGaveUp() {
				err = s.peerErr
			}
		default:
		}
	}
	// Tell the destination, unless it gave up first or speaks another
	// protocol (it would not understand the frame).
	if !errors.Is(err, ErrAborted) && !errors.Is(err, ErrVersion) && !errors.Is(err, ErrBadMagic) {
		s.conn.SetWriteDeadline(time.Now().Add(time.Second))
		if writeFrame(s.w, MsgAbort, 0, abortReason(err)) == nil {
			s.w.Flush()
		}
	}
	if s.peerStarted {
		// A write error often means the destination aborted or misbehaved:
		// wait briefly for the reader to record its reason.
		s.conn.SetReadDeadline(time.Now().Add(time.Second))
		<-s.peerDone
		if peerGaveUp() {
			err = s.peerErr
		}
	}
	if cerr := s.ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = fmt.Errorf("migration: %w (%v)", cerr, err)
	}
	if len(errs) > 0 {
		return errors.Join(append([]error{err}, errs...)...)
	}
	return err
}

func (s *sender) run() error {
	if err := s.handshake(); err != nil {
		return err
	}
	s.peerStarted = true
	go s.readPeer()

	// Start a clean dirty epoch, then copy everything.
	if _, err := s.src.DirtyBitmap(); err != nil {
		return fmt.Errorf("migration: start dirty logging: %w", err)
	}
	for i := range s.sizes {
		if _, err := s.disks.DirtyDiskBlocks(i); err != nil {
			return fmt.Errorf("migration: start dirty tracking of disk %d: %w", i, err)
		}
	}
	s.limitStart, s.limitBytes = time.Now(), s.stats.BytesSent+int64(s.w.Buffered())
	roundStart := time.Now()
	if err := s.sendAll(); err != nil {
		return err
	}
	if err := s.endRound(); err != nil {
		return err
	}
	if err := s.waitRound(); err != nil {
		return err
	}
	var prevDirty int
	for {
		dur := time.Since(roundStart)
		mem, dsk, err := s.takeDirty()
		if err != nil {
			return err
		}
		dirty := countBits(mem...)
		bw := float64(s.stats.BytesSent-s.limitBytes) / max(time.Since(s.limitStart).Seconds(), 1e-6)
		if s.opts.Bandwidth > 0 {
			bw = min(bw, float64(s.opts.Bandwidth))
		}
		remaining := float64(dirty)*(PageSize+8) + float64(countBits(dsk...))*(DiskBlockSize+32)
		expected := time.Duration(remaining / max(bw, 1) * float64(time.Second))
		s.left = uint64(dirty)
		s.progress(Progress{DirtyPages: dirty, DirtyRate: float64(dirty) / max(dur.Seconds(), 1e-6),
			Bandwidth: bw, ExpectedDowntime: expected})
		// Fitting the limit is not enough to stop: while rounds still
		// shrink the dirty set, one more round while the guest runs is
		// cheaper than sending the larger set while it is paused.
		fits := expected <= s.opts.MaxDowntime
		if s.postCopy && !fits && dirty > 0 {
			return s.finishPostCopy(mem)
		}
		shrinking := prevDirty == 0 || float64(dirty) < shrinkRatio*float64(prevDirty)
		if s.round >= s.opts.MaxRounds || (fits && (!shrinking || dirty <= smallDirtySet)) {
			return s.finish(mem, dsk)
		}
		// Not converging: this round's dirty set is not 10% smaller than
		// the previous round's (none before the first dirty round).
		if s.opts.AutoConverge && prevDirty > 0 && float64(dirty) >= 0.9*float64(prevDirty) {
			if err := s.raiseThrottle(); err != nil {
				return err
			}
		}
		prevDirty = dirty
		roundStart = time.Now()
		if err := s.sendDirty(mem, dsk); err != nil {
			return err
		}
		if err := s.endRound(); err != nil {
			return err
		}
		if err := s.waitRound(); err != nil {
			return err
		}
	}
}

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

// finish pauses the source, sends what remains and hands the VM over.
func (s *sender) finish(mem [][]uint64, dsk [][]uint64) error {
	if err := s.pause(); err != nil {
		return err
	}
	// What was dirtied since the last bitmap, plus the set not yet sent.
	mem2, dsk2, err := s.takeDirty()
	if err != nil {
		return err
	}
	orBitmaps(mem, mem2)
	orBitmaps(dsk, dsk2)
	s.left = uint64(countBits(mem...))
	if err := s.sendDirty(mem, dsk); err != nil {
		return err
	}
	return s.handover()
}

// pause stops the source for the handover.
func (s *sender) pause() error {
	if err := s.src.Pause(); err != nil {
		return fmt.Errorf("migration: pause source: %w", err)
	}
	s.paused, s.pausedAt = true, time.Now()
	s.limitStart = time.Time{} // no bandwidth limit while paused
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

// raiseThrottle slows the guest by 20 more percent, up to 99%.
func (s *sender) raiseThrottle() error {
	t, ok := s.src.(Throttler)
	if !ok || s.throttle >= 99 {
		return nil
	}
	next := min(99, s.throttle+20)
	if err := t.Throttle(next); err != nil {
		return fmt.Errorf("migration: throttle source to %d%%: %w", next, err)
	}
	s.throttle = next
	return nil
}

func (s *sender) progress(p Progress) {
	if s.opts.Progress == nil {
		return
	}
	p.Round, p.PagesSent, p.Throttle, p.RemainingPages = s.round, s.stats.PagesSent, s.throttle, s.left
	p.BytesSent = s.stats.BytesSent
	if s.w != nil {
		p.BytesSent += int64(s.w.Buffered())
	}
	p.Paused = p.Paused || s.paused
	s.last, s.lastReport = p, time.Now()
	s.opts.Progress(p)
}

// countBits counts set bits in bitmaps.
func countBits(bms ...[]uint64) int {
	n := 0
	for _, bm := range bms {
		for _, w := range bm {
			n += bits.OnesCount64(w)
		}
	}
	return n
}

// orBitmaps ORs src into dst (same shapes, as both come from one source).
func orBitmaps(dst, src [][]uint64) {
	for i := range min(len(dst), len(src)) {
		for j := range min(len(dst[i]), len(src[i])) {
			dst[i][j] |= src[i][j]
		}
	}
}
