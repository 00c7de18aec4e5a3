package vmm

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/govisor/govisor/internal/unixsock"
)

// consoleSockMaxPending is how much output one client may fall behind
// before it is dropped: the guest's UART must never wait for a client.
const consoleSockMaxPending = 1 << 20

// consoleSockMaxClients bounds the connected clients (and so the memory
// their backlogs may take); more are turned away.
const consoleSockMaxClients = 32

// consoleHub serves the console socket (Config.ConsoleSock): every client of the Unix
// socket receives the guest's serial output from the moment it connects,
// and what any client sends goes to the serial input.
type consoleHub struct {
	l     net.Listener
	path  string
	input chan<- []byte // to the UART, through the host console's pump
	done  chan struct{}
	wg    sync.WaitGroup

	mu         sync.Mutex
	clients    map[*consoleClient]struct{}
	maxClients int
	closed     bool
}

// consoleClient is one connection with the output it has yet to receive.
type consoleClient struct {
	conn net.Conn
	wake chan struct{} // holds one pending wake-up for the writer

	mu      sync.Mutex
	pending []byte
	dead    bool
}

// listenConsoleSock creates the console socket at path (mode 0600: the
// console is as powerful as the VM's owner) and starts accepting clients;
// their input is sent on input. Its errors do not name the socket.
func listenConsoleSock(path string, input chan<- []byte) (*consoleHub, error) {
	l, err := unixsock.ListenPrivate(path)
	if err != nil {
		return nil, err
	}
	h := &consoleHub{l: l, path: path, input: input, done: make(chan struct{}), clients: map[*consoleClient]struct{}{}, maxClients: consoleSockMaxClients}
	h.wg.Add(1)
	go h.accept()
	return h, nil
}

func (h *consoleHub) accept() {
	defer h.wg.Done()
	for {
		conn, err := h.l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient failure (out of descriptors): retry shortly.
			select {
			case <-h.done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		c := &consoleClient{conn: conn, wake: make(chan struct{}, 1)}
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			conn.Close()
			return
		}
		if len(h.clients) >= h.maxClients {
			h.mu.Unlock()
			conn.SetWriteDeadline(time.Now().Add(time.Second))
			fmt.Fprintf(conn, "govisor: console busy: %d clients are connected already\r\n", h.maxClients)
			conn.Close()
			continue
		}
		// Registered before its input is read: a client sees the echo of
		// everything it types.
		h.clients[c] = struct{}{}
		h.mu.Unlock()
		h.wg.Add(2)
		go h.writeLoop(c)
		go h.readLoop(c)
	}
}

// Write hands guest output to every client without blocking: a client
// whose backlog would exceed consoleSockMaxPending is disconnected.
func (h *consoleHub) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		c.mu.Lock()
		if len(c.pending)+len(p) > consoleSockMaxPending {
			c.mu.Unlock()
			h.dropLocked(c)
			continue
		}
		c.pending = append(c.pending, p...)
		c.mu.Unlock()
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

// dropLocked disconnects c; h.mu is held.
func (h *consoleHub) dropLocked(c *consoleClient) {
	delete(h.clients, c)
	c.mu.Lock()
	c.dead = true
	c.pending = nil
	c.mu.Unlock()
	c.conn.Close() // unblocks its reader and writer
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (h *consoleHub) drop(c *consoleClient) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.clients[c]; ok {
		h.dropLocked(c)
	}
}

// writeLoop sends c's backlog as it grows.
func (h *consoleHub) writeLoop(c *consoleClient) {
	defer h.wg.Done()
	var buf []byte
	for {
		select {
		case <-c.wake:
		case <-h.done:
			return
		}
		c.mu.Lock()
		if c.dead {
			c.mu.Unlock()
			return
		}
		buf, c.pending = c.pending, buf[:0]
		c.mu.Unlock()
		if len(buf) == 0 {
			continue
		}
		if _, err := c.conn.Write(buf); err != nil {
			h.drop(c)
			return
		}
	}
}

// readLoop forwards what c sends to the serial input until c hangs up.
func (h *consoleHub) readLoop(c *consoleClient) {
	defer h.wg.Done()
	defer h.drop(c)
	buf := make([]byte, 256)
	for {
		n, err := c.conn.Read(buf)
		if n > 0 {
			select {
			case h.input <- append([]byte(nil), buf[:n]...):
			case <-h.done:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Close disconnects every client and removes the socket.
func (h *consoleHub) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	close(h.done)
	for c := range h.clients {
		h.dropLocked(c)
	}
	h.mu.Unlock()
	err := h.l.Close()
	h.wg.Wait()
	os.Remove(h.path)
	return err
}

// teeConsole writes guest output to the terminal and to the socket's
// clients; the terminal's result is what the UART sees.
type teeConsole struct {
	out io.Writer
	hub *consoleHub
}

func (t teeConsole) Write(p []byte) (int, error) {
	t.hub.Write(p)
	return t.out.Write(p)
}
