package netdev_test

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/netdev"
)

func TestTransmit(t *testing.T) {
	csum := netdev.Header{Flags: netdev.HdrFNeedsCsum, CsumStart: 34, CsumOffset: 16}
	tso := netdev.Header{Flags: netdev.HdrFNeedsCsum, GSOType: netdev.GSOTCPv4, GSOSize: 1448, HdrLen: 54, CsumStart: 34, CsumOffset: 16}
	tests := []struct {
		name     string
		features uint64
		h        netdev.Header
		frameLen int
		split    int
		sent     bool
	}{
		{"plain frame", allFeat, netdev.Header{}, 60, 1 << 20, true},
		{"split in odd pieces", allFeat, netdev.Header{}, 1514, 7, true},
		{"header alone in a buffer", allFeat, netdev.Header{}, 100, netdev.HeaderSize, true},
		{"largest frame", allFeat, netdev.Header{}, netdev.MaxFrame, 4096, true},
		{"partial checksum", allFeat, csum, 100, 1 << 20, true},
		{"TSO", allFeat, tso, 9000, 1 << 20, true},
		{"too short", allFeat, netdev.Header{}, 13, 1 << 20, false},
		{"oversize", allFeat, netdev.Header{}, netdev.MaxFrame + 1, 4096, false},
		{"checksum not negotiated", allFeat &^ netdev.FeatureCsum, csum, 100, 1 << 20, false},
		{"checksum past the end", allFeat, netdev.Header{Flags: netdev.HdrFNeedsCsum, CsumStart: 99, CsumOffset: 0}, 100, 1 << 20, false},
		{"TSO not negotiated", allFeat &^ netdev.FeatureHostTSO4, tso, 9000, 1 << 20, false},
		{"TSO with ECN", allFeat, netdev.Header{Flags: netdev.HdrFNeedsCsum, GSOType: netdev.GSOTCPv4 | netdev.GSOECN, GSOSize: 1448, HdrLen: 54, CsumStart: 34, CsumOffset: 16}, 9000, 1 << 20, true},
		{"ECN not negotiated", allFeat &^ netdev.FeatureHostECN, netdev.Header{Flags: netdev.HdrFNeedsCsum, GSOType: netdev.GSOTCPv4 | netdev.GSOECN, GSOSize: 1448, HdrLen: 54, CsumStart: 34, CsumOffset: 16}, 9000, 1 << 20, false},
		{"UFO never offered", allFeat, netdev.Header{Flags: netdev.HdrFNeedsCsum, GSOType: netdev.GSOUDP, GSOSize: 1000, CsumStart: 34, CsumOffset: 6}, 3000, 1 << 20, false},
		{"unknown flags", allFeat, netdev.Header{Flags: 0x80}, 60, 1 << 20, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, nil, netdev.Options{}, tt.features)
			pkt := append(hdr(tt.h), ethFrame(tt.frameLen, 1)...)
			r.transmit(t, pkt, tt.split)
			c := r.dev.Counters()
			if tt.sent {
				got := r.readPeer(t, 10*time.Second)
				if !bytes.Equal(got, pkt) {
					t.Fatalf("peer got %d bytes, want the %d sent", len(got), len(pkt))
				}
				if c.TxPackets != 1 || c.TxBytes != uint64(tt.frameLen) || c.TxDrops != 0 {
					t.Fatalf("counters %+v", c)
				}
			} else if c.TxDrops != 1 || c.TxPackets != 0 {
				t.Fatalf("counters %+v, want one drop", c)
			}
		})
	}
}

func TestReceive(t *testing.T) {
	tests := []struct {
		name     string
		features uint64
		bufSize  uint32
		frameLen int
		nbufs    uint16
	}{
		{"one big buffer", allFeat &^ netdev.FeatureMrgRxbuf, 65562 + 12, 1514, 1},
		{"mergeable, fits one", allFeat, 1526, 1514, 1},
		{"mergeable, spans several", allFeat, 1526, 9000, 6},
		{"mergeable, tiny buffers", allFeat, 64, 1000, 16},
		{"mergeable, largest frame", allFeat, 4096, netdev.MaxFrame, 17},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, nil, netdev.Options{}, tt.features)
			bufs := r.post(t, 32, tt.bufSize)
			frame := ethFrame(tt.frameLen, 2)
			if _, err := r.peer.Write(append(hdr(netdev.Header{}), frame...)); err != nil {
				t.Fatal(err)
			}
			h, got := r.receive(t, bufs)
			if h.NumBuffers != tt.nbufs || !bytes.Equal(got, frame) {
				t.Fatalf("num_buffers %d (want %d), %d bytes, equal %v", h.NumBuffers, tt.nbufs, len(got), bytes.Equal(got, frame))
			}
			if c := r.dev.Counters(); c.RxPackets != 1 || c.RxBytes != uint64(tt.frameLen) || c.RxDrops != 0 {
				t.Fatalf("counters %+v", c)
			}
			if !r.mem.Dirty(r.drv.Queues[netdev.QueueRx].UsedAddr) {
				t.Fatal("used ring not dirty")
			}
		})
	}
}

