package migration

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/klauspost/compress/s2"
)

// receiver is the state of one incoming migration.
type receiver struct {
	conn   net.Conn
	w      *bufio.Writer
	fr     *frameReader
	dst    Destination
	ddst   DiskDestination
	layout layout
	disks  []int64

	compress bool
	roundAck bool // FeatureRoundAck negotiated: answer ROUND_END with ROUND_ACK
	dec      []byte

	ur       *unixReader // nil unless conn is a Unix socket
	files    bool        // FeatureFiles was agreed
	received []*os.File  // handed over, not yet given to dst

	round                 uint32
	roundPages, roundDisk uint64
	pages, diskBlocks     uint64
	state                 []byte

	// noAbort: do not send ABORT (the peer aborted, or speaks another version).
	noAbort bool

	place func(gpa uint64, data []byte) error // where PAGES go

	// Post-copy (FeaturePostCopy accepted).
	pcd         PostCopyDestination
	dstRegs     []Region   // dst.Regions(), in its order
	missing     [][]uint64 // pages to come after the handover
	missingLeft uint64
	armed       bool       // ArmPostCopy succeeded
	wmu         sync.Mutex // w: request writes from the VM's fault handler
	reqErr      error
}

var zeroBlock [DiskBlockSize]byte

// Receive accepts a migration from conn into dst: it checks the version and
// that both sides have the same RAM (and mirrored disk) layout, writes every
// page and block after validating its address against that layout, and
// verifies each round's and the final totals and the device state's
// CRC-32C. Then it calls dst.Commit(deviceState), ACKs, and waits for the
// source's GO. It returns nil only after GO: the caller may then run the
// VM. On error the caller must discard the destination VM; the source
// resumes. Receive owns conn and closes it when the migration is over: on
// return, or, when the source switched to post-copy (dst implements
// PostCopyDestination and ArmPostCopy was called), once the post-copy
// phase that goes on in the background ends with dst.EndPostCopy.
func Receive(ctx context.Context, conn net.Conn, dst Destination) (deviceState []byte, err error) {
	r := &receiver{conn: conn, dst: dst, w: bufio.NewWriterSize(conn, 64<<10)}
	if uc, ok := conn.(*net.UnixConn); ok {
		r.ur = newUnixReader(uc)
		r.fr = newFrameReader(r.ur)
	} else {
		r.fr = newFrameReader(conn)
	}
	r.place = dst.WriteMemory
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	state, err := r.run()
	stop()
	// Descriptors nobody took (failure, or a peer that sent extra) are
	// closed, and so are any that still arrive.
	closeFiles(r.received)
	r.received = nil
	if r.ur != nil {
		r.ur.close()
	}
	if err == nil {
		if r.armed {
			conn.SetDeadline(time.Time{})
			go r.postCopy()
		} else {
			conn.Close()
		}
		return state, nil
	}
	if cerr := ctx.Err(); cerr != nil {
		err = fmt.Errorf("migration: %w (%v)", cerr, err)
	}
	if r.armed {
		r.pcd.EndPostCopy(err) // the VM never ran
	}
	if !r.noAbort {
		r.conn.SetWriteDeadline(time.Now().Add(time.Second))
		r.send(MsgAbort, abortReason(err))
	}
	conn.Close()
	return nil, err
}

func (r *receiver) run() ([]byte, error) {
	if err := r.handshake(); err != nil {
		return nil, err
	}
	for {
		f, err := r.fr.next()
		if err != nil {
			return nil, err
		}
		if f.Flags != 0 && (f.Type != MsgPages || f.Flags != FlagCompressed) {
			return nil, fmt.Errorf("%w: %v frame with flags %#x", ErrCorrupt, f.Type, f.Flags)
		}
		switch f.Type {
		case MsgPages:
			err = r.pagesFrame(f)
		case MsgRoundEnd:
			err = r.roundEnd(f.Payload)
		case MsgDisk:
			err = r.diskFrame(f.Payload)
		case MsgDeviceState:
			if uint64(len(r.state))+uint64(len(f.Payload)) > MaxDeviceState {
				return nil, fmt.Errorf("%w: device state exceeds %d bytes", ErrProtocol, MaxDeviceState)
			}
			r.state = append(r.state, f.Payload...)
		case MsgDiscard:
			err = r.discardFrame(f.Payload)
		case MsgFiles:
			err = r.filesFrame(f.Payload)
		case MsgComplete:
			return r.complete(f.Payload)
		case MsgAbort:
			r.noAbort = true
			return nil, fmt.Errorf("%w: source: %s", ErrAborted, sanitize(f.Payload))
		default:
			return nil, fmt.Errorf("%w: unexpected %v frame from the source", ErrProtocol, f.Type)
		}
		if err != nil {
			return nil, err
		}
	}
}

