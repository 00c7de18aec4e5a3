package vsock_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/vsock"
)

// hostEnd is a host process's side of one connection: it writes out,
// half-closes, and reads everything.
func hostEnd(c net.Conn, r io.Reader, out []byte, got chan<- []byte) {
	go func() {
		c.Write(out)
		c.(*net.UnixConn).CloseWrite()
	}()
	b, _ := io.ReadAll(r)
	c.Close()
	got <- b
}

// listenHost listens on the host socket for guest connections to port.
func listenHost(t *testing.T, g *guest, port uint32) net.Listener {
	t.Helper()
	ln, err := net.Listen("unix", g.uds+"_"+strconv.Itoa(int(port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// connectGuest opens a guest-initiated connection from guestPort to
// hostPort and returns it ready for pump.
func (g *guest) connectGuest(guestPort, hostPort uint32, out []byte) *gconn {
	g.t.Helper()
	g.send(g.hdr(guestPort, hostPort, vsock.OpRequest), nil)
	h, _ := g.mustRecv()
	if h.Op != vsock.OpResponse || h.SrcPort != hostPort || h.DstPort != guestPort {
		g.t.Fatalf("answer to REQUEST: %+v", h)
	}
	return &gconn{guestPort: guestPort, hostPort: hostPort, out: out, peerBufAlloc: h.BufAlloc, peerFwdCnt: h.FwdCnt}
}

func TestGuestInitiated(t *testing.T) {
	g := newGuest(t)
	ln := listenHost(t, g, 5000)
	hostData, guestData := randomBytes(1<<20), randomBytes(1<<20)
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		hostEnd(c, c, hostData, got)
	}()
	gc := g.connectGuest(1234, 5000, guestData)
	if gc.peerBufAlloc != vsock.BufAlloc {
		t.Fatalf("buf_alloc %d", gc.peerBufAlloc)
	}
	g.pump([]*gconn{gc})
	if sum(gc.in.Bytes()) != sum(hostData) {
		t.Fatalf("guest got %d bytes, checksum differs", gc.in.Len())
	}
	if b := <-got; sum(b) != sum(guestData) {
		t.Fatalf("host got %d bytes, checksum differs", len(b))
	}
	g.healthy()
	waitFor(t, "connection gone", func() bool { return g.dev.Counters().Connections == 0 })
}

// hostConnect connects a host process to guest port and returns the
// connection, its reader after the OK line, and the host port named.
func hostConnect(t *testing.T, g *guest, port uint32) (net.Conn, *bufio.Reader, chan uint32) {
	t.Helper()
	c, err := net.Dial("unix", g.uds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "CONNECT %d\n", port)
	r := bufio.NewReader(c)
	ok := make(chan uint32, 1)
	go func() {
		line, err := r.ReadString('\n')
		p, _ := strings.CutPrefix(strings.TrimSpace(line), "OK ")
		n, perr := strconv.ParseUint(p, 10, 32)
		if err != nil || perr != nil {
			close(ok)
			return
		}
		ok <- uint32(n)
	}()
	return c, r, ok
}

// accept answers the device's next REQUEST with RESPONSE.
func (g *guest) accept(guestPort uint32, out []byte) *gconn {
	g.t.Helper()
	h, _ := g.mustRecv()
	if h.Op != vsock.OpRequest || h.DstPort != guestPort || h.SrcPort < 1<<30 {
		g.t.Fatalf("expected REQUEST to %d: %+v", guestPort, h)
	}
	g.send(g.hdr(guestPort, h.SrcPort, vsock.OpResponse), nil)
	return &gconn{guestPort: guestPort, hostPort: h.SrcPort, out: out, peerBufAlloc: h.BufAlloc, peerFwdCnt: h.FwdCnt}
}

func TestHostInitiated(t *testing.T) {
	g := newGuest(t)
	hostData, guestData := randomBytes(1<<20), randomBytes(1<<20)
	c, r, ok := hostConnect(t, g, 1234)
	gc := g.accept(1234, guestData)
	if p := <-ok; p != gc.hostPort {
		t.Fatalf("OK names port %d, REQUEST came from %d", p, gc.hostPort)
	}
	got := make(chan []byte, 1)
	go hostEnd(c, r, hostData, got)
	g.pump([]*gconn{gc})
	if sum(gc.in.Bytes()) != sum(hostData) {
		t.Fatalf("guest got %d bytes, checksum differs", gc.in.Len())
	}
	if b := <-got; sum(b) != sum(guestData) {
		t.Fatalf("host got %d bytes, checksum differs", len(b))
	}
	g.healthy()
}

func TestCreditFlow(t *testing.T) {
	// A guest with a 4 KiB buffer that returns credit every 2 KiB: the
	// device never sends more than it may (pump checks every packet).
	g := newGuest(t)
	g.BufAlloc = 4096
	ln := listenHost(t, g, 6000)
	hostData := randomBytes(256 << 10)
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		hostEnd(c, c, hostData, got)
	}()
	gc := g.connectGuest(1, 6000, nil)
	g.pump([]*gconn{gc})
	if !bytes.Equal(gc.in.Bytes(), hostData) {
		t.Fatalf("guest got %d bytes, want %d", gc.in.Len(), len(hostData))
	}
	<-got
}

func TestCreditRequest(t *testing.T) {
	g := newGuest(t)
	ln := listenHost(t, g, 6001)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			io.Copy(io.Discard, c)
		}
	}()
	gc := g.connectGuest(2, 6001, nil)
	h := g.hdr(2, 6001, vsock.OpCreditRequest)
	g.send(h, nil)
	r, _ := g.mustRecv()
	if r.Op != vsock.OpCreditUpdate || r.BufAlloc != vsock.BufAlloc || r.DstPort != gc.guestPort {
		t.Fatalf("answer to CREDIT_REQUEST: %+v", r)
	}
}

