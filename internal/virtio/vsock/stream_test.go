package vsock_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"time"

	"github.com/govisor/govisor/internal/virtio/vsock"
)

// gconn is the guest's side of one connection.
type gconn struct {
	guestPort, hostPort uint32
	out                 []byte // to send
	sent                int
	in                  bytes.Buffer // received
	peerBufAlloc        uint32
	peerFwdCnt          uint32
	txCnt               uint32
	fwdCnt, advertised  uint32
	peerEOF, reset      bool
	shutdownSent        bool
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func sum(b []byte) [32]byte { return sha256.Sum256(b) }

// pump moves data both ways on conns until every one sent all it had,
// got the host's SHUTDOWN, and was closed with SHUTDOWN and RST. The
// guest checks the device never sends beyond its credit, and returns
// credit only when half its buffer was consumed.
func (g *guest) pump(conns []*gconn) {
	g.t.Helper()
	byPort := map[[2]uint32]*gconn{}
	for _, c := range conns {
		byPort[[2]uint32{c.guestPort, c.hostPort}] = c
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		done := true
		for _, c := range conns {
			if c.reset {
				continue
			}
			done = false
			for c.sent < len(c.out) {
				credit := c.peerBufAlloc - (c.txCnt - c.peerFwdCnt)
				if c.txCnt-c.peerFwdCnt > c.peerBufAlloc || credit == 0 {
					break
				}
				n := min(guestChunk, int(credit), len(c.out)-c.sent)
				h := g.hdr(c.guestPort, c.hostPort, vsock.OpRW)
				h.FwdCnt = c.fwdCnt
				g.send(h, c.out[c.sent:c.sent+n])
				c.advertised = c.fwdCnt
				c.sent += n
				c.txCnt += uint32(n)
			}
			if c.sent == len(c.out) && c.peerEOF && !c.shutdownSent {
				h := g.hdr(c.guestPort, c.hostPort, vsock.OpShutdown)
				h.Flags = vsock.ShutdownRcv | vsock.ShutdownSend
				h.FwdCnt = c.fwdCnt
				g.send(h, nil)
				c.shutdownSent = true
			}
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			g.t.Fatal("transfer did not finish")
		}
		h, p, ok := g.recv(10 * time.Millisecond)
		if !ok {
			continue
		}
		c := byPort[[2]uint32{h.DstPort, h.SrcPort}]
		if c == nil {
			g.t.Fatalf("packet for unknown connection %+v", h)
		}
		c.peerBufAlloc, c.peerFwdCnt = h.BufAlloc, h.FwdCnt
		switch h.Op {
		case vsock.OpRW:
			if c.peerEOF {
				g.t.Fatal("data after SHUTDOWN")
			}
			c.in.Write(p)
			// Credit check: what arrived and is not yet returned fits
			// in the buffer the guest advertised.
			if uint32(c.in.Len())-c.advertised > g.BufAlloc {
				g.t.Fatalf("device sent %d bytes beyond credit", uint32(c.in.Len())-c.advertised-g.BufAlloc)
			}
			c.fwdCnt += uint32(len(p))
			if c.fwdCnt-c.advertised >= g.BufAlloc/2 {
				u := g.hdr(c.guestPort, c.hostPort, vsock.OpCreditUpdate)
				u.FwdCnt = c.fwdCnt
				g.send(u, nil)
				c.advertised = c.fwdCnt
			}
		case vsock.OpShutdown:
			if h.Flags&vsock.ShutdownSend != 0 {
				c.peerEOF = true
			}
		case vsock.OpRST:
			if !c.shutdownSent {
				g.t.Fatalf("RST on connection %d->%d before the guest closed it", c.guestPort, c.hostPort)
			}
			c.reset = true
		case vsock.OpCreditUpdate:
		default:
			g.t.Fatalf("unexpected packet %+v", h)
		}
	}
}
