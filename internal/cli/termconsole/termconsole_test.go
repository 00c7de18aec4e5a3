package termconsole

import (
	"bytes"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// TestPipedSession: with pipes, what stdin holds goes to the console, what
// the console sends comes out, and the session ends when the console closes.
func TestPipedSession(t *testing.T) {
	conn, peer := net.Pipe()
	defer conn.Close()
	in, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if _, err := w.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, 6)
		_, err := io.ReadFull(peer, b)
		if err == nil {
			_, err = peer.Write([]byte("world\n"))
		}
		if err != nil {
			t.Error(err)
		}
		got <- b
		peer.Close() // the VM stopped
	}()
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- Session(conn, in, &out, 10*time.Second) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the session did not end when the console closed")
	}
	if b := <-got; string(b) != "hello\n" {
		t.Errorf("the console got %q, want the input", b)
	}
	if out.String() != "world\n" {
		t.Errorf("out = %q, want the console's output", out.String())
	}
}
