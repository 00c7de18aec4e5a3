package netdev_test

import (
	"encoding/binary"
	"os"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/virtio/netdev"
	"github.com/govisor/govisor/internal/virtio/pcitransport"
	"github.com/govisor/govisor/internal/virtio/pcitransport/pcitest"
	"github.com/govisor/govisor/internal/virtio/virtqueuetest"
)

const allFeat = ^uint64(0)

type rig struct {
	dev  *netdev.Device
	peer *os.File // the network side of a socket backend (nil for a TAP)
	tr   *pcitransport.Transport
	plat *pcitest.Platform
	drv  *pcitest.Driver
	mem  *virtqueuetest.Memory
}

// newRig attaches a device over be (a socket pair if nil) to the fake
// transport and initialises it with features.
func newRig(t testing.TB, be netdev.Backend, opts netdev.Options, features uint64) *rig {
	t.Helper()
	r := &rig{plat: pcitest.NewPlatform(), mem: virtqueuetest.NewMemory(0, 16<<20)}
	if be == nil {
		s, peer, err := netdev.NewSocketPair()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close(); peer.Close() })
		be, r.peer = s, peer
	}
	dev, err := netdev.New(be, opts)
	if err != nil {
		t.Fatal(err)
	}
	r.dev = dev
	if r.tr, err = pcitransport.New(dev, r.mem, r.plat); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.tr.Close)
	dev.SetConfigNotifier(r.tr.ConfigChanged)
	if r.drv, err = pcitest.Probe(r.tr, r.plat, r.mem, 0xE0000000); err != nil {
		t.Fatal(err)
	}
	if err := r.drv.Init(features, 2, 0); err != nil {
		t.Fatal(err)
	}
	return r
}

// hdr encodes a virtio_net_hdr_v1.
func hdr(h netdev.Header) []byte {
	b := make([]byte, netdev.HeaderSize)
	h.Put(b)
	return b
}

// ethFrame is an Ethernet frame of n bytes with a recognisable payload.
func ethFrame(n int, seed byte) []byte {
	b := make([]byte, n)
	copy(b, []byte{0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x88, 0xB5})
	for i := 14; i < n; i++ {
		b[i] = byte(i*31) + seed
	}
	return b
}

// transmit sends pkt (header and frame) on the transmit queue split
// into pieces of at most split bytes, and waits for it to complete.
func (r *rig) transmit(t testing.TB, pkt []byte, split int) {
	t.Helper()
	vq := r.drv.Queues[netdev.QueueTx]
	a, err := vq.Alloc(uint64(max(len(pkt), 1)))
	if err != nil {
		t.Fatal(err)
	}
	r.mem.Write(a, pkt)
	var descs []virtqueuetest.Desc
	for off := 0; off < len(pkt); off += split {
		descs = append(descs, virtqueuetest.Desc{Addr: a + uint64(off), Len: uint32(min(split, len(pkt)-off))})
	}
	if len(descs) == 0 {
		descs = []virtqueuetest.Desc{{Addr: a, Len: 0}}
	}
	if _, err := vq.AddChain(descs); err != nil {
		t.Fatal(err)
	}
	r.drv.Kick(netdev.QueueTx)
	u, err := r.drv.Wait(netdev.QueueTx)
	if err != nil {
		t.Fatal(err)
	}
	if u.Len != 0 {
		t.Fatalf("transmit used length %d", u.Len)
	}
}

// readPeer reads one message from the network side, or nil if none comes
// within the wait.
func (r *rig) readPeer(t testing.TB, wait time.Duration) []byte {
	t.Helper()
	b := make([]byte, 1<<17)
	r.peer.SetReadDeadline(time.Now().Add(wait))
	n, err := r.peer.Read(b)
	if err != nil {
		return nil
	}
	return b[:n]
}

// rxBuffer is one receive buffer the driver posted.
type rxBuffer struct {
	head uint16
	addr uint64
	size uint32
}

// post adds n receive buffers of size bytes each.
func (r *rig) post(t testing.TB, n int, size uint32) map[uint16]rxBuffer {
	t.Helper()
	vq := r.drv.Queues[netdev.QueueRx]
	bufs := map[uint16]rxBuffer{}
	for range n {
		a, err := vq.Alloc(uint64(size))
		if err != nil {
			t.Fatal(err)
		}
		h, err := vq.AddChain([]virtqueuetest.Desc{{Addr: a, Len: size, Write: true}})
		if err != nil {
			t.Fatal(err)
		}
		bufs[h] = rxBuffer{h, a, size}
	}
	r.drv.Kick(netdev.QueueRx)
	return bufs
}

// receive waits for the next frame on the receive queue and returns its
// header and bytes, following num_buffers.
func (r *rig) receive(t testing.TB, bufs map[uint16]rxBuffer) (netdev.Header, []byte) {
	t.Helper()
	u, err := r.drv.Wait(netdev.QueueRx)
	if err != nil {
		t.Fatal(err)
	}
	b, ok := bufs[u.Head]
	if !ok || u.Len > b.size {
		t.Fatalf("used %+v for unknown buffer or too long", u)
	}
	data := make([]byte, u.Len)
	r.mem.Read(b.addr, data)
	if len(data) < netdev.HeaderSize {
		t.Fatalf("used length %d shorter than the header", u.Len)
	}
	h := netdev.ParseHeader(data)
	for i := 1; i < int(h.NumBuffers); i++ {
		u, err := r.drv.Wait(netdev.QueueRx)
		if err != nil {
			t.Fatal(err)
		}
		b := bufs[u.Head]
		more := make([]byte, u.Len)
		r.mem.Read(b.addr, more)
		data = append(data, more...)
	}
	return h, data[netdev.HeaderSize:]
}

// waitCounter waits until get reports at least want.
func waitCounter(t testing.TB, what string, get func() uint64, want uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for get() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s is %d, want %d", what, get(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

func le16(b []byte) uint16 { return binary.LittleEndian.Uint16(b) }
