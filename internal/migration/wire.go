// Package migration moves a running VM's memory, disks and device state to
// another VMM over any net.Conn: the versioned wire protocol, the pre-copy
// sender (Send) and the validating receiver (Receive).
//
// Wire protocol, all integers little-endian:
//
//	source -> destination: preamble  magic "GOVIMIGR" | protocol version uint32
//	destination -> source: preamble  (its own version; a mismatch ends here)
//	source -> destination: HELLO     features, page size, RAM layout, disk sizes
//	destination -> source: HELLO     accepted features   (or ABORT reason)
//	source -> destination: PAGES / DISK ... ROUND_END    (rounds, guest running)
//	                       PAGES / DISK ... DEVICE_STATE... [FILES...] COMPLETE (source paused)
//	destination -> source: ACK       (everything verified, device state loaded)
//	source -> destination: GO        (the source will never run again)
//	destination -> source: DONE      (the destination runs the VM)
//
// FILES frames flow only when both HELLOs carry FeatureFiles, which a side
// offers only on a Unix socket (see files.go): peers without the feature
// never see one, so the protocol version stays 1.
//
// Either side may send ABORT (reason) at any time. After the preamble every
// message is a frame: type uint8 | flags uint8 | reserved uint16 |
// payload length uint32 | CRC-32C of the first 8 header bytes and the payload
// uint32 | payload.
package migration

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// ProtocolVersion is the version of the wire protocol this package speaks.
const ProtocolVersion uint32 = 1

// PageSize is the unit of guest memory transfer.
const PageSize = 4096

// MaxFrame bounds a frame's payload; larger frames are refused unread.
const MaxFrame = 4 << 20

// MaxDeviceState bounds the total device state a receiver accepts.
const MaxDeviceState = 256 << 20

const (
	preambleMagic = "GOVIMIGR"
	preambleSize  = 12
	frameHeader   = 12
	maxReason     = 4096
)

// MsgType identifies a frame.
type MsgType uint8

// Frame types.
const (
	MsgHello       MsgType = 1  // handshake: features and layout
	MsgPages       MsgType = 2  // a batch of guest pages
	MsgRoundEnd    MsgType = 3  // end of a pre-copy round
	MsgDisk        MsgType = 4  // a mirrored disk block
	MsgDeviceState MsgType = 5  // a chunk of device state
	MsgComplete    MsgType = 6  // everything was sent, with totals
	MsgAbort       MsgType = 7  // the peer gives up, with a reason
	MsgAck         MsgType = 8  // destination verified and loaded everything
	MsgGo          MsgType = 9  // the source is stopped; the destination may run
	MsgDone        MsgType = 10 // the destination runs the VM
	MsgRoundAck    MsgType = 11 // destination applied a round (FeatureRoundAck)
	MsgFiles       MsgType = 12 // descriptors handed over (FeatureFiles)
	MsgDiscard     MsgType = 13 // post-copy: pages the destination must fetch
	MsgPageRequest MsgType = 14 // post-copy: pages the destination waits for
	MsgPostCopyEnd MsgType = 15 // post-copy: every missing page was sent
	MsgPostCopyOK  MsgType = 16 // post-copy: every missing page arrived
)

// String names a frame type for error messages.
func (t MsgType) String() string {
	names := [...]string{"", "HELLO", "PAGES", "ROUND_END", "DISK", "DEVICE_STATE", "COMPLETE", "ABORT", "ACK", "GO", "DONE", "ROUND_ACK",
		"FILES", "DISCARD", "PAGE_REQUEST", "POSTCOPY_END", "POSTCOPY_OK"}
	if int(t) < len(names) && t != 0 {
		return names[t]
	}
	return fmt.Sprintf("type-%d", uint8(t))
}

// Frame flags.
const (
	// FlagCompressed: the payload is S2-compressed (feature FeatureCompress).
	FlagCompressed = 1 << 0
)

