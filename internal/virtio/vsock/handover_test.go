package vsock_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/govisor/govisor/internal/virtio/pcitransport"
	"github.com/govisor/govisor/internal/virtio/vsock"
)

// sendSome sends the first n bytes of c.out from the guest, within credit.
func (g *guest) sendSome(c *gconn, n int) {
	g.t.Helper()
	for c.sent < n {
		k := min(guestChunk, n-c.sent)
		h := g.hdr(c.guestPort, c.hostPort, vsock.OpRW)
		h.FwdCnt = c.fwdCnt
		g.send(h, c.out[c.sent:c.sent+k])
		c.sent += k
		c.txCnt += uint32(k)
	}
}

// handover moves g's device to a new one on another socket path the way a
// same-host migration does: the source pauses and freezes, saves, hands
// its host sockets over and goes away; the destination restores with the
// sockets and thaws.
func (g *guest) handover(withFiles bool) {
	t := g.t
	t.Helper()
	g.tr.Quiesce()
	g.dev.Freeze()
	ds := g.dev.SaveState()
	files, err := g.dev.HandoverFiles()
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(ds.Conns) {
		t.Fatalf("%d files for %d connections", len(files), len(ds.Conns))
	}
	ts := g.tr.SaveState()
	g.tr.Close()
	g.dev.Close() // the source's own copies of the sockets close here

	uds := filepath.Join(t.TempDir(), "dest.sock")
	dev, err := vsock.New(vsock.Options{CID: guestCID, UDSPath: uds})
	if err != nil {
		t.Fatal(err)
	}
	if withFiles {
		ds.SetFiles(files)
	} else {
		for _, f := range files {
			f.Close()
		}
	}
	if err := dev.RestoreState(ds); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		f.Close() // the device keeps its own
	}
	tr, err := pcitransport.New(dev, g.mem, g.plat)
	if err != nil {
		t.Fatal(err)
	}
	g.dev, g.tr, g.drv.Dev = dev, tr, tr
	if err := tr.RestoreState(ts); err != nil {
		t.Fatal(err)
	}
	dev.Thaw()
}

func TestHandoverKeepsConnections(t *testing.T) {
	g := newGuest(t)
	ln := listenHost(t, g, 5000)
	// A guest-initiated connection with much data each way, and a
	// host-initiated one whose host end sends little and half-closes
	// (so that its end of stream may be queued at the handover).
	hostData1, guestData1 := randomBytes(512<<10), randomBytes(512<<10)
	hostData2, guestData2 := randomBytes(3000), randomBytes(300<<10)
	gc1 := g.connectGuest(1, 5000, guestData1)
	c1, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c2, r2, ok := hostConnect(t, g, 1234)
	gc2 := g.accept(1234, guestData2)
	if p := <-ok; p != gc2.hostPort {
		t.Fatalf("OK names port %d, REQUEST came from %d", p, gc2.hostPort)
	}
	got1, got2 := make(chan []byte, 1), make(chan []byte, 1)
	go hostEnd(c1, c1, hostData1, got1)
	go hostEnd(c2, r2, hostData2, got2)
	// Some guest data goes out before the handover; the host sends
	// meanwhile and the device reads what the guest's credit allows.
	g.sendSome(gc1, 20<<10)
	g.sendSome(gc2, 10<<10)

	g.handover(true)
	if n := g.dev.Counters().Connections; n != 2 {
		t.Fatalf("%d connections after the handover, want 2", n)
	}
	g.pump([]*gconn{gc1, gc2})
	if sum(gc1.in.Bytes()) != sum(hostData1) || sum(gc2.in.Bytes()) != sum(hostData2) {
		t.Fatalf("guest got %d and %d bytes, checksums differ", gc1.in.Len(), gc2.in.Len())
	}
	if b := <-got1; sum(b) != sum(guestData1) {
		t.Fatalf("host 1 got %d bytes, checksum differs", len(b))
	}
	if b := <-got2; sum(b) != sum(guestData2) {
		t.Fatalf("host 2 got %d bytes, checksum differs", len(b))
	}
	g.healthy()
}

func TestHandoverWithoutFilesResets(t *testing.T) {
	g := newGuest(t)
	ln := listenHost(t, g, 5000)
	gc := g.connectGuest(1, 5000, nil)
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	g.handover(false)
	if n := g.dev.Counters().Connections; n != 0 {
		t.Fatalf("%d connections without their sockets", n)
	}
	// The host end sees the connection end: every copy of its peer closed.
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("host read %d bytes from a dropped connection", n)
	}
	// The guest's packets on it are answered with RST.
	g.send(g.hdr(gc.guestPort, gc.hostPort, vsock.OpCreditRequest), nil)
	for {
		h, _ := g.mustRecv()
		if h.Op == vsock.OpRST {
			break
		}
	}
}

