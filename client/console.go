package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/govisor/govisor/api"
)

// ConsoleConn is an interactive serial console session over a WebSocket:
// Read returns the guest's serial output, Write sends serial input.
type ConsoleConn struct {
	ws      *websocket.Conn
	rmu     sync.Mutex
	pending []byte
	wmu     sync.Mutex
}

// AttachConsole opens an interactive session on a running VM's serial
// console (GET /v1/vms/{name}/console with a WebSocket upgrade).
func (c *Client) AttachConsole(ctx context.Context, name string) (*ConsoleConn, error) {
	d := websocket.Dialer{}
	u := c.base + vmPath(name) + "/console"
	switch {
	case strings.HasPrefix(u, "https://"):
		u = "wss://" + strings.TrimPrefix(u, "https://")
		if tr, ok := c.hc.Transport.(*http.Transport); ok {
			d.TLSClientConfig = tr.TLSClientConfig
		}
	case strings.HasPrefix(u, "http://"):
		u = "ws://" + strings.TrimPrefix(u, "http://")
	}
	if tr, ok := c.hc.Transport.(*http.Transport); ok && tr.DialContext != nil && c.base == "http://govisor" {
		d.NetDialContext = tr.DialContext // the Unix socket
	}
	h := c.header.Clone()
	if h == nil {
		h = http.Header{}
	}
	if c.token != "" {
		h.Set("Authorization", "Bearer "+c.token)
	}
	ws, resp, err := d.DialContext(ctx, u, h)
	if err != nil {
		if resp != nil && resp.StatusCode >= 300 {
			return nil, responseError(http.MethodGet, vmPath(name)+"/console", resp)
		}
		return nil, fmt.Errorf("client: console of %s at %s: %w", name, c.where, err)
	}
	return &ConsoleConn{ws: ws}, nil
}

// Read reads serial output; io.EOF once the console closed (the VM stopped).
func (cc *ConsoleConn) Read(p []byte) (int, error) {
	cc.rmu.Lock()
	defer cc.rmu.Unlock()
	for len(cc.pending) == 0 {
		kind, msg, err := cc.ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) || errors.Is(err, net.ErrClosed) {
				return 0, io.EOF
			}
			return 0, fmt.Errorf("client: console: %w", err)
		}
		if kind == websocket.BinaryMessage || kind == websocket.TextMessage {
			cc.pending = msg
		}
	}
	n := copy(p, cc.pending)
	cc.pending = cc.pending[n:]
	return n, nil
}

// Write sends p to the guest's serial input.
func (cc *ConsoleConn) Write(p []byte) (int, error) {
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	if err := cc.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, fmt.Errorf("client: console: %w", err)
	}
	return len(p), nil
}

// Close ends the session (the VM keeps running).
func (cc *ConsoleConn) Close() error {
	cc.wmu.Lock()
	cc.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	cc.wmu.Unlock()
	return cc.ws.Close()
}

// responseError turns an error response into *Error.
func responseError(method, path string, resp *http.Response) error {
	defer resp.Body.Close()
	var e api.Error
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if json.Unmarshal(b, &e) != nil || e.Message == "" {
		e.Message = fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	ce := &Error{StatusCode: resp.StatusCode, Message: e.Message, Field: e.Field}
	if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && n >= 0 {
		ce.RetryAfter = time.Duration(n) * time.Second
	}
	return ce
}
