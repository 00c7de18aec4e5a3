package migration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
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
// source if it paused it and returns the error: the source VM keeps
// running. ErrHandoverUnknown and ErrPostCopy are the cases where the source
// stays paused. Send does not close conn, but conn is not usable afterwards.
// Progress is called on Send's goroutine.
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