func TestHandoverFilesNeedFreeze(t *testing.T) {
	g := newGuest(t)
	g.dev.SaveState()
	if _, err := g.dev.HandoverFiles(); err == nil {
		t.Fatal("HandoverFiles without Freeze succeeded")
	}
}

// socketFile returns a Unix socket's file, as a handover passes it.
func socketFile(t *testing.T) *os.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f, err := c.File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestRestoreRejectsBadConnections(t *testing.T) {
	conn := func(hostPort uint32, file int) vsock.ConnState {
		return vsock.ConnState{HostPort: hostPort, GuestPort: 7, PeerBufAlloc: 4096, File: file}
	}
	regular, err := os.CreateTemp(t.TempDir(), "f")
	if err != nil {
		t.Fatal(err)
	}
	defer regular.Close()
	tests := []struct {
		name    string
		state   func() vsock.State
		mention string
		regular bool // hand over a regular file, not sockets
	}{
		{"file index out of range", func() vsock.State {
			return vsock.State{Conns: []vsock.ConnState{conn(5000, 2)}}
		}, "no host socket", false},
		{"one file for two connections", func() vsock.State {
			return vsock.State{Conns: []vsock.ConnState{conn(5000, 0), conn(5001, 0)}}
		}, "no host socket", false},
		{"same ports twice", func() vsock.State {
			return vsock.State{Conns: []vsock.ConnState{conn(5000, 0), conn(5000, 1)}}
		}, "taken twice", false},
		{"buffered data disagrees with counters", func() vsock.State {
			c := conn(5000, 0)
			c.RxCnt, c.ToHost = 10, []byte("abc")
			return vsock.State{Conns: []vsock.ConnState{c}}
		}, "counters", false},
		{"bad shutdown flags", func() vsock.State {
			c := conn(5000, 0)
			c.PeerShut = 8
			return vsock.State{Conns: []vsock.ConnState{c}}
		}, "shutdown", false},
		{"not a socket", func() vsock.State {
			return vsock.State{Conns: []vsock.ConnState{conn(5000, 0)}}
		}, "host socket", true},
		{"packet for no connection", func() vsock.State {
			return vsock.State{Conns: []vsock.ConnState{conn(5000, 0)},
				Pending: []vsock.Packet{{Conn: 3, Op: vsock.OpRW}}}
		}, "connection 3", false},
		{"packet with another connection's ports", func() vsock.State {
			return vsock.State{Conns: []vsock.ConnState{conn(5000, 0)},
				Pending: []vsock.Packet{{Conn: 0, HostPort: 1, GuestPort: 7, Op: vsock.OpRW}}}
		}, "ports", false},
		{"unknown operation", func() vsock.State {
			return vsock.State{Conns: []vsock.ConnState{conn(5000, 0)},
				Pending: []vsock.Packet{{Conn: 0, HostPort: 5000, GuestPort: 7, Op: 42}}}
		}, "operation 42", false},
		{"data on a non-data packet", func() vsock.State {
			return vsock.State{Conns: []vsock.ConnState{conn(5000, 0)},
				Pending: []vsock.Packet{{Conn: 0, HostPort: 5000, GuestPort: 7, Op: vsock.OpCreditUpdate, Data: []byte("x")}}}
		}, "bytes of data", false},
		{"connectionless data", func() vsock.State {
			return vsock.State{Conns: []vsock.ConnState{conn(5000, 0)},
				Pending: []vsock.Packet{{Conn: -1, Op: vsock.OpRW}}}
		}, "without a connection", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGuest(t)
			s := tt.state()
			s.CID = guestCID
			if tt.regular {
				s.SetFiles([]*os.File{regular})
			} else {
				s.SetFiles([]*os.File{socketFile(t), socketFile(t)})
			}
			err := g.dev.RestoreState(s)
			if err == nil || !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("got %v, want an error mentioning %q", err, tt.mention)
			}
			if n := g.dev.Counters().Connections; n != 0 {
				t.Fatalf("%d connections left after a failed restore", n)
			}
		})
	}
}

func TestThawWithoutFreezeKeepsConnections(t *testing.T) {
	// A migration that fails before the device state is taken resumes the
	// source, which thaws a device that was never frozen: nothing doubles.
	g := newGuest(t)
	ln := listenHost(t, g, 5000)
	hostData, guestData := randomBytes(256<<10), randomBytes(256<<10)
	gc := g.connectGuest(1, 5000, guestData)
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	go hostEnd(c, c, hostData, got)
	g.dev.Thaw()
	g.dev.Freeze()
	g.dev.Thaw()
	g.pump([]*gconn{gc})
	if sum(gc.in.Bytes()) != sum(hostData) || sum(<-got) != sum(guestData) {
		t.Fatal("data lost or doubled across Freeze and Thaw")
	}
}
