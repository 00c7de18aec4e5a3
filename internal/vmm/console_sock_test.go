package vmm

import (
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// sockReader accumulates what a console client receives.
type sockReader struct {
	mu  sync.Mutex
	buf bytes.Buffer
	eof chan struct{}
}

func readSock(c net.Conn) *sockReader {
	r := &sockReader{eof: make(chan struct{})}
	go func() {
		defer close(r.eof)
		b := make([]byte, 4096)
		for {
			n, err := c.Read(b)
			r.mu.Lock()
			r.buf.Write(b[:n])
			r.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return r
}

func (r *sockReader) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String()
}

// waitFor waits until the client has received want.
func (r *sockReader) waitFor(t *testing.T, name, want string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for !strings.Contains(r.String(), want) {
		select {
		case <-deadline:
			t.Fatalf("%s: never received %q; got %q", name, want, r.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func dialRetry(t *testing.T, path string) net.Conn {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; {
		c, err := net.Dial("unix", path)
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("connect to the console socket: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestConsoleHubDropsSlowClient checks that output never waits for a
// client that stops reading: that client is dropped, a reading client gets
// every byte in order, and Close removes the socket.
func TestConsoleHubDropsSlowClient(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "c.sock")
	input := make(chan []byte, 4)
	h, err := listenConsoleSock(sock, input)
	if err != nil {
		t.Fatal(err)
	}
	slow := dialRetry(t, sock)
	defer slow.Close()
	fast := dialRetry(t, sock)
	defer fast.Close()
	rf := readSock(fast)
	// Wait until both are registered.
	for deadline := time.Now().Add(10 * time.Second); ; {
		h.mu.Lock()
		n := len(h.clients)
		h.mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d clients registered, want 2", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var want bytes.Buffer
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 256) // 4 KiB
	for i := 0; i < 3*consoleSockMaxPending/len(chunk); i++ {
		chunk[0] = byte('A' + i%26)
		want.Write(chunk)
		if n, err := h.Write(chunk); n != len(chunk) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		// The reading client keeps up (it is given the chance to).
		for deadline := time.Now().Add(10 * time.Second); len(rf.String()) < want.Len()-consoleSockMaxPending/2; {
			if time.Now().After(deadline) {
				t.Fatal("fast client stalled")
			}
			time.Sleep(time.Millisecond)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); rf.String() != want.String(); {
		if time.Now().After(deadline) {
			t.Fatalf("fast client got %d bytes, want %d", len(rf.String()), want.Len())
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.mu.Lock()
	n := len(h.clients)
	h.mu.Unlock()
	if n != 1 {
		t.Errorf("%d clients left, want 1 (the slow one dropped)", n)
	}
	// Input from a client reaches the serial input.
	io.WriteString(fast, "typed")
	select {
	case p := <-input:
		if string(p) != "typed" {
			t.Errorf("input %q, want %q", p, "typed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("client input never arrived")
	}
	if err := h.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
	select {
	case <-rf.eof:
	case <-time.After(10 * time.Second):
		t.Error("client not disconnected by Close")
	}
}

// TestConsoleHubClientLimit checks that a client beyond the limit is told
// why and disconnected, while the others stay.
func TestConsoleHubClientLimit(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "c.sock")
	h, err := listenConsoleSock(sock, make(chan []byte, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	h.mu.Lock()
	h.maxClients = 1
	h.mu.Unlock()
	first := dialRetry(t, sock)
	defer first.Close()
	r1 := readSock(first)
	for deadline := time.Now().Add(10 * time.Second); ; {
		h.mu.Lock()
		n := len(h.clients)
		h.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("first client never registered")
		}
		time.Sleep(5 * time.Millisecond)
	}
	second := dialRetry(t, sock)
	defer second.Close()
	r2 := readSock(second)
	select {
	case <-r2.eof:
	case <-time.After(10 * time.Second):
		t.Fatal("the client beyond the limit was not disconnected")
	}
	if !strings.Contains(r2.String(), "console busy") {
		t.Errorf("the refused client was told %q", r2.String())
	}
	h.Write([]byte("still here"))
	r1.waitFor(t, "first client", "still here")
}
