package virtqueue

import (
	"errors"
	"os"
	"testing"

	"github.com/govisor/govisor/internal/virtio/netdev"
	"github.com/govisor/govisor/internal/virtio/virtqueuetest"
)

// frameSize is a full-MTU Ethernet frame.
const frameSize = 1514

// netSetup attaches a virtio-net device over a socket pair and returns
// the device and the network side of the pair.
func netSetup(b *testing.B) (*netdev.Device, *os.File) {
	b.Helper()
	s, peer, err := netdev.NewSocketPair()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close(); peer.Close() })
	dev, err := netdev.New(s, netdev.Options{})
	if err != nil {
		b.Fatal(err)
	}
	return dev, peer
}

// BenchmarkNetTx sends one 1514-byte frame per request from the guest
// to the backend socket, 32 in flight; a goroutine drains the socket.
func BenchmarkNetTx(b *testing.B) {
	dev, peer := netSetup(b)
	drv := setup(b, dev)
	vq := drv.Queues[netdev.QueueTx]
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1<<16)
		for {
			if _, err := peer.Read(buf); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				return
			}
		}
	}()
	b.Cleanup(func() { peer.Close(); <-done })
	const depth = 32
	descs := make([][]virtqueuetest.Desc, depth)
	for i := range descs {
		a, err := vq.Alloc(netdev.HeaderSize + frameSize)
		if err != nil {
			b.Fatal(err)
		}
		frame := make([]byte, netdev.HeaderSize+frameSize)
		frame[netdev.HeaderSize] = 2 // locally administered unicast destination
		drv.Mem.Write(a, frame)
		descs[i] = []virtqueuetest.Desc{{Addr: a, Len: netdev.HeaderSize + frameSize}}
	}
	byHead := make([][]virtqueuetest.Desc, vq.Size)
	submit := func(d []virtqueuetest.Desc) {
		h, err := vq.AddChain(d)
		if err != nil {
			b.Fatal(err)
		}
		byHead[h] = d
	}
	b.SetBytes(frameSize)
	b.ReportAllocs()
	b.ResetTimer()
	sent := 0
	for _, d := range descs {
		if sent < b.N {
			submit(d)
			sent++
		}
	}
	kick := drv.KickAddr(netdev.QueueTx)
	drv.Plat.Write16(kick, netdev.QueueTx)
	for done := 0; done < b.N; done++ {
		u := drv.WaitInterrupt(netdev.QueueTx)
		if sent < b.N {
			old := vq.AvailIdx()
			submit(byHead[u.Head])
			sent++
			if vq.NeedKick(old, true) {
				drv.Plat.Write16(kick, netdev.QueueTx)
			}
		}
	}
	b.StopTimer()
	if c := dev.Counters(); c.TxDrops != 0 || c.TxPackets < uint64(b.N) {
		b.Fatalf("counters %+v after %d frames", c, b.N)
	}
}

// BenchmarkNetRx receives one 1514-byte frame per request from the
// backend socket into mergeable 4 KiB guest buffers, 64 posted; a
// goroutine writes the frames.
func BenchmarkNetRx(b *testing.B) {
	dev, peer := netSetup(b)
	drv := setup(b, dev)
	vq := drv.Queues[netdev.QueueRx]
	const depth, bufSize = 64, 4096
	byHead := make([][]virtqueuetest.Desc, vq.Size)
	var posts [depth][]virtqueuetest.Desc
	for i := range posts {
		a, err := vq.Alloc(bufSize)
		if err != nil {
			b.Fatal(err)
		}
		posts[i] = []virtqueuetest.Desc{{Addr: a, Len: bufSize, Write: true}}
		h, err := vq.AddChain(posts[i])
		if err != nil {
			b.Fatal(err)
		}
		byHead[h] = posts[i]
	}
	kick := drv.KickAddr(netdev.QueueRx)
	drv.Plat.Write16(kick, netdev.QueueRx)
	n := b.N
	errc := make(chan error, 1)
	b.SetBytes(frameSize)
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		frame := make([]byte, netdev.HeaderSize+frameSize)
		frame[netdev.HeaderSize] = 2
		for range n {
			if _, err := peer.Write(frame); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for range n {
		u := drv.WaitInterrupt(netdev.QueueRx)
		if u.Len != netdev.HeaderSize+frameSize {
			b.Fatalf("used length %d", u.Len)
		}
		old := vq.AvailIdx()
		h, err := vq.AddChain(byHead[u.Head])
		if err != nil {
			b.Fatal(err)
		}
		byHead[h] = byHead[u.Head]
		if vq.NeedKick(old, true) {
			drv.Plat.Write16(kick, netdev.QueueRx)
		}
	}
	b.StopTimer()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	if c := dev.Counters(); c.RxDrops != 0 || c.RxPackets != uint64(n) {
		b.Fatalf("counters %+v after %d frames", c, n)
	}
}