// handshake checks the source's preamble and HELLO against dst.
func (r *receiver) handshake() error {
	v, err := readPreamble(r.fr.r)
	if err != nil {
		r.noAbort = true
		return fmt.Errorf("migration: from source: %w", err)
	}
	// Answer with our version in any case, so the source can report it.
	if err := writePreamble(r.w, ProtocolVersion); err != nil {
		return fmt.Errorf("migration: send preamble: %w", err)
	}
	if err := r.w.Flush(); err != nil {
		return fmt.Errorf("migration: send preamble: %w", err)
	}
	if v != ProtocolVersion {
		r.noAbort = true
		return fmt.Errorf("%w: source speaks protocol version %d, this destination speaks %d", ErrVersion, v, ProtocolVersion)
	}
	f, err := r.fr.next()
	if err != nil {
		return fmt.Errorf("migration: wait for HELLO: %w", err)
	}
	if f.Type != MsgHello || f.Flags != 0 {
		return fmt.Errorf("%w: expected HELLO, got %v", ErrProtocol, f.Type)
	}
	h, err := decodeHello(f.Payload)
	if err != nil {
		return err
	}
	src, err := newLayout(h.Regions)
	if err != nil {
		return fmt.Errorf("migration: source memory: %w", err)
	}
	mine, err := newLayout(r.dst.Regions())
	if err != nil {
		return fmt.Errorf("migration: destination memory: %w", err)
	}
	if !src.equal(mine) {
		return fmt.Errorf("%w: source RAM is %v, destination RAM is %v", ErrLayout, []Region(src), []Region(mine))
	}
	r.layout = src
	if len(h.Disks) > 0 {
		dd, ok := r.dst.(DiskDestination)
		if !ok {
			return fmt.Errorf("%w: source mirrors %d disks, destination takes none", ErrLayout, len(h.Disks))
		}
		mineD := dd.Disks()
		if !slices.Equal(mineD, h.Disks) {
			return fmt.Errorf("%w: source disk sizes %v, destination disk sizes %v", ErrLayout, h.Disks, mineD)
		}
		r.ddst, r.disks = dd, h.Disks
	}
	accepted := h.Features & supportedFeatures
	r.dstRegs = r.dst.Regions()
	if pcd, ok := r.dst.(PostCopyDestination); ok && accepted&FeaturePostCopy != 0 && len(h.Disks) == 0 {
		r.pcd = pcd
	} else {
		accepted &^= FeaturePostCopy
	}
	if _, ok := r.dst.(FileDestination); !ok || r.ur == nil {
		accepted &^= FeatureFiles
	}
	r.files = accepted&FeatureFiles != 0
	r.compress = accepted&FeatureCompress != 0
	r.roundAck = accepted&FeatureRoundAck != 0
	if err := writeFrame(r.w, MsgHello, 0, binary.LittleEndian.AppendUint64(nil, accepted)); err != nil {
		return err
	}
	if err := r.w.Flush(); err != nil {
		return fmt.Errorf("migration: send HELLO: %w", err)
	}
	return nil
}

// filesFrame takes the descriptors a FILES frame announces from those that
// arrived with the stream's bytes.
func (r *receiver) filesFrame(p []byte) error {
	if !r.files {
		return fmt.Errorf("%w: FILES frame without the file handover feature", ErrProtocol)
	}
	n, err := decodeFileCount(p)
	if err != nil {
		return err
	}
	if len(r.received)+n > MaxFiles {
		return fmt.Errorf("%w (more than %d)", ErrTooManyFiles, MaxFiles)
	}
	files, err := r.ur.pop(n)
	if err != nil {
		return err
	}
	r.received = append(r.received, files...)
	return nil
}

// pagesFrame validates and writes one PAGES batch.
func (r *receiver) pagesFrame(f frame) error {
	p := f.Payload
	if f.Flags&FlagCompressed != 0 {
		if !r.compress {
			return fmt.Errorf("%w: compressed PAGES without the compression feature", ErrProtocol)
		}
		n, err := s2.DecodedLen(p)
		if err != nil || n > MaxFrame {
			return fmt.Errorf("%w: compressed PAGES decodes to %d bytes (%v)", ErrCorrupt, n, err)
		}
		if cap(r.dec) < n {
			r.dec = make([]byte, n)
		}
		if p, err = s2.Decode(r.dec[:n], p); err != nil {
			return fmt.Errorf("%w: compressed PAGES: %v", ErrCorrupt, err)
		}
	}
	n, err := decodePages(p, func(gpa uint64, data []byte) error {
		if !r.layout.contains(gpa, PageSize) {
			return fmt.Errorf("%w: page %#x is outside guest RAM", ErrProtocol, gpa)
		}
		if data == nil {
			data = zeroPage[:]
		}
		if err := r.place(gpa, data); err != nil {
			return fmt.Errorf("migration: write guest page %#x: %w", gpa, err)
		}
		return nil
	})
	r.roundPages += uint64(n)
	r.pages += uint64(n)
	return err
}

