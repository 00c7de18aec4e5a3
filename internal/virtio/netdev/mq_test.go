package netdev_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/virtio/netdev"
	"github.com/govisor/govisor/internal/virtio/pcitransport"
	"github.com/govisor/govisor/internal/virtio/pcitransport/pcitest"
	"github.com/govisor/govisor/internal/virtio/virtqueuetest"
)

// newMQRig attaches a device with one socket pair per queue pair and
// initialises nq queues; peers[i] is pair i's network side.
func newMQRig(t *testing.T, pairs int, features uint64, nq int) (*rig, []*os.File) {
	t.Helper()
	var bes []netdev.Backend
	var peers []*os.File
	for range pairs {
		s, peer, err := netdev.NewSocketPair()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close(); peer.Close() })
		bes, peers = append(bes, s), append(peers, peer)
	}
	return newRigBackends(t, bes, features, nq), peers
}

func newRigBackends(t *testing.T, bes []netdev.Backend, features uint64, nq int) *rig {
	t.Helper()
	dev, err := netdev.NewMultiqueue(bes, netdev.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{dev: dev, plat: pcitest.NewPlatform(), mem: virtqueuetest.NewMemory(0, 16<<20)}
	if r.tr, err = pcitransport.New(dev, r.mem, r.plat); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.tr.Close)
	dev.SetConfigNotifier(r.tr.ConfigChanged)
	if r.drv, err = pcitest.Probe(r.tr, r.plat, r.mem, 0xE0000000); err != nil {
		t.Fatal(err)
	}
	if err := r.drv.Init(features, nq, 0); err != nil {
		t.Fatal(err)
	}
	return r
}

// ctrl sends a control command on queue q and returns the ack and the
// used length.
func (r *rig) ctrl(t *testing.T, q int, cmd []byte) (byte, uint32) {
	t.Helper()
	vq := r.drv.Queues[q]
	a, _ := vq.Alloc(uint64(len(cmd)) + 1)
	r.mem.Write(a, append(cmd, 0xEE))
	descs := []virtqueuetest.Desc{{Addr: a + uint64(len(cmd)), Len: 1, Write: true}}
	if len(cmd) > 0 {
		descs = append([]virtqueuetest.Desc{{Addr: a, Len: uint32(len(cmd))}}, descs...)
	}
	if _, err := vq.AddChain(descs); err != nil {
		t.Fatal(err)
	}
	r.drv.Kick(q)
	u, err := r.drv.Wait(q)
	if err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 1)
	r.mem.Read(a+uint64(len(cmd)), ack)
	return ack[0], u.Len
}

func pairsSet(n uint16) []byte {
	return binary.LittleEndian.AppendUint16([]byte{netdev.CtrlClassMQ, netdev.CtrlMQVQPairsSet}, n)
}

// postOn posts n buffers on receive queue q.
func (r *rig) postOn(t *testing.T, q, n int, size uint32) map[uint16]rxBuffer {
	t.Helper()
	vq := r.drv.Queues[q]
	bufs := map[uint16]rxBuffer{}
	for range n {
		a, _ := vq.Alloc(uint64(size))
		h, err := vq.AddChain([]virtqueuetest.Desc{{Addr: a, Len: size, Write: true}})
		if err != nil {
			t.Fatal(err)
		}
		bufs[h] = rxBuffer{h, a, size}
	}
	r.drv.Kick(q)
	return bufs
}

func TestMultiqueue(t *testing.T) {
	r, peers := newMQRig(t, 2, allFeat, 5)
	if got := le16(r.drv.DeviceConfig(8, 2)); got != 2 {
		t.Fatalf("max_virtqueue_pairs %d", got)
	}
	if ack, n := r.ctrl(t, 4, pairsSet(2)); ack != netdev.CtrlOK || n != 1 {
		t.Fatalf("VQ_PAIRS_SET 2: ack %d len %d", ack, n)
	}
	if s := r.dev.SaveState(); s.Active != 2 || s.Pairs != 2 {
		t.Fatalf("state %+v", s)
	}
	for p := range 2 {
		frame := append(hdr(netdev.Header{}), ethFrame(100+p, byte(p))...)
		r.transmitOn(t, 2*p+1, frame)
		peers[p].SetReadDeadline(time.Now().Add(10 * time.Second))
		got := make([]byte, 4096)
		n, err := peers[p].Read(got)
		if err != nil || !bytes.Equal(got[:n], frame) {
			t.Fatalf("pair %d transmit: %v, %d bytes", p, err, n)
		}
		bufs := r.postOn(t, 2*p, 1, 2048)
		peers[p].Write(frame)
		u, err := r.drv.Wait(2 * p)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, u.Len)
		r.mem.Read(bufs[u.Head].addr, b)
		if !bytes.Equal(b[netdev.HeaderSize:], frame[netdev.HeaderSize:]) {
			t.Fatalf("pair %d receive: %d bytes", p, u.Len)
		}
	}
}

func (r *rig) transmitOn(t *testing.T, q int, pkt []byte) {
	t.Helper()
	vq := r.drv.Queues[q]
	a, _ := vq.Alloc(uint64(len(pkt)))
	r.mem.Write(a, pkt)
	if _, err := vq.AddChain([]virtqueuetest.Desc{{Addr: a, Len: uint32(len(pkt))}}); err != nil {
		t.Fatal(err)
	}
	r.drv.Kick(q)
	if _, err := r.drv.Wait(q); err != nil {
		t.Fatal(err)
	}
}

