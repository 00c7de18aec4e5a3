package agent

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/jail"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/vmm"
)

// TestAgentJailsVMMs: the agent starts its VMMs jailed and filtered by
// default; one that makes a syscall off its allow-list (the VMM's
// test-only hook) is reported as killed by its seccomp filter, with the
// syscall.
func TestAgentJailsVMMs(t *testing.T) {
	kvmtest.Require(t)
	requireCgroup2(t)
	bin := govisorBin(t)
	dir := t.TempDir()
	ta := startAgent(t, dir, func(c *Config) { c.Executable = bin })
	defer ta.Shutdown(context.Background())
	ctx := context.Background()
	idle := writeGuest(t, dir, "idle.elf", idleGuest("UP\n"))
	if _, err := ta.cli.CreateVM(ctx, spec("jailed", idle, api.RestartNever), true); err != nil {
		t.Fatal(err)
	}
	v := waitVM(t, ta.cli, "jailed", "running", func(v api.VM) bool { return v.Status.State == api.StateRunning })
	waitConsole(t, ta, "jailed", 1)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", v.Status.PID))
	if err != nil {
		t.Fatal(err)
	}
	st := string(b)
	for _, want := range []string{"\nSeccomp:\t2\n", "\nNoNewPrivs:\t1\n", "\nCapEff:\t0000000000000000\n"} {
		if !strings.Contains(st, want) {
			t.Errorf("the agent's VMM lacks %q:\n%s", strings.TrimSpace(want), st)
		}
	}
	if strings.Contains(st, "\nUid:\t0\t") {
		t.Errorf("the agent's VMM runs as root:\n%s", st)
	}
	cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", v.Status.PID))
	if !strings.Contains(string(cg), "/govisor/") {
		t.Errorf("the agent's VMM is in cgroup %q", cg)
	}

	t.Setenv(vmm.TestSeccompViolation, "1") // the agent's next VMMs inherit it
	if _, err := ta.cli.CreateVM(ctx, spec("sigsys", idle, api.RestartNever), true); err != nil {
		t.Fatal(err)
	}
	v = waitVM(t, ta.cli, "sigsys", "ended by its filter", func(v api.VM) bool { return v.Status.State == api.StateFailed })
	want := "killed by its seccomp filter (SIGSYS): syscall 163 (acct)"
	if !strings.Contains(v.Status.ExitReason, want) {
		t.Fatalf("exit reason %q, want %q", v.Status.ExitReason, want)
	}
	t.Logf("reported: %s", v.Status.ExitReason)
}

// requireCgroup2 mounts cgroup v2 where it is not (the lab's initramfs
// does not mount it): jailed VMMs get their limits there.
func requireCgroup2(t *testing.T) {
	t.Helper()
	if !jail.CgroupV2() {
		if err := unix.Mount("cgroup2", jail.CgroupRoot, "cgroup2", 0, ""); err != nil {
			t.Fatalf("mount cgroup2: %v", err)
		}
	}
}
