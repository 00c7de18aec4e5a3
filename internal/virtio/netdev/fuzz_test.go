package netdev_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/netdev"
)

// FuzzTransmit sends arbitrary headers and frames, split arbitrarily,
// with arbitrary features: each is either sent unchanged or dropped and
// counted, and the device never breaks.
func FuzzTransmit(f *testing.F) {
	f.Add(hdr(netdev.Header{}), uint16(60), uint8(255), allFeat)
	f.Add(hdr(netdev.Header{Flags: 1, GSOType: netdev.GSOTCPv6, GSOSize: 1, CsumStart: 54, CsumOffset: 16}), uint16(3000), uint8(3), allFeat)
	f.Add([]byte{1, 2, 3}, uint16(0), uint8(1), uint64(0))
	f.Fuzz(func(t *testing.T, h []byte, frameLen uint16, split uint8, features uint64) {
		r := newRig(t, nil, netdev.Options{}, features|virtio.FeatureVersion1)
		pkt := append(append([]byte(nil), h...), ethFrame(int(frameLen), 5)...)
		r.transmit(t, pkt, max(int(split), len(pkt)/200+1))
		c := r.dev.Counters()
		if c.TxPackets+c.TxDrops != 1 {
			t.Fatalf("counters %+v", c)
		}
		if c.TxPackets == 1 {
			if got := r.readPeer(t, 10*time.Second); !bytes.Equal(got, pkt) {
				t.Fatalf("sent %d bytes, peer got %d", len(pkt), len(got))
			}
		}
		if r.drv.Status()&virtio.StatusDeviceNeedsReset != 0 {
			t.Fatal("device needs reset")
		}
	})
}

// FuzzReceive feeds arbitrary messages from the network into buffers of
// arbitrary size: each is delivered whole or dropped and counted.
func FuzzReceive(f *testing.F) {
	f.Add(append(hdr(netdev.Header{}), ethFrame(100, 0)...), uint16(2048), allFeat)
	f.Add(append(hdr(netdev.Header{GSOType: 9}), ethFrame(100, 0)...), uint16(13), allFeat)
	f.Add([]byte{0}, uint16(1), uint64(0))
	f.Fuzz(func(t *testing.T, msg []byte, bufSize uint16, features uint64) {
		if len(msg) == 0 || bufSize == 0 {
			return
		}
		r := newRig(t, nil, netdev.Options{}, features|virtio.FeatureVersion1)
		bufs := r.post(t, 64, uint32(bufSize))
		if _, err := r.peer.Write(msg); err != nil {
			t.Skip(err)
		}
		waitCounter(t, "frames", func() uint64 { c := r.dev.Counters(); return c.RxPackets + c.RxDrops }, 1)
		if c := r.dev.Counters(); c.RxPackets == 1 {
			_, got := r.receive(t, bufs)
			if !bytes.Equal(got, msg[netdev.HeaderSize:]) {
				t.Fatalf("delivered %d bytes of %d", len(got), len(msg)-netdev.HeaderSize)
			}
		}
		if r.drv.Status()&virtio.StatusDeviceNeedsReset != 0 {
			t.Fatal("device needs reset")
		}
	})
}

// FuzzHeader round-trips arbitrary header bytes.
func FuzzHeader(f *testing.F) {
	f.Add(hdr(netdev.Header{Flags: 1, GSOType: 4, HdrLen: 66, GSOSize: 1428, CsumStart: 54, CsumOffset: 16, NumBuffers: 3}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < netdev.HeaderSize {
			return
		}
		out := make([]byte, netdev.HeaderSize)
		netdev.ParseHeader(b).Put(out)
		if !bytes.Equal(out, b[:netdev.HeaderSize]) {
			t.Fatalf("% x became % x", b[:netdev.HeaderSize], out)
		}
	})
}

// FuzzControl sends arbitrary control commands: each gets an ack and
// the active pair count stays within the device's.
func FuzzControl(f *testing.F) {
	f.Add(pairsSet(2), allFeat)
	f.Add([]byte{netdev.CtrlClassAnnounce, 0}, uint64(0))
	f.Add([]byte{4}, allFeat)
	f.Fuzz(func(t *testing.T, cmd []byte, features uint64) {
		if len(cmd) > 256 {
			return
		}
		r, _ := newMQRig(t, 2, features|virtio.FeatureVersion1|netdev.FeatureCtrlVQ, 5)
		q := 2
		if r.drv.Features&netdev.FeatureMQ != 0 {
			q = 4
		}
		ack, n := r.ctrl(t, q, cmd)
		if n != 1 || ack > netdev.CtrlErr {
			t.Fatalf("ack %d len %d", ack, n)
		}
		if s := r.dev.SaveState(); s.Active < 1 || s.Active > 2 {
			t.Fatalf("%d active pairs", s.Active)
		}
	})
}
