package cli

import (
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

// echoGuest prints READY on COM1, then polls the line status register and
// sends every received byte back (32-bit code for the PVH entry).
func echoGuest() []byte {
	var a kvmtest.Asm
	a.Print("READY\n")
	loop := a.Len()
	a.MovDX(0x3FD).InAL()
	a.B = append(a.B, 0xA8, 0x01) // test al, 1 (LSR data ready)
	a.B = append(a.B, 0x74, byte(int8(loop-(a.Len()+2))))
	a.MovDX(0x3F8).InAL().OutAL()
	a.JmpBack(loop)
	return a.B
}

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

// TestConsoleSocketTwoClients runs a real `govisor run --console-sock` with
// a guest that echoes its serial input; two clients both see the echo of
// what either types, and stdout sees it too.
func TestConsoleSocketTwoClients(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	elf := filepath.Join(dir, "echo.elf")
	if err := os.WriteFile(elf, kvmtest.PVHELF(echoGuest(), 0x100000), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "console.sock")
	cmd := exec.Command(govisorBin(t), "run", "--kernel", elf, "--boot", "pvh", "--memory", "64M", "--console-sock", sock)
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	c1 := dialRetry(t, sock)
	defer c1.Close()
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("console socket mode: %v, %v", fi, err)
	}
	r1 := readSock(c1)
	// A client's own echo proves it is registered for output.
	io.WriteString(c1, "1")
	r1.waitFor(t, "client 1", "1")
	c2 := dialRetry(t, sock)
	defer c2.Close()
	r2 := readSock(c2)
	io.WriteString(c2, "2")
	r2.waitFor(t, "client 2", "2")
	r1.waitFor(t, "client 1", "12")

	io.WriteString(c1, "ping-from-one\n")
	r1.waitFor(t, "client 1", "ping-from-one\n")
	r2.waitFor(t, "client 2", "ping-from-one\n")
	io.WriteString(c2, "pong-from-two\n")
	r1.waitFor(t, "client 1", "pong-from-two\n")
	r2.waitFor(t, "client 2", "pong-from-two\n")

	// A client hanging up leaves the others and the guest running.
	c1.Close()
	io.WriteString(c2, "after\n")
	r2.waitFor(t, "client 2", "after\n")

	cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("govisor run did not stop on SIGINT")
	}
	out := stdout.String()
	for _, want := range []string{"READY\n", "ping-from-one\n", "pong-from-two\n", "after\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q: %q (stderr %q)", want, out, stderr.String())
		}
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("console socket left behind after exit: %v", err)
	}
	select {
	case <-r2.eof:
	case <-time.After(10 * time.Second):
		t.Error("client 2 not disconnected when govisor exited")
	}
}

// syncBuffer is a bytes.Buffer safe for a process's output goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
