package cli

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for the writer's timer goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestConsoleWriterFlushes checks the console writer's promises: a line
// goes out when it ends, bytes without a newline (a prompt) soon after,
// and Close leaves nothing behind.
func TestConsoleWriterFlushes(t *testing.T) {
	var out lockedBuffer
	c := newConsoleWriter(&out)
	for _, b := range []byte("hello\n") {
		c.Write([]byte{b})
	}
	if got := out.String(); got != "hello\n" {
		t.Fatalf("after a line: %q", got)
	}
	c.Write([]byte("login: "))
	deadline := time.Now().Add(5 * time.Second)
	for out.String() != "hello\nlogin: " {
		if time.Now().After(deadline) {
			t.Fatalf("a prompt without a newline was never written: %q", out.String())
		}
		time.Sleep(time.Millisecond)
	}
	c.Write([]byte("x"))
	c.Close()
	if got := out.String(); got != "hello\nlogin: x" {
		t.Fatalf("after Close: %q", got)
	}
}
