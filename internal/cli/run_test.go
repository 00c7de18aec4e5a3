package cli

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

// govisorBin is the real binary, built once (or prebuilt, see
// kvmtest.Binary), so the tests see exactly what users run; govisor-agent
// sits next to it, as installed: `govisor serve` runs it.
func govisorBin(t *testing.T) string {
	t.Helper()
	return kvmtest.Binary(t, "govisor", "github.com/govisor/govisor/cmd/govisor")
}

// runGovisor runs the govisor binary with args for at most 2 minutes.
func runGovisor(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runGovisorFor(t, 2*time.Minute, args...)
}

// runGovisorFor is runGovisor with the time limit limit.
func runGovisorFor(t *testing.T, limit time.Duration, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, govisorBin(t), args...)
	// A run that hangs is asked for its goroutines (SIGQUIT) before it is
	// killed: where each vCPU was (in KVM_RUN or in a device) is what the
	// next look at a stuck guest needs.
	cmd.Env = append(os.Environ(), "GOTRACEBACK=all")
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	cmd.WaitDelay = 10 * time.Second
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Logf("govisor %s: still running after %v; stopped with SIGQUIT", strings.Join(args, " "), limit)
	}
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run govisor: %v", err)
	}
	return o.String(), e.String(), code
}

func TestRunTinyPVHGuest(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	elf := filepath.Join(dir, "tiny.elf")
	if err := os.WriteFile(elf, kvmtest.PVHELF(kvmtest.MarkerGuest("TINY-MARKER\n"), 0x100000), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runGovisor(t, "run", "--kernel", elf, "--boot", "pvh", "--debug-exit", "--memory", "64M")
	if code != 0 || out != "TINY-MARKER\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestRunErrors(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	notKernel := filepath.Join(dir, "notes.txt")
	os.WriteFile(notKernel, []byte("just some text, not a kernel image at all\n"), 0o644)
	elf := filepath.Join(dir, "tiny.elf")
	os.WriteFile(elf, kvmtest.PVHELF(kvmtest.MarkerGuest("x"), 0x100000), 0o644)
	huge := filepath.Join(dir, "huge.cpio")
	f, _ := os.Create(huge)
	f.Truncate(80 << 20)
	f.Close()
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no kernel", []string{"run"}, "--kernel is required"},
		{"missing kernel", []string{"run", "--kernel", filepath.Join(dir, "nope")}, "no such file"},
		{"not a kernel", []string{"run", "--kernel", notKernel}, "not a Linux kernel image"},
		{"unknown flag", []string{"run", "--kernel", elf, "--frobnicate"}, "unknown flag: --frobnicate"},
		{"bad memory", []string{"run", "--kernel", elf, "--memory", "lots"}, "give a size such as 512M"},
		{"too much memory", []string{"run", "--kernel", elf, "--memory", "64T"}, "more than this host"},
		{"too many cpus", []string{"run", "--kernel", elf, "--cpus", "65"}, "give 1 to 64"},
		{"initrd too big", []string{"run", "--kernel", elf, "--boot", "pvh", "--memory", "64M", "--initrd", huge}, "initrd"},
		{"bad boot mode", []string{"run", "--kernel", elf, "--boot", "bios"}, "use linux64 or pvh"},
	}
	for _, c := range cases {
		_, errOut, code := runGovisor(t, c.args...)
		if code == 0 || !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") > 2 {
			t.Errorf("%s: exit %d, stderr %q; want a non-zero exit and one message containing %q", c.name, code, errOut, c.want)
		}
	}
}

func TestProbe(t *testing.T) {
	kvmtest.Require(t)
	out, errOut, code := runGovisor(t, "probe")
	if code != 0 || !strings.Contains(out, "CPU template:") || !strings.Contains(out, "+irqchip") {
		t.Fatalf("probe: exit %d\n%s%s", code, out, errOut)
	}
}

// TestLinuxRebootRestarts boots Linux without ACPI, so the guest's final
// `reboot -f` resets the machine; govisor must boot it again (a second
// GUEST-READY) and end cleanly on SIGTERM.
func TestLinuxRebootRestarts(t *testing.T) {
	t.Parallel() // each boots Linux: minutes on kvm_pvm
	kernel, initrd := kvmtest.LinuxGuest(t)
	cmd := exec.Command(govisorBin(t), "run", "--kernel", kernel, "--initrd", initrd, "--memory", "256M",
		"--cmdline", kvmtest.LinuxCmdline+" acpi=off run=true")
	ready := 0
	console, stderr, err := followConsole(t, cmd, func(line string) {
		if strings.Contains(line, "GUEST-READY") {
			ready++
			if ready == 2 {
				cmd.Process.Signal(syscall.SIGTERM)
			}
		}
	})
	if ready < 2 {
		t.Fatalf("guest booted %d times, want 2 (restart after reboot); err %v\nconsole:\n%s\nstderr:\n%s", ready, err, console, stderr)
	}
	if !strings.Contains(stderr, "guest rebooted") {
		t.Errorf("stderr does not report the reboot: %q", stderr)
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 128+int(syscall.SIGTERM) {
		t.Errorf("exit after SIGTERM: %v, want code %d", err, 128+int(syscall.SIGTERM))
	}
}