func TestRefused(t *testing.T) {
	g := newGuest(t)
	tests := []struct {
		name string
		op   uint16
		typ  uint16
	}{
		{"request to a port nobody listens on", vsock.OpRequest, vsock.TypeStream},
		{"data for no connection", vsock.OpRW, vsock.TypeStream},
		{"shutdown for no connection", vsock.OpShutdown, vsock.TypeStream},
		{"seqpacket request", vsock.OpRequest, vsock.TypeSeqpacket},
		{"unknown op", 99, vsock.TypeStream},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := g.hdr(uint32(100+i), 7777, tt.op)
			h.Type = tt.typ
			g.send(h, nil)
			r, _ := g.mustRecv()
			if r.Op != vsock.OpRST || r.DstPort != uint32(100+i) || r.SrcPort != 7777 {
				t.Fatalf("answer %+v, want RST", r)
			}
		})
	}
	// An RST for no connection, and packets not from this guest or not
	// for the host, get no answer; the next request still gets one.
	g.send(g.hdr(1, 7777, vsock.OpRST), nil)
	bad := g.hdr(1, 7777, vsock.OpRequest)
	bad.SrcCID = 99
	g.send(bad, nil)
	bad = g.hdr(1, 7777, vsock.OpRequest)
	bad.DstCID = 5
	g.send(bad, nil)
	g.send(g.hdr(2, 7778, vsock.OpRequest), nil)
	if r, _ := g.mustRecv(); r.Op != vsock.OpRST || r.SrcPort != 7778 {
		t.Fatalf("answer %+v, want RST from 7778", r)
	}
	if c := g.dev.Counters(); c.BadPackets != 3 || c.Refused != 6 {
		t.Fatalf("counters %+v", c)
	}
	g.healthy()
}

func TestHostConnectRefused(t *testing.T) {
	g := newGuest(t)
	c, _, ok := hostConnect(t, g, 4321)
	h, _ := g.mustRecv()
	if h.Op != vsock.OpRequest {
		t.Fatalf("%+v", h)
	}
	g.send(g.hdr(4321, h.SrcPort, vsock.OpRST), nil)
	if _, got := <-ok; got {
		t.Fatal("OK for a refused connection")
	}
	c.Close()
	// A malformed CONNECT line closes the host connection.
	bad, err := net.Dial("unix", g.uds)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	bad.Write([]byte("HELLO\n"))
	bad.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := bad.Read(make([]byte, 8)); err != io.EOF {
		t.Fatalf("read %d, %v after a bad CONNECT, want EOF", n, err)
	}
}

func TestManyConnections(t *testing.T) {
	g := newGuest(t)
	const n = 24
	var conns []*gconn
	type want struct {
		fromHost, fromGuest []byte
		got                 chan []byte
	}
	wants := map[*gconn]want{}
	ln := listenHost(t, g, 9000)
	// Data starts flowing once every connection is set up, so the setup
	// sees only its own packets.
	begin := make(chan struct{})
	for i := range n {
		w := want{randomBytes(64 << 10), randomBytes(64 << 10), make(chan []byte, 1)}
		var gc *gconn
		if i%2 == 0 {
			c, r, ok := hostConnect(t, g, uint32(2000+i))
			gc = g.accept(uint32(2000+i), w.fromGuest)
			<-ok
			go func() {
				<-begin
				hostEnd(c, r, w.fromHost, w.got)
			}()
		} else {
			gc = g.connectGuest(uint32(3000+i), 9000, w.fromGuest)
			c, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				<-begin
				hostEnd(c, c, w.fromHost, w.got)
			}()
		}
		conns = append(conns, gc)
		wants[gc] = w
	}
	if c := g.dev.Counters().Connections; c != n {
		t.Fatalf("%d connections open", c)
	}
	close(begin)
	g.pump(conns)
	for gc, w := range wants {
		if !bytes.Equal(gc.in.Bytes(), w.fromHost) {
			t.Fatalf("connection %d: guest got %d bytes", gc.guestPort, gc.in.Len())
		}
		if b := <-w.got; !bytes.Equal(b, w.fromGuest) {
			t.Fatalf("connection %d: host got %d bytes", gc.guestPort, len(b))
		}
	}
	waitFor(t, "connections gone", func() bool { return g.dev.Counters().Connections == 0 })
}

func TestConfigAndOptions(t *testing.T) {
	g := newGuest(t)
	if cid := binary.LittleEndian.Uint64(g.drv.DeviceConfig(0, 8)); cid != guestCID {
		t.Fatalf("guest_cid %d", cid)
	}
	if g.dev.DeviceID() != virtio.IDVsock || g.dev.CID() != guestCID {
		t.Fatal("wrong identity")
	}
	for _, o := range []vsock.Options{
		{CID: 2, UDSPath: g.uds + "x"},
		{CID: 1 << 32, UDSPath: g.uds + "x"},
		{CID: 3},
		{CID: 3, UDSPath: g.uds}, // exists
	} {
		if d, err := vsock.New(o); err == nil {
			d.Close()
			t.Errorf("options %+v accepted", o)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
