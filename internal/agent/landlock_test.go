package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/jail"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/vmm"
)

// TestAgentJailLandlock: where the kernel has Landlock (the lab's does),
// the agent's jailed VMM is confined by it: its test-only probe cannot
// execute a script it wrote in its own folder, and its GET /vm and log
// say so. Where the kernel lacks it, the VMM reports that instead.
func TestAgentJailLandlock(t *testing.T) {
	kvmtest.Require(t)
	if !jail.CgroupV2() { // the lab's initramfs does not mount it
		if err := unix.Mount("cgroup2", jail.CgroupRoot, "cgroup2", 0, ""); err != nil {
			t.Fatalf("mount cgroup2: %v", err)
		}
	}
	_, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	has := errno == 0
	lsm, _ := os.ReadFile("/sys/kernel/security/lsm")
	t.Logf("kernel LSMs %q; Landlock: %v", strings.TrimSpace(string(lsm)), has)
	bin := govisorBin(t)
	dir := t.TempDir()
	t.Setenv(vmm.TestLandlockProbe, "1") // the agent's VMMs inherit it
	ta := startAgent(t, dir, func(c *Config) { c.Executable = bin })
	defer ta.Shutdown(context.Background())
	ctx := context.Background()
	idle := writeGuest(t, dir, "idle.elf", idleGuest("UP\n"))
	if _, err := ta.cli.CreateVM(ctx, spec("landlocked", idle, api.RestartNever), true); err != nil {
		t.Fatal(err)
	}
	waitVM(t, ta.cli, "landlocked", "running", func(v api.VM) bool { return v.Status.State == api.StateRunning })
	waitConsole(t, ta, "landlocked", 1)
	waitVMMAPI(t, ta, "landlocked")
	info, err := ta.vmm("landlocked").Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	log, _ := os.ReadFile(filepath.Join(ta.vmDir("landlocked"), "vmm.log"))
	t.Logf("GET /vm landlock: %q", info.Landlock)
	if has {
		if !strings.HasPrefix(info.Landlock, "abi ") {
			t.Errorf("GET /vm says Landlock %q on a kernel that has it", info.Landlock)
		}
		if !strings.Contains(string(log), "govisor jail: Landlock abi ") || !strings.Contains(string(log), vmm.LandlockProbeRefused) {
			t.Errorf("the VMM log lacks Landlock and its refusal:\n%s", log)
		}
	} else {
		if !strings.HasPrefix(info.Landlock, "off: ") {
			t.Errorf("GET /vm says Landlock %q on a kernel without it", info.Landlock)
		}
		if !strings.Contains(string(log), "govisor jail: Landlock off: ") {
			t.Errorf("the VMM log does not say Landlock is off:\n%s", log)
		}
	}
}