func TestControlCommands(t *testing.T) {
	r, _ := newMQRig(t, 2, allFeat, 5)
	tests := []struct {
		name string
		cmd  []byte
		ack  byte
	}{
		{"zero pairs", pairsSet(0), netdev.CtrlErr},
		{"more pairs than the device has", pairsSet(3), netdev.CtrlErr},
		{"one pair", pairsSet(1), netdev.CtrlOK},
		{"pairs without data", []byte{netdev.CtrlClassMQ, netdev.CtrlMQVQPairsSet}, netdev.CtrlErr},
		{"announce ack", []byte{netdev.CtrlClassAnnounce, netdev.CtrlAnnounceAck}, netdev.CtrlOK},
		{"unknown class", []byte{99, 0}, netdev.CtrlErr},
		{"rx mode (not offered)", []byte{0, 0, 1}, netdev.CtrlErr},
		{"no command", nil, netdev.CtrlErr},
		{"one byte", []byte{4}, netdev.CtrlErr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if ack, n := r.ctrl(t, 4, tt.cmd); ack != tt.ack || n != 1 {
				t.Fatalf("ack %d len %d, want ack %d", ack, n, tt.ack)
			}
		})
	}
	// No writable byte for the ack: the command is returned unanswered.
	vq := r.drv.Queues[4]
	a, _ := vq.Alloc(4)
	r.mem.Write(a, pairsSet(2))
	vq.AddChain([]virtqueuetest.Desc{{Addr: a, Len: 4}})
	r.drv.Kick(4)
	if u, err := r.drv.Wait(4); err != nil || u.Len != 0 {
		t.Fatalf("used %+v, %v", u, err)
	}
	if r.dev.SaveState().Active != 1 {
		t.Fatal("command without an ack buffer took effect")
	}
}

func TestNoMQControlQueue(t *testing.T) {
	// A two-pair device whose driver did not take MQ: the control queue
	// is queue 2 and only the first pair exists.
	r, peers := newMQRig(t, 2, allFeat&^netdev.FeatureMQ, 3)
	if ack, _ := r.ctrl(t, 2, pairsSet(2)); ack != netdev.CtrlErr {
		t.Fatal("VQ_PAIRS_SET accepted without MQ")
	}
	frame := append(hdr(netdev.Header{}), ethFrame(80, 1)...)
	r.transmitOn(t, 1, frame)
	peers[0].SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := peers[0].Read(make([]byte, 4096)); err != nil || n != len(frame) {
		t.Fatalf("transmit: %d, %v", n, err)
	}
}

func TestAnnounce(t *testing.T) {
	r, _ := newMQRig(t, 1, allFeat, 3)
	before := r.plat.MSIs(0)
	r.dev.Announce()
	if st := le16(r.drv.DeviceConfig(6, 2)); st != netdev.StatusLinkUp|netdev.StatusAnnounce || r.plat.MSIs(0) != before+1 {
		t.Fatalf("status %#x after Announce", st)
	}
	if ack, _ := r.ctrl(t, 2, []byte{netdev.CtrlClassAnnounce, netdev.CtrlAnnounceAck}); ack != netdev.CtrlOK {
		t.Fatal("announce ack refused")
	}
	if st := le16(r.drv.DeviceConfig(6, 2)); st != netdev.StatusLinkUp {
		t.Fatalf("status %#x after the ack", st)
	}
}

// TestTAPMultiqueue pings the host over the second queue pair of a
// multiqueue TAP (link-local addresses only).
func TestTAPMultiqueue(t *testing.T) {
	name := fmt.Sprintf("gvmq%d", os.Getpid())
	taps, err := netdev.OpenTAPQueues(name, 2)
	if err != nil {
		t.Skipf("SKIPPED: multiqueue TAP test needs root and /dev/net/tun: %v", err)
	}
	t.Cleanup(func() {
		for _, tp := range taps {
			tp.Close()
		}
		exec.Command("ip", "link", "del", name).Run()
	})
	os.WriteFile("/proc/sys/net/ipv6/conf/"+name+"/disable_ipv6", []byte("1"), 0)
	for _, args := range [][]string{{"addr", "add", hostIP.String() + "/16", "dev", name}, {"link", "set", name, "up"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Skipf("SKIPPED: ip %v: %v: %s", args, err, out)
		}
	}
	r := newRigBackends(t, []netdev.Backend{taps[0], taps[1]}, allFeat, 5)
	if ack, _ := r.ctrl(t, 4, pairsSet(2)); ack != netdev.CtrlOK {
		t.Fatal("VQ_PAIRS_SET 2 refused")
	}
	bufs := []map[uint16]rxBuffer{r.postOn(t, 0, 64, 2048), r.postOn(t, 2, 64, 2048)}
	r.transmitOn(t, 3, append(hdr(netdev.Header{}), arpRequest(r.dev.MAC())...))
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for p, q := range []int{0, 2} {
			u, ok := r.drv.Queues[q].GetUsed()
			if !ok {
				continue
			}
			f := make([]byte, u.Len)
			r.mem.Read(bufs[p][u.Head].addr, f)
			f = f[netdev.HeaderSize:]
			if len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == 0x0806 && binary.BigEndian.Uint16(f[20:]) == 2 {
				return
			}
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("no ARP reply on either queue")
}