func TestReceiveWaitsForBuffers(t *testing.T) {
	r := newRig(t, nil, netdev.Options{}, allFeat)
	frames := [][]byte{ethFrame(60, 1), ethFrame(1514, 2), ethFrame(300, 3)}
	for _, f := range frames {
		r.peer.Write(append(hdr(netdev.Header{}), f...))
	}
	// The frames wait in the device and the socket until buffers come.
	for _, f := range frames {
		bufs := r.post(t, 1, 2048)
		_, got := r.receive(t, bufs)
		if !bytes.Equal(got, f) {
			t.Fatalf("got %d bytes, want %d", len(got), len(f))
		}
	}
}

func TestReceiveDrops(t *testing.T) {
	tests := []struct {
		name     string
		features uint64
		bufSize  uint32
		h        netdev.Header
		frameLen int
	}{
		{"buffer too small without mergeable", allFeat &^ netdev.FeatureMrgRxbuf, 1000, netdev.Header{}, 1514},
		{"buffer smaller than the header", allFeat, 8, netdev.Header{}, 60},
		{"runt frame", allFeat, 2048, netdev.Header{}, 10},
		{"GSO the guest did not take", allFeat &^ netdev.FeatureGuestTSO4, 65600, netdev.Header{Flags: 1, GSOType: netdev.GSOTCPv4, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}, 9000},
		{"ECN the guest did not take", allFeat &^ netdev.FeatureGuestECN, 65600, netdev.Header{Flags: 1, GSOType: netdev.GSOTCPv4 | netdev.GSOECN, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}, 9000},
		{"partial checksum without GUEST_CSUM", allFeat &^ (netdev.FeatureGuestCsum | netdev.FeatureGuestTSO4 | netdev.FeatureGuestTSO6), 2048, netdev.Header{Flags: 1, CsumStart: 34, CsumOffset: 16}, 100},
		{"oversize", allFeat, 4096, netdev.Header{}, netdev.MaxFrame + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, nil, netdev.Options{}, tt.features)
			first := r.post(t, 1, tt.bufSize)
			r.peer.Write(append(hdr(tt.h), ethFrame(tt.frameLen, 0)...))
			waitCounter(t, "rx drops", func() uint64 { return r.dev.Counters().RxDrops }, 1)
			// The next good frame still gets through.
			bufs := r.post(t, 64, 2048)
			for h, b := range first {
				bufs[h] = b
			}
			good := ethFrame(200, 9)
			r.peer.Write(append(hdr(netdev.Header{}), good...))
			for {
				u, err := r.drv.Wait(netdev.QueueRx)
				if err != nil {
					t.Fatal(err)
				}
				if b, ok := bufs[u.Head]; ok && u.Len == uint32(len(good)+netdev.HeaderSize) {
					got := make([]byte, len(good))
					r.mem.Read(b.addr+netdev.HeaderSize, got)
					if !bytes.Equal(got, good) {
						t.Fatal("good frame corrupted")
					}
					break
				}
			}
			if st := r.drv.Status(); st&virtio.StatusDeviceNeedsReset != 0 {
				t.Fatalf("status %#x", st)
			}
		})
	}
}

func TestGuestCsumFlagsCleared(t *testing.T) {
	r := newRig(t, nil, netdev.Options{}, allFeat&^(netdev.FeatureGuestCsum|netdev.FeatureGuestTSO4|netdev.FeatureGuestTSO6))
	bufs := r.post(t, 1, 2048)
	r.peer.Write(append(hdr(netdev.Header{Flags: netdev.HdrFDataValid}), ethFrame(100, 0)...))
	if h, _ := r.receive(t, bufs); h.Flags != 0 {
		t.Fatalf("flags %#x without GUEST_CSUM", h.Flags)
	}
}

func TestConfig(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34, 0x56}
	r := newRig(t, nil, netdev.Options{MAC: mac, MTU: 9000}, allFeat)
	cfg := r.drv.DeviceConfig(0, 12)
	if !bytes.Equal(cfg[:6], mac) || le16(cfg[6:]) != netdev.StatusLinkUp || le16(cfg[8:]) != 1 || le16(cfg[10:]) != 9000 {
		t.Fatalf("config % x", cfg)
	}
	before := r.plat.MSIs(0)
	r.dev.SetLink(false)
	if le16(r.drv.DeviceConfig(6, 2)) != 0 || r.plat.MSIs(0) != before+1 {
		t.Fatal("link down not signalled")
	}
	r.dev.SetLink(false)
	if r.plat.MSIs(0) != before+1 {
		t.Fatal("interrupt without a change")
	}
	if !bytes.Equal(r.dev.MAC(), mac) {
		t.Fatalf("MAC %v", r.dev.MAC())
	}
}

