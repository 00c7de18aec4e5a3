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
		for _, sock := range []string{apiSockName, consoleSockName} {
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
