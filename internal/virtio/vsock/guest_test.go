package vsock_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/pcitransport"
	"github.com/govisor/govisor/internal/virtio/pcitransport/pcitest"
	"github.com/govisor/govisor/internal/virtio/virtqueuetest"
	"github.com/govisor/govisor/internal/virtio/vsock"
)

const (
	guestCID   = 3
	rxBufSize  = 4096
	txBufSize  = vsock.HeaderSize + 4096
	numRxBufs  = 128
	numTxBufs  = 128
	guestChunk = 4096
)

// guest is the fake guest: a transport and driver plus the guest side of
// the vsock protocol, run from the test goroutine.
type guest struct {
	t    testing.TB
	dev  *vsock.Device
	tr   *pcitransport.Transport
	plat *pcitest.Platform
	drv  *pcitest.Driver
	mem  *virtqueuetest.Memory
	uds  string

	rxBuf  map[uint16]uint64 // posted receive buffer per head
	txFree []uint64          // free transmit buffers
	txBuf  map[uint16]uint64 // transmit buffer per head in flight
	// BufAlloc is what the guest advertises per connection.
	BufAlloc uint32
}

func newGuest(t testing.TB) *guest {
	t.Helper()
	uds := filepath.Join(t.TempDir(), "v.sock")
	dev, err := vsock.New(vsock.Options{CID: guestCID, UDSPath: uds})
	if err != nil {
		t.Fatal(err)
	}
	g := &guest{t: t, dev: dev, uds: uds, plat: pcitest.NewPlatform(), mem: virtqueuetest.NewMemory(0, 16<<20), BufAlloc: 64 << 10}
	g.attach()
	t.Cleanup(func() { g.tr.Close(); dev.Close() })
	return g
}

// attach puts g.dev behind a new transport and initialises the driver.
func (g *guest) attach() {
	t := g.t
	t.Helper()
	var err error
	if g.tr, err = pcitransport.New(g.dev, g.mem, g.plat); err != nil {
		t.Fatal(err)
	}
	if g.drv, err = pcitest.Probe(g.tr, g.plat, g.mem, 0xE0000000); err != nil {
		t.Fatal(err)
	}
	g.initDriver()
}

// initDriver resets the device and sets up its queues and buffers, as a
// driver does when it loads.
func (g *guest) initDriver() {
	t := g.t
	t.Helper()
	if err := g.drv.Init(^uint64(0), 3, 0); err != nil {
		t.Fatal(err)
	}
	g.rxBuf, g.txBuf, g.txFree = map[uint16]uint64{}, map[uint16]uint64{}, nil
	rx := g.drv.Queues[vsock.QueueRx]
	for range numRxBufs {
		a, err := rx.Alloc(rxBufSize)
		if err != nil {
			t.Fatal(err)
		}
		g.postRx(a)
	}
	g.drv.Kick(vsock.QueueRx)
	for range numTxBufs {
		a, err := g.drv.Queues[vsock.QueueTx].Alloc(txBufSize)
		if err != nil {
			t.Fatal(err)
		}
		g.txFree = append(g.txFree, a)
	}
}

func (g *guest) postRx(a uint64) {
	h, err := g.drv.Queues[vsock.QueueRx].AddChain([]virtqueuetest.Desc{{Addr: a, Len: rxBufSize, Write: true}})
	if err != nil {
		g.t.Fatal(err)
	}
	g.rxBuf[h] = a
}

// send transmits one packet; it waits for a free buffer if needed.
func (g *guest) send(h vsock.Header, payload []byte) {
	g.t.Helper()
	if len(payload) > txBufSize-vsock.HeaderSize {
		g.t.Fatalf("payload of %d bytes", len(payload))
	}
	h.Len = uint32(len(payload))
	g.sendRaw(h, payload)
}

// sendRaw transmits h and payload as they are.
func (g *guest) sendRaw(h vsock.Header, payload []byte) {
	g.t.Helper()
	tx := g.drv.Queues[vsock.QueueTx]
	deadline := time.Now().Add(10 * time.Second)
	for {
		for {
			u, ok := tx.GetUsed()
			if !ok {
				break
			}
			g.txFree = append(g.txFree, g.txBuf[u.Head])
			delete(g.txBuf, u.Head)
		}
		if len(g.txFree) > 0 {
			break
		}
		if time.Now().After(deadline) {
			g.t.Fatal("transmit queue stuck")
		}
		select {
		case <-g.plat.Vector(vsock.QueueTx + 1):
		case <-time.After(10 * time.Millisecond):
		}
	}
	a := g.txFree[len(g.txFree)-1]
	g.txFree = g.txFree[:len(g.txFree)-1]
	b := make([]byte, vsock.HeaderSize, vsock.HeaderSize+len(payload))
	h.Put(b)
	b = append(b, payload...)
	g.mem.Write(a, b)
	head, err := tx.AddChain([]virtqueuetest.Desc{{Addr: a, Len: uint32(len(b))}})
	if err != nil {
		g.t.Fatal(err)
	}
	g.txBuf[head] = a
	g.drv.Kick(vsock.QueueTx)
}

// recv returns the next packet from the device, waiting up to wait; ok
// is false if none came.
func (g *guest) recv(wait time.Duration) (vsock.Header, []byte, bool) {
	g.t.Helper()
	rx := g.drv.Queues[vsock.QueueRx]
	deadline := time.Now().Add(wait)
	for {
		if u, ok := rx.GetUsed(); ok {
			a := g.rxBuf[u.Head]
			delete(g.rxBuf, u.Head)
			if u.Len < vsock.HeaderSize || u.Len > rxBufSize {
				g.t.Fatalf("receive used length %d", u.Len)
			}
			b := make([]byte, u.Len)
			g.mem.Read(a, b)
			g.postRx(a)
			g.drv.Kick(vsock.QueueRx)
			h, _ := vsock.ParseHeader(b)
			if h.Len != u.Len-vsock.HeaderSize {
				g.t.Fatalf("header len %d, used length %d", h.Len, u.Len)
			}
			if h.SrcCID != vsock.HostCID || h.DstCID != guestCID || h.Type != vsock.TypeStream {
				g.t.Fatalf("bad header %+v", h)
			}
			return h, b[vsock.HeaderSize:], true
		}
		if time.Now().After(deadline) {
			return vsock.Header{}, nil, false
		}
		select {
		case <-g.plat.Vector(vsock.QueueRx + 1):
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// mustRecv is recv that fails the test on timeout.
func (g *guest) mustRecv() (vsock.Header, []byte) {
	g.t.Helper()
	h, p, ok := g.recv(10 * time.Second)
	if !ok {
		g.t.Fatalf("no packet from the device (status %#x)", g.drv.Status())
	}
	return h, p
}

// hdr is a header from the guest's port to a host port.
func (g *guest) hdr(guestPort, hostPort uint32, op uint16) vsock.Header {
	return vsock.Header{SrcCID: guestCID, DstCID: vsock.HostCID, SrcPort: guestPort, DstPort: hostPort, Type: vsock.TypeStream, Op: op, BufAlloc: g.BufAlloc}
}

func (g *guest) healthy() {
	g.t.Helper()
	if st := g.drv.Status(); st&virtio.StatusDeviceNeedsReset != 0 {
		g.t.Fatalf("device needs reset: %v", g.tr.Err())
	}
}
