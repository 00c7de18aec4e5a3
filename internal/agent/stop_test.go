package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/node"
)

// TestGracefulStop: stop presses the ACPI power button; a guest that
// honours it powers off (exit status 0) even when it was paused, one that
// ignores it is terminated once its stopTimeout passed (the VMM's SIGTERM
// status, 143).
func TestGracefulStop(t *testing.T) {
	kvmtest.Require(t)
	bin := govisorBin(t)
	dir := t.TempDir()
	ta := startAgent(t, dir, func(c *Config) { c.Executable = bin })
	defer ta.Shutdown(context.Background())
	ctx := context.Background()
	polite := writeGuest(t, dir, "polite.elf", powerButtonGuest("UP\n"))
	deaf := writeGuest(t, dir, "deaf.elf", idleGuest("UP\n"))
	cases := []struct {
		name, kernel, timeout string
		code                  int
	}{
		{"polite", polite, "60s", 0},
		{"deaf", deaf, "1s", 143},
	}
	for _, c := range cases {
		s := spec(c.name, c.kernel, api.RestartNever)
		s.StopTimeout = c.timeout
		if _, err := ta.cli.CreateVM(ctx, s, true); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cases {
		waitVM(t, ta.cli, c.name, "running", func(v api.VM) bool { return v.Status.State == api.StateRunning })
		// The VMM serves its API and console sockets in the VM's directory.
		for _, sock := range []string{node.APISock, node.ConsoleSock} {
			p := filepath.Join(ta.vmDir(c.name), sock)
			deadline := time.Now().Add(30 * time.Second)
			for {
				fi, err := os.Stat(p)
				if err == nil && fi.Mode()&os.ModeSocket != 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: no socket %s: %v", c.name, p, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	// A paused guest is resumed to see the button.
	if v, err := ta.cli.Pause(ctx, "polite"); err != nil || v.Status.State != api.StatePaused {
		t.Fatalf("pause: %+v, %v", v.Status, err)
	}
	for _, c := range cases {
		v, err := ta.cli.Action(ctx, c.name, "stop", 60*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if v.Status.State != api.StateStopped || v.Status.ExitCode == nil || *v.Status.ExitCode != c.code {
			t.Errorf("%s: after stop %+v, want stopped with exit status %d", c.name, v.Status, c.code)
		}
		if !strings.HasPrefix(v.Status.ExitReason, "stopped on request") {
			t.Errorf("%s: exit reason %q", c.name, v.Status.ExitReason)
		}
	}
}

// TestAdoptedVMMControl: after an agent restart, the adopted VMM is driven
// through the same sockets in the VM's folder (pause, resume, console,
// graceful stop).
func TestAdoptedVMMControl(t *testing.T) {
	kvmtest.Require(t)
	bin := govisorBin(t)
	dir := t.TempDir()
	ctx := context.Background()
	withBin := func(c *Config) { c.Executable = bin }
	ta := startAgent(t, dir, withBin)
	k := writeGuest(t, dir, "polite.elf", powerButtonGuest("UP\n"))
	s := spec("kept", k, api.RestartNever)
	s.StopTimeout = "10m" // only the power button can stop it within the test's wait
	if _, err := ta.cli.CreateVM(ctx, s, true); err != nil {
		t.Fatal(err)
	}
	v := waitVM(t, ta.cli, "kept", "running", func(v api.VM) bool { return v.Status.State == api.StateRunning })
	waitVMMAPI(t, ta, "kept")
	if err := ta.Close(); err != nil {
		t.Fatal(err)
	}
	tb := startAgent(t, dir, withBin)
	defer tb.Shutdown(context.Background())
	if got, err := tb.cli.Pause(ctx, "kept"); err != nil || got.Status.PID != v.Status.PID || got.Status.State != api.StatePaused {
		t.Fatalf("pause after adoption: %+v, %v", got.Status, err)
	}
	if _, err := tb.cli.Resume(ctx, "kept"); err != nil {
		t.Fatal(err)
	}
	con, err := tb.cli.AttachConsole(ctx, "kept")
	if err != nil {
		t.Fatal(err)
	}
	con.Close()
	got, err := tb.cli.Action(ctx, "kept", "stop", 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Adopted: the exit status is unknowable, but only the power button
	// could stop it this soon (its stopTimeout is 10 minutes).
	if got.Status.State != api.StateStopped || alive(v.Status.PID) {
		t.Errorf("after stop: %+v", got.Status)
	}
}
