package agent

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/store"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

// TestRestartPolicies runs guests that end on their own under each policy.
func TestRestartPolicies(t *testing.T) {
	kvmtest.Require(t)
	bin := govisorBin(t)
	dir := t.TempDir()
	ta := startAgent(t, dir, func(c *Config) { c.Executable = bin })
	defer ta.Shutdown(context.Background())
	ctx := context.Background()
	ok0 := writeGuest(t, dir, "ok.elf", exitGuest("BYE\n", 0))
	bad := writeGuest(t, dir, "bad.elf", exitGuest("OOPS\n", 3))
	idle := writeGuest(t, dir, "idle.elf", idleGuest("UP\n"))
	for _, s := range []api.VMSpec{
		spec("poweroff", ok0, api.RestartNever),
		spec("crashy", bad, api.RestartOnFailure),
		spec("again", ok0, api.RestartAlways),
		spec("killed", idle, api.RestartOnFailure),
	} {
		if _, err := ta.cli.CreateVM(ctx, s, true); err != nil {
			t.Fatal(err)
		}
	}
	v := waitVM(t, ta.cli, "poweroff", "powered off", func(v api.VM) bool { return v.Status.State == api.StateStopped && v.Desired == api.PowerStopped })
	if v.Status.ExitReason != "guest powered off" || v.Status.Restarts != 0 || v.Status.ExitCode == nil || *v.Status.ExitCode != 0 {
		t.Errorf("poweroff: %+v", v.Status)
	}
	v = waitVM(t, ta.cli, "crashy", "restarted", func(v api.VM) bool { return v.Status.Restarts >= 1 })
	if v.Desired != api.PowerRunning {
		t.Errorf("crashy: desired %s after a restart", v.Desired)
	}
	waitVM(t, ta.cli, "crashy", "failed with status 3", func(v api.VM) bool {
		return v.Status.State == api.StateFailed && strings.Contains(v.Status.ExitReason, "exit status 3")
	})
	waitVM(t, ta.cli, "again", "restarted", func(v api.VM) bool { return v.Status.Restarts >= 1 })

	// kill -9 of a VMM: recorded as a failure and restarted as another process.
	v = waitVM(t, ta.cli, "killed", "running", func(v api.VM) bool { return v.Status.State == api.StateRunning })
	old := v.Status.PID
	syscall.Kill(old, syscall.SIGKILL)
	v = waitVM(t, ta.cli, "killed", "restarted", func(v api.VM) bool {
		return v.Status.State == api.StateRunning && v.Status.PID != old && v.Status.PID != 0
	})
	if v.Status.Restarts != 1 {
		t.Errorf("killed: %d restarts, want 1", v.Status.Restarts)
	}
	for _, name := range []string{"crashy", "again", "killed"} {
		if _, err := ta.cli.Action(ctx, name, "stop", 30*time.Second); err != nil {
			t.Fatal(err)
		}
		waitVM(t, ta.cli, name, "stopped", func(v api.VM) bool { return v.Status.State == api.StateStopped })
	}
}

// TestShutdownAndCrashRecovery: Shutdown stops the VMMs but keeps them
// desired running (they come back with the agent); a VMM killed while no
// agent runs is found dead, recorded, and restarted by policy.
func TestShutdownAndCrashRecovery(t *testing.T) {
	kvmtest.Require(t)
	bin := govisorBin(t)
	dir := t.TempDir()
	ctx := context.Background()
	withBin := func(c *Config) { c.Executable = bin }
	ta := startAgent(t, dir, withBin)
	idle := writeGuest(t, dir, "idle.elf", idleGuest("UP\n"))
	if _, err := ta.cli.CreateVM(ctx, spec("svc", idle, api.RestartOnFailure), true); err != nil {
		t.Fatal(err)
	}
	pid := waitVM(t, ta.cli, "svc", "running", func(v api.VM) bool { return v.Status.State == api.StateRunning }).Status.PID
	waitConsole(t, ta, "svc", 1)
	if err := ta.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Fatalf("VMM %d survived the agent's shutdown", pid)
	}
	st, err := store.Open(ctx, store.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	r, err := st.GetVM(ctx, "svc")
	st.Close()
	if err != nil || r.Desired.Power != api.PowerRunning || r.Status.State != api.StateStopped || !strings.HasPrefix(r.Status.ExitReason, "agent shut down") {
		t.Fatalf("after shutdown: %+v %+v, %v", r.Desired, r.Status, err)
	}

	ta = startAgent(t, dir, withBin)
	v := waitVM(t, ta.cli, "svc", "running again", func(v api.VM) bool { return v.Status.State == api.StateRunning && v.Status.PID != pid })
	pid = v.Status.PID
	waitConsole(t, ta, "svc", 2) // booted before it is killed
	ta.Close()
	syscall.Kill(pid, syscall.SIGKILL)
	for alive(pid) {
		time.Sleep(10 * time.Millisecond)
	}
	ta = startAgent(t, dir, withBin)
	defer ta.Shutdown(ctx)
	v = waitVM(t, ta.cli, "svc", "restarted", func(v api.VM) bool {
		return v.Status.State == api.StateRunning && v.Status.PID != pid && v.Status.Restarts == 1
	})
	// The console log holds all three boots.
	waitConsole(t, ta, "svc", 3)
	if _, err := ta.cli.Action(ctx, "svc", "stop", 30*time.Second); err != nil {
		t.Fatal(err)
	}
}

// waitConsole waits until the VM's console shows n boots of the idle guest.
func waitConsole(t *testing.T, ta testAgent, name string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := ta.cli.Console(context.Background(), name)
		if err == nil && strings.Count(string(b), "UP\n") == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("console %s: %q, %v; want %d boots", filepath.Join(ta.cfg.StateDir, "vms", name, "console.log"), b, err, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