func TestOptions(t *testing.T) {
	s, peer, err := netdev.NewSocketPair()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	defer peer.Close()
	bad := []netdev.Options{
		{MAC: net.HardwareAddr{1, 2, 3, 4, 5, 6}}, // multicast
		{MAC: net.HardwareAddr{2, 2, 3}},
		{MTU: 10},
		{QueueSize: 100},
	}
	for _, o := range bad {
		if _, err := netdev.New(s, o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
	d, err := netdev.New(s, netdev.Options{NoOffloads: true, NoMergeableBuffers: true})
	if err != nil {
		t.Fatal(err)
	}
	if f := d.Features() &^ virtio.CommonFeatures; f != netdev.FeatureMAC|netdev.FeatureStatus|netdev.FeatureCtrlVQ|netdev.FeatureAnnounce {
		t.Fatalf("features %#x", f)
	}
	m := d.MAC()
	if m[0]&1 != 0 || m[0]&2 == 0 {
		t.Fatalf("random MAC %v is not locally administered unicast", m)
	}
}

func TestSaveRestore(t *testing.T) {
	r := newRig(t, nil, netdev.Options{}, allFeat)
	r.dev.SetLink(false)
	bufs := r.post(t, 4, 2048)
	ts := r.tr.SaveState()
	ds := r.dev.SaveState()
	// Traffic still flows after the pause SaveState makes.
	f := ethFrame(500, 4)
	r.peer.Write(append(hdr(netdev.Header{}), f...))
	if _, got := r.receive(t, bufs); !bytes.Equal(got, f) {
		t.Fatal("receive after save failed")
	}

	// A second device restored from the state, on the same backend.
	r2 := newRig(t, nil, netdev.Options{}, allFeat)
	if err := r2.dev.RestoreState(ds); err != nil {
		t.Fatal(err)
	}
	if got := r2.dev.SaveState(); got != ds {
		t.Fatalf("restored state %+v, want %+v", got, ds)
	}
	if !bytes.Equal(r2.dev.MAC(), r.dev.MAC()) || le16(r2.drv.DeviceConfig(6, 2)) != 0 {
		t.Fatal("MAC or link not restored")
	}
	if err := r2.tr.RestoreState(ts); err != nil {
		t.Fatal(err)
	}
	other, _ := netdev.New(r.dev2Backend(t), netdev.Options{MTU: 1500})
	if err := other.RestoreState(ds); err == nil {
		t.Fatal("restore with a different MTU succeeded")
	}
}

func (r *rig) dev2Backend(t *testing.T) netdev.Backend {
	s, peer, err := netdev.NewSocketPair()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); peer.Close() })
	return s
}

func TestResetWhileBlocked(t *testing.T) {
	r := newRig(t, nil, netdev.Options{}, allFeat)
	// The receive worker is blocked reading the socket, and then waiting
	// for buffers: both resets return.
	r.tr.Reset()
	if err := r.drv.Init(allFeat, 2, 0); err != nil {
		t.Fatal(err)
	}
	r.peer.Write(append(hdr(netdev.Header{}), ethFrame(100, 0)...))
	r.tr.Reset()
	if err := r.drv.Init(allFeat, 2, 0); err != nil {
		t.Fatal(err)
	}
	bufs := r.post(t, 1, 2048)
	if _, got := r.receive(t, bufs); len(got) != 100 {
		t.Fatalf("frame kept across the reset has %d bytes", len(got))
	}
}

// TestReceiveOffloaded checks that checksum-offloaded and segmentation
// (TSO, with and without ECN) frames from the backend reach the driver
// with their virtio_net_hdr intact when it negotiated them (5.1.6.4).
func TestReceiveOffloaded(t *testing.T) {
	tests := []struct {
		name string
		h    netdev.Header
	}{
		{"data valid", netdev.Header{Flags: netdev.HdrFDataValid}},
		{"partial checksum", netdev.Header{Flags: netdev.HdrFNeedsCsum, CsumStart: 34, CsumOffset: 16}},
		{"TSO4", netdev.Header{Flags: netdev.HdrFNeedsCsum, GSOType: netdev.GSOTCPv4, HdrLen: 66, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}},
		{"TSO6 with ECN", netdev.Header{Flags: netdev.HdrFNeedsCsum, GSOType: netdev.GSOTCPv6 | netdev.GSOECN, HdrLen: 86, GSOSize: 1428, CsumStart: 54, CsumOffset: 16}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, nil, netdev.Options{}, allFeat)
			bufs := r.post(t, 32, 4096)
			frame := ethFrame(20000, 3)
			if _, err := r.peer.Write(append(hdr(tt.h), frame...)); err != nil {
				t.Fatal(err)
			}
			h, got := r.receive(t, bufs)
			want := tt.h
			want.NumBuffers = h.NumBuffers
			if h != want || h.NumBuffers < 1 || !bytes.Equal(got, frame) {
				t.Fatalf("driver got %+v and %d bytes, want %+v and the %d sent", h, len(got), want, len(frame))
			}
		})
	}
}
