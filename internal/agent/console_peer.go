package agent

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/govisor/govisor/client"
	"github.com/govisor/govisor/internal/cluster/store"
)

// peerConsole opens the console of a VM that runs on another host through
// that host's agent (issue 14: a browser's console survives a live
// migration; the browser only knows, and is only logged in to, the agent
// it was served by).
func (vs *vmService) peerConsole(ctx context.Context, rec store.Record) (net.Conn, error) {
	name, host := rec.Desired.Spec.Name, rec.Desired.Host
	c, err := vs.peers.peer(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("%w: console of %s on %s: %v", ErrNoPeer, name, host, err)
	}
	cc, err := c.AttachConsole(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("agent: console of %s on %s: %w", name, host, err)
	}
	return peerConn{cc, host}, nil
}

// peerConn is another agent's console session as a net.Conn. Deadlines are
// not kept: the session's WebSocket bounds its writes itself, and closing
// it ends a blocked read.
type peerConn struct {
	*client.ConsoleConn
	host string
}

// peerAddr names the other agent's host.
type peerAddr string

func (p peerAddr) Network() string { return "govisor-peer" }
func (p peerAddr) String() string  { return string(p) }

func (p peerConn) LocalAddr() net.Addr              { return peerAddr("") }
func (p peerConn) RemoteAddr() net.Addr             { return peerAddr(p.host) }
func (p peerConn) SetDeadline(time.Time) error      { return nil }
func (p peerConn) SetReadDeadline(time.Time) error  { return nil }
func (p peerConn) SetWriteDeadline(time.Time) error { return nil }