// diskFrame validates and writes one mirrored disk block.
func (r *receiver) diskFrame(p []byte) error {
	b, err := decodeDisk(p)
	if err != nil {
		return err
	}
	if uint64(b.Disk) >= uint64(len(r.disks)) {
		return fmt.Errorf("%w: block for disk %d, %d disks mirrored", ErrProtocol, b.Disk, len(r.disks))
	}
	size := uint64(r.disks[b.Disk])
	if b.Length == 0 || b.Length > DiskBlockSize || b.Offset%DiskBlockSize != 0 || b.Offset >= size || uint64(b.Length) > size-b.Offset {
		return fmt.Errorf("%w: disk %d block %#x+%#x outside the %d-byte disk", ErrProtocol, b.Disk, b.Offset, b.Length, size)
	}
	data := b.Data
	if data == nil {
		data = zeroBlock[:b.Length]
	}
	if err := r.ddst.WriteDisk(int(b.Disk), int64(b.Offset), data); err != nil {
		return fmt.Errorf("migration: write disk %d at %#x: %w", b.Disk, b.Offset, err)
	}
	r.roundDisk++
	r.diskBlocks++
	return nil
}

// roundEnd checks that a round's counts match what arrived.
func (r *receiver) roundEnd(p []byte) error {
	t, err := decodeTotals(MsgRoundEnd, p)
	if err != nil {
		return err
	}
	if t.Round != r.round {
		return fmt.Errorf("%w: ROUND_END %d, expected round %d", ErrProtocol, t.Round, r.round)
	}
	if t.Pages != r.roundPages || t.DiskBlocks != r.roundDisk {
		return fmt.Errorf("%w: round %d: source sent %d pages and %d disk blocks, %d and %d arrived",
			ErrProtocol, t.Round, t.Pages, t.DiskBlocks, r.roundPages, r.roundDisk)
	}
	r.round++
	r.roundPages, r.roundDisk = 0, 0
	if !r.roundAck {
		return nil
	}
	if err := writeFrame(r.w, MsgRoundAck, 0, binary.LittleEndian.AppendUint32(nil, t.Round)); err != nil {
		return err
	}
	if err := r.w.Flush(); err != nil {
		return fmt.Errorf("migration: send ROUND_ACK %d: %w", t.Round, err)
	}
	return nil
}

// complete verifies the totals, loads the device state, ACKs and waits for GO.
func (r *receiver) complete(p []byte) ([]byte, error) {
	t, err := decodeTotals(MsgComplete, p)
	if err != nil {
		return nil, err
	}
	switch {
	case t.Round != r.round:
		return nil, fmt.Errorf("%w: COMPLETE after %d rounds, %d arrived", ErrProtocol, t.Round, r.round)
	case t.Pages != r.pages || t.DiskBlocks != r.diskBlocks:
		return nil, fmt.Errorf("%w: source sent %d pages and %d disk blocks in all, %d and %d arrived",
			ErrProtocol, t.Pages, t.DiskBlocks, r.pages, r.diskBlocks)
	case t.StateLen != uint64(len(r.state)):
		return nil, fmt.Errorf("%w: device state is %d bytes, source sent %d", ErrProtocol, len(r.state), t.StateLen)
	case t.StateCRC != crc32.Checksum(r.state, castagnoli):
		return nil, fmt.Errorf("%w: device state CRC-32C mismatch", ErrCorrupt)
	}
	if r.ur != nil && r.ur.pending() > 0 {
		return nil, fmt.Errorf("%w: %d descriptors arrived outside FILES frames", ErrProtocol, r.ur.pending())
	}
	if fd, ok := r.dst.(FileDestination); ok {
		files := r.received
		r.received = nil
		fd.ReceiveFiles(files)
	}
	if err := r.dst.Commit(r.state); err != nil {
		return nil, fmt.Errorf("migration: load device state: %w", err)
	}
	if err := r.armPostCopy(); err != nil {
		return nil, err
	}
	if err := r.send(MsgAck, nil); err != nil {
		return nil, err
	}
	f, err := r.fr.next()
	if err != nil {
		return nil, fmt.Errorf("migration: wait for GO: %w", err)
	}
	switch f.Type {
	case MsgGo:
	case MsgAbort:
		r.noAbort = true
		return nil, fmt.Errorf("%w: source: %s", ErrAborted, sanitize(f.Payload))
	default:
		return nil, fmt.Errorf("%w: expected GO, got %v", ErrProtocol, f.Type)
	}
	// The source is stopped for good: from here on the VM must run here,
	// whether or not DONE reaches the source.
	r.noAbort = true
	r.send(MsgDone, nil)
	return r.state, nil
}
