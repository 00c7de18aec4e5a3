package agent

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

// readUntil reads r until want appeared (or the reader fails).
func readUntil(t *testing.T, r io.Reader, want string) string {
	t.Helper()
	var got bytes.Buffer
	buf := make([]byte, 256)
	for !strings.Contains(got.String(), want) {
		n, err := r.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			t.Fatalf("console: %v after %q, want %q", err, got.String(), want)
		}
	}
	return got.String()
}

// TestConsoleWebSocket: two WebSocket sessions on a guest that echoes its
// serial input both see what one of them types; the plain GET still
// returns the log; a stopped VM has no session to attach to.
func TestConsoleWebSocket(t *testing.T) {
	kvmtest.Require(t)
	bin := govisorBin(t)
	dir := t.TempDir()
	ta := startAgent(t, dir, func(c *Config) { c.Executable = bin })
	defer ta.Shutdown(context.Background())
	ctx := context.Background()
	k := writeGuest(t, dir, "echo.elf", echoGuest("READY\n"))
	s := spec("echo", k, api.RestartNever)
	s.StopTimeout = "0s"
	if _, err := ta.cli.CreateVM(ctx, s, true); err != nil {
		t.Fatal(err)
	}
	waitVM(t, ta.cli, "echo", "ready", func(v api.VM) bool {
		return v.Status.State == api.StateRunning && consoleCount(t, ta.cli, "echo", "READY") == 1
	})
	var one, two io.ReadWriteCloser
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := ta.cli.AttachConsole(ctx, "echo")
		if err == nil {
			one = c
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	defer one.Close()
	two, err := ta.cli.AttachConsole(ctx, "echo")
	if err != nil {
		t.Fatal(err)
	}
	defer two.Close()
	// Each session proves it is registered by getting its own echo first.
	for i, c := range []io.ReadWriteCloser{one, two} {
		mark := []string{"ping-one\n", "ping-two\n"}[i]
		if _, err := c.Write([]byte(mark)); err != nil {
			t.Fatal(err)
		}
		readUntil(t, c, mark)
	}
	if _, err := one.Write([]byte("hello from one\n")); err != nil {
		t.Fatal(err)
	}
	readUntil(t, one, "hello from one\n")
	readUntil(t, two, "hello from one\n")
	// Without the upgrade header: the log so far.
	if n := consoleCount(t, ta.cli, "echo", "hello from one"); n != 1 {
		t.Errorf("console log holds the echo %d times", n)
	}
	// The VM stops: the sessions end.
	if _, err := ta.cli.Action(ctx, "echo", "stop", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(one); err != nil {
		t.Errorf("session after the VM stopped: %v", err)
	}
	_, err = ta.cli.AttachConsole(ctx, "echo")
	wantAPIError(t, "console of a stopped VM", err, http.StatusConflict, "", "it is stopped")
	_, err = ta.cli.AttachConsole(ctx, "ghost")
	wantAPIError(t, "console of no VM", err, http.StatusNotFound, "", "not found")
}

// TestConsoleAfterMigration: a VM's console asked of the agent of the host
// it left is reached through the agent of the host it runs on now (issue
// 14: the browser's console, served by one agent, survives a live
// migration); the session open across the migration ends with the source
// VMM.
func TestConsoleAfterMigration(t *testing.T) {
	kvmtest.Require(t)
	ctx := t.Context()
	dirA, dirB, dirC := t.TempDir(), t.TempDir(), t.TempDir()
	ta, tb, _ := threeHosts(t, dirA, dirB, dirC)
	k := writeGuest(t, dirA, "echo.elf", echoGuest("READY\n"))
	s := spec("echo", k, api.RestartNever)
	s.StopTimeout = "0s"
	if _, err := ta.cli.CreateVM(ctx, s, true); err != nil {
		t.Fatal(err)
	}
	waitVM(t, ta.cli, "echo", "running", func(v api.VM) bool { return v.Status.State == api.StateRunning })
	waitVMMAPI(t, ta, "echo")
	attach := func(via testAgent) io.ReadWriteCloser {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			c, err := via.cli.AttachConsole(ctx, "echo")
			if err == nil {
				return c
			}
			if time.Now().After(deadline) {
				t.Fatal(err)
			}
		}
	}
	before := attach(ta)
	defer before.Close()
	before.Write([]byte("before\n"))
	readUntil(t, before, "before\n")
	if _, err := ta.cli.Migrate(ctx, "echo", api.MigrateRequest{Host: "hostb"}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(before); err != nil {
		t.Errorf("the session open across the migration: %v", err)
	}
	after := attach(ta) // the agent of the host the VM left
	defer after.Close()
	after.Write([]byte("after the move\n"))
	readUntil(t, after, "after the move\n")
	// The session goes on through hostb's agent: both see the echo.
	direct := attach(tb)
	defer direct.Close()
	direct.Write([]byte("to both\n"))
	readUntil(t, direct, "to both\n")
	readUntil(t, after, "to both\n")
	if _, err := tb.cli.Action(ctx, "echo", "stop", 30*time.Second); err != nil {
		t.Fatal(err)
	}
}