// Feature flags negotiated in HELLO.
const (
	// FeatureCompress: PAGES payloads may be S2-compressed.
	FeatureCompress uint64 = 1 << 0
	// FeatureRoundAck: the destination answers every ROUND_END with
	// ROUND_ACK once it has applied the round, so the source measures rounds
	// end to end and pauses only when nothing is still in flight.
	FeatureRoundAck uint64 = 1 << 1
	// FeatureFiles: the source may hand over open files with SCM_RIGHTS in
	// FILES frames (a Unix socket between two VMMs on one host).
	FeatureFiles uint64 = 1 << 2
	// FeaturePostCopy: the source may hand the VM over before every page
	// was sent (Options.PostCopy); DISCARD, PAGE_REQUEST, POSTCOPY_END and
	// POSTCOPY_OK frames.
	FeaturePostCopy uint64 = 1 << 3
	// supportedFeatures is every feature this version implements.
	supportedFeatures = FeatureCompress | FeatureRoundAck | FeatureFiles | FeaturePostCopy
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Sentinel errors; match them with errors.Is.
var (
	// ErrBadMagic means the peer does not speak this protocol at all.
	ErrBadMagic = errors.New("migration: peer is not a govisor migration endpoint (bad magic)")
	// ErrVersion means the peer speaks another protocol version.
	ErrVersion = errors.New("migration: protocol version mismatch")
	// ErrCorrupt means a frame failed its CRC or is malformed.
	ErrCorrupt = errors.New("migration: corrupt frame")
	// ErrProtocol means a well-formed frame broke the protocol's rules
	// (unexpected type, address outside guest RAM, wrong totals).
	ErrProtocol = errors.New("migration: protocol violation")
	// ErrLayout means the two sides' RAM or disk layouts differ.
	ErrLayout = errors.New("migration: memory or disk layout mismatch")
	// ErrAborted means the peer sent ABORT.
	ErrAborted = errors.New("migration: aborted by peer")
	// ErrHandoverUnknown means the source sent GO but never heard that the
	// destination runs: the source stays paused and must not be resumed
	// until the destination's state is known.
	ErrHandoverUnknown = errors.New("migration: handover outcome unknown")
	// ErrPostCopy means post-copy ended before every missing page reached
	// the destination: the destination stops the VM and the source, which
	// must not resume (the VM ran on the destination), stays paused.
	ErrPostCopy = errors.New("migration: post-copy failed")
)

// writePreamble sends the magic and our protocol version.
func writePreamble(w io.Writer, version uint32) error {
	b := binary.LittleEndian.AppendUint32([]byte(preambleMagic), version)
	_, err := w.Write(b)
	return err
}

// readPreamble reads the peer's preamble and returns its version.
func readPreamble(r io.Reader) (uint32, error) {
	var b [preambleSize]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, fmt.Errorf("read preamble: %w", err)
	}
	if string(b[:8]) != preambleMagic {
		return 0, ErrBadMagic
	}
	return binary.LittleEndian.Uint32(b[8:]), nil
}

// writeFrame writes one frame to w.
func writeFrame(w io.Writer, typ MsgType, flags uint8, payload []byte) error {
	if len(payload) > MaxFrame {
		return fmt.Errorf("migration: %v frame of %d bytes exceeds %d", typ, len(payload), MaxFrame)
	}
	var h [frameHeader]byte
	h[0], h[1] = byte(typ), flags
	binary.LittleEndian.PutUint32(h[4:], uint32(len(payload)))
	crc := crc32.Update(crc32.Checksum(h[:8], castagnoli), castagnoli, payload)
	binary.LittleEndian.PutUint32(h[8:], crc)
	if _, err := w.Write(h[:]); err != nil {
		return fmt.Errorf("migration: write %v frame: %w", typ, err)
	}
	if _, err := w.Write(payload); err != nil {
		return fmt.Errorf("migration: write %v frame: %w", typ, err)
	}
	return nil
}

// frame is one received frame; Payload is valid until the next read.
type frame struct {
	Type    MsgType
	Flags   uint8
	Payload []byte
}

// frameReader reads frames, reusing one buffer no larger than MaxFrame.
type frameReader struct {
	r   *bufio.Reader
	buf []byte
	n   int // frames read, for error messages
}

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, 256<<10)}
}

// next reads and verifies one frame.
func (fr *frameReader) next() (frame, error) {
	var h [frameHeader]byte
	if _, err := io.ReadFull(fr.r, h[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			err = fmt.Errorf("%w: stream ends inside frame %d's header", ErrCorrupt, fr.n)
		}
		return frame{}, fmt.Errorf("migration: read frame %d: %w", fr.n, err)
	}
	f := frame{Type: MsgType(h[0]), Flags: h[1]}
	if h[2] != 0 || h[3] != 0 {
		return frame{}, fmt.Errorf("%w: frame %d has reserved bytes %#x %#x set", ErrCorrupt, fr.n, h[2], h[3])
	}
	n := binary.LittleEndian.Uint32(h[4:])
	if n > MaxFrame {
		return frame{}, fmt.Errorf("%w: frame %d (%v) claims %d bytes, limit %d", ErrCorrupt, fr.n, f.Type, n, MaxFrame)
	}
	if cap(fr.buf) < int(n) {
		fr.buf = make([]byte, n)
	}
	f.Payload = fr.buf[:n]
	if _, err := io.ReadFull(fr.r, f.Payload); err != nil {
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			err = fmt.Errorf("%w: stream ends inside frame %d (%v)", ErrCorrupt, fr.n, f.Type)
		}
		return frame{}, fmt.Errorf("migration: read frame %d: %w", fr.n, err)
	}
	want := binary.LittleEndian.Uint32(h[8:])
	if got := crc32.Update(crc32.Checksum(h[:8], castagnoli), castagnoli, f.Payload); got != want {
		return frame{}, fmt.Errorf("%w: frame %d (%v, %d bytes): CRC-32C mismatch (stored %#08x, computed %#08x)",
			ErrCorrupt, fr.n, f.Type, n, want, got)
	}
	fr.n++
	return f, nil
}
