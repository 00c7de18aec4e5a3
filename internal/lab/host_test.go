package lab

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// requireLab returns the lab assets; without QEMU or assets it skips,
// except in CI, where the lab is what the KVM tests run on.
func requireLab(t *testing.T) Assets {
	t.Helper()
	cache := os.Getenv("GOVISOR_CACHE")
	if cache == "" {
		cache = filepath.Join("..", "..", ".cache")
	}
	a, err := FindAssets(filepath.Join(cache, "lab"))
	if err == nil {
		_, err = exec.LookPath("qemu-system-x86_64")
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("FAILED: the lab is needed in CI: %v", err)
		}
		t.Skipf("SKIPPED: no lab here: %v", err)
	}
	return a
}

// waitConsole waits until the host's console shows want.
func waitConsole(t *testing.T, h *Host, want string, limit time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(limit); ; time.Sleep(100 * time.Millisecond) {
		b, _ := os.ReadFile(h.Console)
		if strings.Contains(string(b), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q on the lab host's console after %v:\n%s", want, limit, b)
		}
	}
}

// TestStuckLabIsReported boots a lab host, freezes it (the QEMU monitor's
// stop, as a lab whose vCPUs spin forever would look), and checks that the
// silence is noticed and that the report shows what QEMU was doing.
func TestStuckLabIsReported(t *testing.T) {
	a := requireLab(t)
	ov := &Overlay{}
	ov.AddData("/run.sh", []byte("#!/bin/sh\necho RUN-STARTED\nsleep 600\n"), 0o755)
	h, err := Start(HostConfig{Name: "stuck", Dir: t.TempDir(), CPUs: 1, MemoryMB: 512, Assets: a, Accel: PickAccel(), Overlay: ov})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Kill()
	waitConsole(t, h, "RUN-STARTED", 2*time.Minute)
	if b, _ := os.ReadFile(h.Console); !strings.Contains(string(b), "LAB-KVM present") {
		t.Errorf("the lab host has no /dev/kvm:\n%s", b)
	}
	if _, err := h.HMP("stop"); err != nil {
		t.Fatal(err)
	}
	select {
	case why := <-watchConsole(h, 8*time.Second):
		if !strings.Contains(why, "no heartbeat") {
			t.Errorf("stuck report %q", why)
		}
	case <-time.After(time.Minute):
		t.Fatal("a frozen lab host was not reported within a minute")
	case <-h.Done():
		t.Fatal("QEMU ended")
	}
	report := diagnose(h)
	// Each vCPU's registers: in the lab kernel (at its unrandomized
	// addresses) or in a user process the stop caught.
	for _, want := range []string{"VM status: paused", "RIP=", "RUN-STARTED"} {
		if !strings.Contains(report, want) {
			t.Errorf("the report lacks %q:\n%s", want, report)
		}
	}
	if strings.Contains(report, "CPL=0") && !strings.Contains(report, "RIP=ffffffff8") {
		t.Errorf("a vCPU in the kernel, but not at the kernel's unrandomized addresses (nokaslr):\n%s", report)
	}
}

// TestRunTestLabHostFailure runs a "test binary" that panics the lab
// host's kernel: RunTest says it is the lab's failure, tries a fresh lab
// host once, and then fails naming both failures.
func TestRunTestLabHostFailure(t *testing.T) {
	a := requireLab(t)
	bin := filepath.Join(t.TempDir(), "panics.test")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho PANICKING\nsleep 1\necho c > /proc/sysrq-trigger\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var out, msgs strings.Builder
	cache := t.TempDir()
	abs, err := filepath.Abs(a.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(abs, filepath.Join(cache, "lab")); err != nil {
		t.Fatal(err)
	}
	rc, err := RunTest(TestExec{Cache: cache, Package: "./fake", Stdout: &out, Stderr: &msgs}, bin, nil)
	if rc == 0 || err == nil || !strings.Contains(err.Error(), "failed twice") || !strings.Contains(err.Error(), "Kernel panic") {
		t.Errorf("RunTest: rc %d, err %v", rc, err)
	}
	if got := strings.Count(msgs.String(), "LAB HOST FAILURE"); got != 1 {
		t.Errorf("%d LAB HOST FAILURE lines, want 1:\n%s", got, msgs.String())
	}
	// sleep 1 in the script: the line reaches the serial port before the panic.
	if strings.Count(out.String(), "PANICKING") != 2 {
		t.Errorf("the test's output: %q", out.String())
	}
}
