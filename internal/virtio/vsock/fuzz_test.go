package vsock_test

import (
	"bytes"
	"testing"

	"github.com/govisor/govisor/internal/virtio/vsock"
)

// FuzzPacket sends one arbitrary packet from the guest, then a request
// to a closed port: the device must still answer it with RST and never
// need a reset.
func FuzzPacket(f *testing.F) {
	f.Add(uint16(vsock.OpRW), uint16(vsock.TypeStream), uint32(1), uint32(2), uint32(10), uint32(0), []byte("0123456789"))
	f.Add(uint16(vsock.OpShutdown), uint16(vsock.TypeStream), uint32(1), uint32(2), uint32(0), uint32(3), []byte{})
	f.Add(uint16(vsock.OpRequest), uint16(7), uint32(0), uint32(0), uint32(1<<31), uint32(0), []byte{1})
	f.Fuzz(func(t *testing.T, op, typ uint16, src, dst, length, flags uint32, payload []byte) {
		if len(payload) > 4096 {
			return
		}
		g := newGuest(t)
		h := g.hdr(src, dst, op)
		h.Type, h.Len, h.Flags = typ, length, flags
		g.sendRaw(h, payload)
		probe := g.hdr(src+1, 0xFFFFFFF0, vsock.OpRequest)
		g.send(probe, nil)
		for {
			r, _ := g.mustRecv()
			if r.Op == vsock.OpRST && r.SrcPort == 0xFFFFFFF0 && r.DstPort == src+1 {
				break
			}
		}
		g.healthy()
	})
}

// FuzzHeader round-trips arbitrary header bytes.
func FuzzHeader(f *testing.F) {
	f.Add(make([]byte, vsock.HeaderSize))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, ok := vsock.ParseHeader(b)
		if ok != (len(b) >= vsock.HeaderSize) {
			t.Fatalf("ok %v for %d bytes", ok, len(b))
		}
		if !ok {
			return
		}
		out := make([]byte, vsock.HeaderSize)
		h.Put(out)
		if !bytes.Equal(out, b[:vsock.HeaderSize]) {
			t.Fatal("round trip changed the header")
		}
	})
}

// FuzzParseConnect parses arbitrary CONNECT lines.
func FuzzParseConnect(f *testing.F) {
	f.Add("CONNECT 52")
	f.Add("CONNECT 99999999999")
	f.Add("connect 1")
	f.Fuzz(func(t *testing.T, line string) {
		port, err := vsock.ParseConnect(line)
		if err == nil && !bytes.HasPrefix([]byte(line), []byte("CONNECT ")) {
			t.Fatalf("%q accepted as port %d", line, port)
		}
	})
}
