package migration

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
)

// streamConn is a net.Conn that reads a fixed byte stream and records what
// is written to it.
type streamConn struct {
	r   io.Reader
	out bytes.Buffer
}

func (c *streamConn) Read(p []byte) (int, error)         { return c.r.Read(p) }
func (c *streamConn) Write(p []byte) (int, error)        { return c.out.Write(p) }
func (c *streamConn) Close() error                       { return nil }
func (c *streamConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (c *streamConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (c *streamConn) SetDeadline(t time.Time) error      { return nil }
func (c *streamConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *streamConn) SetWriteDeadline(t time.Time) error { return nil }

var smallRegions = []Region{{GPA: 0, Size: 16 * PageSize}, {GPA: 1 << 32, Size: 8 * PageSize}}

const smallDisk = 4 * DiskBlockSize

// stream builds a source's byte stream.
type stream struct{ bytes.Buffer }

func (s *stream) frame(typ MsgType, flags uint8, payload []byte) *stream {
	writeFrame(&s.Buffer, typ, flags, payload)
	return s
}

// newStream starts a stream with a valid preamble and HELLO.
func newStream(features uint64) *stream {
	s := &stream{}
	writePreamble(&s.Buffer, ProtocolVersion)
	return s.frame(MsgHello, 0, hello{Features: features, Regions: smallRegions, Disks: []int64{smallDisk}}.encode())
}

func pages(entries ...uint64) []byte {
	var b pageBatch
	b.reset()
	for _, e := range entries {
		if e&pageZero != 0 {
			b.add(e&^uint64(pageFlagMask), nil)
		} else {
			data := bytes.Repeat([]byte{byte(e >> 12)}, PageSize)
			data[0] = 1
			b.add(e, data)
		}
	}
	return b.buf
}

func totalsBytes(t totals) []byte { return t.encode() }

func complete(round uint32, pages, disk uint64, state []byte) []byte {
	return totals{Round: round, Pages: pages, DiskBlocks: disk, StateLen: uint64(len(state)),
		StateCRC: crc32.Checksum(state, castagnoli)}.encode()
}

// validStream is a complete, correct migration stream.
func validStream() *stream { return validStreamWith(FeatureCompress) }

// validStreamWith is validStream offering features.
func validStreamWith(features uint64) *stream {
	s := newStream(features | FeatureCompress)
	p := pages(0, 5*PageSize, 1<<32|pageZero)
	s.frame(MsgPages, 0, p)
	s.frame(MsgPages, FlagCompressed, s2.Encode(nil, pages(1<<32+7*PageSize)))
	s.frame(MsgDisk, 0, diskBlock{Disk: 0, Offset: DiskBlockSize, Length: 16, Data: bytes.Repeat([]byte{9}, 16)}.encode(nil))
	s.frame(MsgRoundEnd, 0, totalsBytes(totals{Round: 0, Pages: 4, DiskBlocks: 1}))
	s.frame(MsgPages, 0, pages(5*PageSize|pageZero))
	s.frame(MsgDeviceState, 0, []byte("cpu"))
	s.frame(MsgDeviceState, 0, []byte("+dev"))
	s.frame(MsgComplete, 0, complete(1, 5, 1, []byte("cpu+dev")))
	return s.frame(MsgGo, 0, nil)
}

func receiveStream(data []byte) (*fakeDest, *streamConn, []byte, error) {
	d := newFakeDest(smallRegions, smallDisk)
	c := &streamConn{r: bytes.NewReader(data)}
	state, err := Receive(context.Background(), c, d)
	return d, c, state, err
}

func TestReceiveValidStream(t *testing.T) {
	d, c, state, err := receiveStream(validStream().Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if string(state) != "cpu+dev" || string(d.committed) != "cpu+dev" {
		t.Fatalf("state %q committed %q", state, d.committed)
	}
	if d.mem[0][0] != 1 || d.mem[0][5*PageSize] != 0 || d.mem[1][7*PageSize+1] != 7 || d.disks[0][DiskBlockSize] != 9 {
		t.Fatal("pages or disk blocks not written as sent")
	}
	// The receiver answered preamble, HELLO, ACK and DONE.
	fr := newFrameReader(bytes.NewReader(c.out.Bytes()[preambleSize:]))
	for _, want := range []MsgType{MsgHello, MsgAck, MsgDone} {
		if f, err := fr.next(); err != nil || f.Type != want {
			t.Fatalf("receiver sent %v (%v), want %v", f.Type, err, want)
		}
	}
}

func TestReceiveAcksRounds(t *testing.T) {
	_, c, _, err := receiveStream(validStreamWith(FeatureRoundAck).Bytes())
	if err != nil {
		t.Fatal(err)
	}
	fr := newFrameReader(bytes.NewReader(c.out.Bytes()[preambleSize:]))
	for _, want := range []MsgType{MsgHello, MsgRoundAck, MsgAck, MsgDone} {
		f, err := fr.next()
		if err != nil || f.Type != want {
			t.Fatalf("receiver sent %v (%v), want %v", f.Type, err, want)
		}
		switch want {
		case MsgHello:
			if got := binary.LittleEndian.Uint64(f.Payload); got != FeatureCompress|FeatureRoundAck {
				t.Fatalf("accepted features %#x", got)
			}
		case MsgRoundAck:
			if !bytes.Equal(f.Payload, []byte{0, 0, 0, 0}) {
				t.Fatalf("ROUND_ACK payload %x, want round 0", f.Payload)
			}
		}
	}
}

func TestReceiveHostile(t *testing.T) {
	huge := &stream{}
	hdr := []byte{byte(MsgPages), 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0} // 1 GiB payload
	huge.Write(newStream(0).Bytes())
	huge.Write(hdr)
	reserved := newStream(0)
	reserved.Write([]byte{byte(MsgPages), 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	manyPages := binary.LittleEndian.AppendUint32(nil, 1<<30)
	manyPages = append(manyPages, make([]byte, 16)...)
	withoutGo := validStream().Bytes()
	withoutGo = withoutGo[:len(withoutGo)-frameHeader]
	otherLayout := &stream{}
	writePreamble(&otherLayout.Buffer, ProtocolVersion)
	otherLayout.frame(MsgHello, 0, hello{Regions: []Region{{0, 16 * PageSize}}, Disks: []int64{smallDisk}}.encode())
	badHello := &stream{}
	writePreamble(&badHello.Buffer, ProtocolVersion)
	badHello.frame(MsgHello, 0, binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint64(nil, 0), PageSize))

	tests := []struct {
		name    string
		data    []byte
		want    error
		mention string
	}{
		{"page past a region", newStream(0).frame(MsgPages, 0, pages(16*PageSize)).Bytes(), ErrProtocol, "outside guest RAM"},
		{"page at the top of the address space", newStream(0).frame(MsgPages, 0, pages(0xFFFF_FFFF_FFFF_F000)).Bytes(), ErrProtocol, "outside guest RAM"},
		{"page between regions", newStream(0).frame(MsgPages, 0, pages(1<<31)).Bytes(), ErrProtocol, "outside guest RAM"},
		{"unknown page flags", newStream(0).frame(MsgPages, 0, pages(PageSize|2)).Bytes(), ErrCorrupt, "unknown flags"},
		{"page count beyond payload", newStream(0).frame(MsgPages, 0, manyPages).Bytes(), ErrCorrupt, "claims"},
		{"truncated page", newStream(0).frame(MsgPages, 0, pages(0)[:100]).Bytes(), ErrCorrupt, "truncated"},
		{"bytes after pages", newStream(0).frame(MsgPages, 0, append(pages(0), 1)).Bytes(), ErrCorrupt, "after the last"},
		{"compressed without the feature", newStream(0).frame(MsgPages, FlagCompressed, s2.Encode(nil, pages(0))).Bytes(), ErrProtocol, "compression"},
		{"compressed garbage", newStream(FeatureCompress).frame(MsgPages, FlagCompressed, []byte{0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2}).Bytes(), ErrCorrupt, "compressed"},
		{"flags on another frame", newStream(0).frame(MsgRoundEnd, 1, nil).Bytes(), ErrCorrupt, "flags"},
		{"frame larger than the limit", huge.Bytes(), ErrCorrupt, "limit"},
		{"reserved header bytes", reserved.Bytes(), ErrCorrupt, "reserved"},
		{"stream ends inside a frame", newStream(0).frame(MsgPages, 0, pages(0)).Bytes()[:200], ErrCorrupt, "ends inside"},
		{"round count mismatch", newStream(0).frame(MsgPages, 0, pages(0)).frame(MsgRoundEnd, 0, totalsBytes(totals{Pages: 2})).Bytes(), ErrProtocol, "round 0"},
		{"round out of order", newStream(0).frame(MsgRoundEnd, 0, totalsBytes(totals{Round: 3})).Bytes(), ErrProtocol, "expected round 0"},
		{"short round end", newStream(0).frame(MsgRoundEnd, 0, []byte{1}).Bytes(), ErrCorrupt, "want 32"},
		{"disk index", newStream(0).frame(MsgDisk, 0, diskBlock{Disk: 5, Length: 1, Data: []byte{1}}.encode(nil)).Bytes(), ErrProtocol, "disk 5"},
		{"disk block past the end", newStream(0).frame(MsgDisk, 0, diskBlock{Offset: smallDisk, Length: 1, Data: []byte{1}}.encode(nil)).Bytes(), ErrProtocol, "outside"},
		{"disk block unaligned", newStream(0).frame(MsgDisk, 0, diskBlock{Offset: 512, Length: 1, Data: []byte{1}}.encode(nil)).Bytes(), ErrProtocol, "outside"},
		{"disk block too long", newStream(0).frame(MsgDisk, 0, diskBlock{Length: DiskBlockSize + 1, Data: make([]byte, DiskBlockSize+1)}.encode(nil)).Bytes(), ErrProtocol, "outside"},
		{"disk length lies", newStream(0).frame(MsgDisk, 0, diskBlock{Length: 100, Data: []byte{1}}.encode(nil)).Bytes(), ErrCorrupt, "claims"},
		{"complete with missing pages", newStream(0).frame(MsgComplete, 0, complete(0, 9, 0, nil)).Bytes(), ErrProtocol, "9 pages"},
		{"complete with wrong rounds", newStream(0).frame(MsgComplete, 0, complete(4, 0, 0, nil)).Bytes(), ErrProtocol, "4 rounds"},
		{"device state crc", newStream(0).frame(MsgDeviceState, 0, []byte("abc")).frame(MsgComplete, 0, complete(0, 0, 0, []byte("abd"))).Bytes(), ErrCorrupt, "device state"},
		{"ack from the source", newStream(0).frame(MsgAck, 0, nil).Bytes(), ErrProtocol, "ACK"},
		{"unknown frame type", newStream(0).frame(200, 0, nil).Bytes(), ErrProtocol, "type-200"},
		{"source aborts", newStream(0).frame(MsgAbort, 0, []byte("operator\x1b[2J cancelled")).Bytes(), ErrAborted, "operator?[2J cancelled"},
		{"no GO after ACK", withoutGo, io.EOF, "GO"},
		{"layout mismatch", otherLayout.Bytes(), ErrLayout, "destination RAM"},
		{"malformed HELLO", badHello.Bytes(), ErrCorrupt, "HELLO"},
		{"not a migration stream", []byte("GET / HTTP/1.1\r\n\r\n"), ErrBadMagic, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, c, state, err := receiveStream(tt.data)
			if err == nil || state != nil {
				t.Fatalf("hostile stream accepted (state %q)", state)
			}
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("err = %v, want %v mentioning %q", err, tt.want, tt.mention)
			}
			if errors.Is(err, errNotRAM) {
				t.Fatalf("an out-of-range write reached the destination: %v", err)
			}
			// Unless the peer aborted or is not a migration peer, it is told why.
			if !errors.Is(err, ErrAborted) && !errors.Is(err, ErrBadMagic) && !bytes.Contains(c.out.Bytes(), []byte(tt.mention)) {
				t.Fatalf("no ABORT naming %q sent back; sent %q", tt.mention, c.out.Bytes())
			}
		})
	}
}

func TestSenderRejectsHostileDestination(t *testing.T) {
	tests := []struct {
		name  string
		reply func(c net.Conn)
		want  error
	}{
		{"unoffered feature", func(c net.Conn) {
			writeFrame(c, MsgHello, 0, binary.LittleEndian.AppendUint64(nil, 1<<40))
		}, ErrProtocol},
		{"garbage instead of HELLO", func(c net.Conn) { c.Write(bytes.Repeat([]byte{0xEE}, 64)) }, ErrCorrupt},
		{"ROUND_ACK without the feature", func(c net.Conn) {
			writeFrame(c, MsgHello, 0, make([]byte, 8))
			writeFrame(c, MsgRoundAck, 0, make([]byte, 4))
		}, ErrProtocol},
		{"ROUND_ACK for a round not sent", func(c net.Conn) {
			writeFrame(c, MsgHello, 0, binary.LittleEndian.AppendUint64(nil, FeatureRoundAck))
			writeFrame(c, MsgRoundAck, 0, binary.LittleEndian.AppendUint32(nil, 7))
		}, ErrProtocol},
		{"short ROUND_ACK", func(c net.Conn) {
			writeFrame(c, MsgHello, 0, binary.LittleEndian.AppendUint64(nil, FeatureRoundAck))
			writeFrame(c, MsgRoundAck, 0, []byte{0})
		}, ErrProtocol},
		{"unexpected frame during rounds", func(c net.Conn) {
			writeFrame(c, MsgHello, 0, make([]byte, 8))
			writeFrame(c, MsgPages, 0, pages(0))
		}, ErrProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc, dc := net.Pipe()
			defer sc.Close()
			go func() {
				defer dc.Close()
				go io.Copy(io.Discard, dc)
				writePreamble(dc, ProtocolVersion)
				tt.reply(dc)
				time.Sleep(50 * time.Millisecond)
			}()
			v := newFakeVM(3, testRegions)
			stats, err := Send(context.Background(), sc, v, Options{MaxRounds: 1000, MaxDowntime: time.Nanosecond})
			if !errors.Is(err, tt.want) {
				t.Fatalf("Send: %v, want %v", err, tt.want)
			}
			checkSourceRuns(t, v, stats)
		})
	}
}
