package netdev_test

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"

	"github.com/govisor/govisor/internal/virtio/netdev"
)

// Link-local addresses only: the test never sends to anything else.
var (
	hostIP  = net.IPv4(169, 254, 77, 1).To4()
	guestIP = net.IPv4(169, 254, 77, 2).To4()
)

// openTestTAP creates a TAP named gvtest<pid> with hostIP, or skips.
func openTestTAP(t *testing.T) *netdev.TAP {
	t.Helper()
	name := fmt.Sprintf("gvtest%d", os.Getpid())
	tap, err := netdev.OpenTAP(name)
	if err != nil {
		t.Skipf("SKIPPED: real TAP test needs root and /dev/net/tun: %v", err)
	}
	t.Cleanup(func() {
		tap.Close()
		exec.Command("ip", "link", "del", name).Run()
	})
	if tap.Name() != name {
		t.Fatalf("TAP named %q, want %q", tap.Name(), name)
	}
	// No IPv6 chatter (router solicitations) on the test link.
	os.WriteFile("/proc/sys/net/ipv6/conf/"+name+"/disable_ipv6", []byte("1"), 0)
	for _, args := range [][]string{
		{"addr", "add", hostIP.String() + "/16", "dev", name},
		{"link", "set", name, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Skipf("SKIPPED: ip %v: %v: %s", args, err, out)
		}
	}
	return tap
}

func arpRequest(src net.HardwareAddr) []byte {
	b := make([]byte, 42)
	copy(b[0:], []byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF})
	copy(b[6:], src)
	binary.BigEndian.PutUint16(b[12:], 0x0806)
	binary.BigEndian.PutUint16(b[14:], 1)      // Ethernet
	binary.BigEndian.PutUint16(b[16:], 0x0800) // IPv4
	b[18], b[19] = 6, 4
	binary.BigEndian.PutUint16(b[20:], 1) // request
	copy(b[22:], src)
	copy(b[28:], guestIP)
	copy(b[38:], hostIP)
	return b
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xFFFF + s>>16
	}
	return ^uint16(s)
}

func icmpEcho(src, dst net.HardwareAddr, id uint16) []byte {
	b := make([]byte, 14+20+8+32)
	copy(b, dst)
	copy(b[6:], src)
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], 20+8+32)
	ip[8], ip[9] = 64, 1
	copy(ip[12:], guestIP)
	copy(ip[16:], hostIP)
	binary.BigEndian.PutUint16(ip[10:], checksum(ip))
	icmp := b[34:]
	icmp[0] = 8
	binary.BigEndian.PutUint16(icmp[4:], id)
	binary.BigEndian.PutUint16(icmp[6:], 1)
	for i := 8; i < len(icmp); i++ {
		icmp[i] = byte(i)
	}
	binary.BigEndian.PutUint16(icmp[2:], checksum(icmp))
	return b
}

// TestTAP exchanges ARP and ICMP with the host's stack over a real TAP:
// the guest resolves the host's link-local address and pings it.
func TestTAP(t *testing.T) {
	tap := openTestTAP(t)
	r := newRig(t, tap, netdev.Options{}, allFeat)
	mac := r.dev.MAC()
	bufs := r.post(t, 128, 2048)
	// next returns the next received frame that match accepts.
	next := func(match func([]byte) bool) []byte {
		for range 100 {
			_, f := r.receive(t, bufs)
			if match(f) {
				return f
			}
		}
		t.Fatal("expected frame never arrived")
		return nil
	}

	r.transmit(t, append(hdr(netdev.Header{}), arpRequest(mac)...), 1<<20)
	reply := next(func(f []byte) bool {
		return len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == 0x0806 && binary.BigEndian.Uint16(f[20:]) == 2 && net.IP(f[28:32]).Equal(hostIP)
	})
	hostMAC := net.HardwareAddr(reply[22:28])
	if !net.IP(reply[38:42]).Equal(guestIP) || string(reply[0:6]) != string(mac) {
		t.Fatalf("ARP reply % x", reply)
	}

	r.transmit(t, append(hdr(netdev.Header{}), icmpEcho(mac, hostMAC, 0x4242)...), 20)
	echo := next(func(f []byte) bool {
		return len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == 0x0800 && f[23] == 1 && f[34] == 0
	})
	if binary.BigEndian.Uint16(echo[38:]) != 0x4242 || !net.IP(echo[26:30]).Equal(hostIP) {
		t.Fatalf("echo reply % x", echo)
	}
	c := r.dev.Counters()
	if c.TxPackets != 2 || c.RxPackets < 2 || c.TxDrops != 0 {
		t.Fatalf("counters %+v", c)
	}
}

func TestOpenTAPErrors(t *testing.T) {
	if _, err := netdev.OpenTAP("a-name-far-too-long-for-linux"); err == nil {
		t.Fatal("long name accepted")
	}
}
