package vsock

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// guestConnect handles a guest's REQUEST: it connects to the host socket
// <uds>_<port> and answers RESPONSE, or RST if nobody listens.
func (d *Device) guestConnect(key connKey, h *Header) {
	if old := d.lookup(key); old != nil {
		// A second REQUEST on a live connection: reset both.
		d.closeConn(old, true)
		return
	}
	path := d.uds + "_" + strconv.FormatUint(uint64(key.hostPort), 10)
	uc, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		d.refuse(key)
		return
	}
	c := d.newConn(key, uc, stateEstablished)
	c.peerBufAlloc, c.peerFwdCnt = h.BufAlloc, h.FwdCnt
	if !d.register(c) {
		uc.Close()
		d.refuse(key)
		return
	}
	d.enqueue(&rxItem{c: c, op: OpResponse, key: key})
	c.start()
}

// acceptLoop takes host connections to the device's Unix socket.
func (d *Device) acceptLoop() {
	defer d.bg.Done()
	for {
		uc, err := d.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		d.bg.Add(1)
		go func() {
			defer d.bg.Done()
			d.hostConnect(uc)
		}()
	}
}

// ParseConnect parses the line a host process sends first,
// "CONNECT <port>", without its newline.
func ParseConnect(line string) (uint32, error) {
	p, ok := strings.CutPrefix(line, "CONNECT ")
	if !ok {
		return 0, fmt.Errorf("vsock: expected \"CONNECT <port>\", got %q", line)
	}
	port, err := strconv.ParseUint(strings.TrimSpace(p), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("vsock: bad port in %q: %w", line, err)
	}
	return uint32(port), nil
}

// maxLine bounds the CONNECT line.
const maxLine = 64

// readLine reads one line byte by byte, so that data the host sends
// after it stays in the socket.
func readLine(uc *net.UnixConn) (string, error) {
	var b [maxLine]byte
	for n := 0; n < maxLine; n++ {
		if _, err := uc.Read(b[n : n+1]); err != nil {
			return "", err
		}
		if b[n] == '\n' {
			return string(b[:n]), nil
		}
	}
	return "", fmt.Errorf("vsock: CONNECT line longer than %d bytes", maxLine)
}

// hostConnect runs the host side of a host-initiated connection: the
// CONNECT line, a REQUEST to the guest, and "OK <hostport>" once the
// guest answers RESPONSE.
func (d *Device) hostConnect(uc *net.UnixConn) {
	d.connMu.Lock()
	if d.closed {
		d.connMu.Unlock()
		uc.Close()
		return
	}
	d.handshakes[uc] = struct{}{}
	d.connMu.Unlock()
	uc.SetReadDeadline(time.Now().Add(ConnectTimeout))
	line, err := readLine(uc)
	d.connMu.Lock()
	delete(d.handshakes, uc)
	d.connMu.Unlock()
	if err != nil {
		uc.Close()
		return
	}
	guestPort, err := ParseConnect(strings.TrimSuffix(line, "\r"))
	if err != nil {
		uc.Close()
		return
	}
	uc.SetReadDeadline(time.Time{})
	c := d.allocConn(guestPort, uc)
	if c == nil {
		uc.Close()
		return
	}
	d.enqueue(&rxItem{c: c, op: OpRequest, key: c.key})
	d.awaitResponse(c)
}

// awaitResponse finishes a host-initiated connection: it waits for the
// guest's RESPONSE (or RST, or ConnectTimeout), then answers the host
// "OK <hostport>" and starts the pumps.
func (d *Device) awaitResponse(c *conn) {
	t := time.NewTimer(ConnectTimeout)
	defer t.Stop()
	select {
	case <-c.responded:
	case <-c.closedCh: // the guest answered RST
	case <-t.C:
	}
	select {
	case <-c.responded:
		// The RESPONSE handler counted this greeting among the pumps, so
		// that Freeze waits until the host has its answer.
		defer c.pumps.Done()
	default:
		d.closeConn(c, true) // timed out (a no-op if closed already)
		return
	}
	if _, err := fmt.Fprintf(c.uc, "OK %d\n", c.key.hostPort); err != nil {
		d.closeConn(c, true)
		return
	}
	c.start()
}

// allocConn registers a connecting conn to guestPort from a free host
// port; nil if the table is full.
func (d *Device) allocConn(guestPort uint32, uc *net.UnixConn) *conn {
	d.connMu.Lock()
	defer d.connMu.Unlock()
	if d.closed || len(d.conns) >= MaxConnections {
		return nil
	}
	for range MaxConnections + 1 {
		key := connKey{hostPort: d.nextPort, guestPort: guestPort}
		d.nextPort++
		if d.nextPort == 0 {
			d.nextPort = firstHostPort
		}
		if d.conns[key] == nil {
			c := d.newConn(key, uc, stateConnecting)
			c.frozen = d.frozen
			d.conns[key] = c
			return c
		}
	}
	return nil
}
