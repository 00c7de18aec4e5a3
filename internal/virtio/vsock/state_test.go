package vsock_test

import (
	"encoding/binary"
	"io"
	"net"
	"testing"

	"github.com/govisor/govisor/internal/virtio/pcitransport"
	"github.com/govisor/govisor/internal/virtio/virtqueuetest"
	"github.com/govisor/govisor/internal/virtio/vsock"
)

func TestPauseKeepsConnections(t *testing.T) {
	g := newGuest(t)
	ln := listenHost(t, g, 5000)
	hostData, guestData := randomBytes(128<<10), randomBytes(128<<10)
	gc := g.connectGuest(1, 5000, guestData)
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	// The transport stops and restarts the device to save its state.
	g.tr.SaveState()
	got := make(chan []byte, 1)
	go hostEnd(c, c, hostData, got)
	g.pump([]*gconn{gc})
	if sum(gc.in.Bytes()) != sum(hostData) || sum(<-got) != sum(guestData) {
		t.Fatal("data lost across the pause")
	}
}

func TestSaveRestore(t *testing.T) {
	g := newGuest(t)
	ln := listenHost(t, g, 5000)
	go func() {
		if c, err := ln.Accept(); err == nil {
			io.Copy(io.Discard, c)
		}
	}()
	g.connectGuest(1, 5000, nil)
	ev := g.drv.Queues[vsock.QueueEvent]
	evBuf, _ := ev.Alloc(4)
	g.mem.Write(evBuf, []byte{0xFF, 0xFF, 0xFF, 0xFF})
	if _, err := ev.AddChain([]virtqueuetest.Desc{{Addr: evBuf, Len: 4, Write: true}}); err != nil {
		t.Fatal(err)
	}
	g.drv.Kick(vsock.QueueEvent)

	ts := g.tr.SaveState()
	ds := g.dev.SaveState()
	if ds.CID != guestCID {
		t.Fatalf("state %+v", ds)
	}
	g.tr.Close()
	g.dev.Close()
	dev, err := vsock.New(vsock.Options{CID: guestCID, UDSPath: g.uds})
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.RestoreState(ds); err != nil {
		t.Fatal(err)
	}
	tr, err := pcitransport.New(dev, g.mem, g.plat)
	if err != nil {
		t.Fatal(err)
	}
	g.dev, g.tr = dev, tr
	if err := tr.RestoreState(ts); err != nil {
		t.Fatal(err)
	}
	if got := dev.SaveState(); got.CID != ds.CID || len(got.Conns) != 0 || len(ds.Conns) != 1 {
		t.Fatalf("saved %+v, restored without sockets %+v", ds, got)
	}
	// The guest learns that its connections are gone.
	u, err := g.drv.Wait(vsock.QueueEvent)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	g.mem.Read(evBuf, b)
	if u.Len != 4 || binary.LittleEndian.Uint32(b) != vsock.EventTransportReset {
		t.Fatalf("event %x, used length %d", b, u.Len)
	}
	// New connections work on the restored device.
	go func() {
		if c, err := ln.Accept(); err == nil {
			io.Copy(io.Discard, c)
		}
	}()
	g.connectGuest(2, 5000, nil)
	other, err := vsock.New(vsock.Options{CID: 9, UDSPath: g.uds + "2"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.RestoreState(ds); err == nil {
		t.Fatal("restore with another CID succeeded")
	}
}

func TestDriverResetDropsConnections(t *testing.T) {
	g := newGuest(t)
	ln := listenHost(t, g, 5000)
	g.connectGuest(1, 5000, nil)
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	// The driver resets the device and sets it up again: the host end
	// sees the connection close.
	g.initDriver()
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("host read %d, %v; want EOF", n, err)
	}
	if n := g.dev.Counters().Connections; n != 0 {
		t.Fatalf("%d connections after reset", n)
	}
}

func TestCloseDuringHandshake(t *testing.T) {
	g := newGuest(t)
	c, err := net.Dial("unix", g.uds)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The host never sends CONNECT: Close ends the handshake (EOF, or
	// a reset if the listener closed before accepting).
	g.tr.Close()
	g.dev.Close()
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("host read %d bytes from a closed device", n)
	}
}
