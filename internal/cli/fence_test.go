package cli

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/disklease"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

// spinGuest is a PVH guest that prints marker and then spins forever: it
// ends only when the VMM stops it.
func spinGuest(t *testing.T, marker string) string {
	t.Helper()
	var a kvmtest.Asm
	a.Print(marker + "\n")
	a.SpinForever(func(*kvmtest.Asm) {}, func(a *kvmtest.Asm) { a.Pause() })
	code := a.B
	elf := filepath.Join(t.TempDir(), "spin.elf")
	if err := os.WriteFile(elf, kvmtest.PVHELF(code, 0x100000), 0o644); err != nil {
		t.Fatal(err)
	}
	return elf
}

// startSpinning starts govisor run with args and waits for the guest's
// marker; the returned channel yields the exit status and stderr.
func startSpinning(t *testing.T, marker string, args ...string) (*exec.Cmd, <-chan runResult) {
	t.Helper()
	cmd := exec.Command(govisorBin(t), append([]string{"run", "--boot", "pvh", "--memory", "64M"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	up := make(chan bool, 1)
	done := make(chan runResult, 1)
	go func() {
		sc := bufio.NewScanner(out)
		seen := false
		for sc.Scan() {
			if !seen && strings.Contains(sc.Text(), marker) {
				seen = true
				up <- true
			}
		}
		err := cmd.Wait()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if !seen {
			up <- false
		}
		done <- runResult{code: code, stderr: stderr.String()}
	}()
	select {
	case ok := <-up:
		if !ok {
			r := <-done
			t.Fatalf("the guest never printed %q: exit %d, stderr %s", marker, r.code, r.stderr)
		}
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		r := <-done
		t.Fatalf("the guest did not print %q within a minute: exit %d, stderr %s", marker, r.code, r.stderr)
	}
	return cmd, done
}

type runResult struct {
	code   int
	stderr string
}

// TestRunFenceWatchdog: a VMM whose watchdog nobody feeds stops its guest
// and ends with status 3, saying why.
func TestRunFenceWatchdog(t *testing.T) {
	kvmtest.Require(t)
	elf := spinGuest(t, "FENCE-GUEST-UP")
	t0 := time.Now()
	_, done := startSpinning(t, "FENCE-GUEST-UP", "--kernel", elf, "--fence-ttl", "2s")
	select {
	case r := <-done:
		if r.code != 3 || !strings.Contains(r.stderr, "fenced: watchdog not fed for 2s") {
			t.Fatalf("exit %d, stderr %q; want exit 3 and the watchdog's reason", r.code, r.stderr)
		}
		if el := time.Since(t0); el < 2*time.Second {
			t.Errorf("fenced after %v, before its 2s TTL", el)
		}
	case <-time.After(time.Minute):
		t.Fatal("the VMM still runs a minute after its watchdog's 2s TTL")
	}
}

// TestRunFenceFed: fed through the API (govisor ctl fence), the watchdog
// keeps the guest running past its first TTL; disarmed, forever; armed
// again and left, it fires.
func TestRunFenceFed(t *testing.T) {
	kvmtest.Require(t)
	elf := spinGuest(t, "FED-GUEST-UP")
	sock := filepath.Join(t.TempDir(), "api.sock")
	_, done := startSpinning(t, "FED-GUEST-UP", "--kernel", elf, "--fence-ttl", "3s", "--api-sock", sock)
	ctl := func(args ...string) string {
		out, errOut, code := runGovisor(t, append([]string{"ctl", "--api-sock", sock, "fence"}, args...)...)
		if code != 0 {
			t.Fatalf("ctl fence %v: exit %d, %s", args, code, errOut)
		}
		return out
	}
	for deadline := time.Now().Add(7 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if out := ctl("3s"); !strings.Contains(out, `"armed": true`) {
			t.Fatalf("fence 3s answered %s", out)
		}
	}
	ctl("0")
	select {
	case r := <-done:
		t.Fatalf("the VMM ended while fed or disarmed: exit %d, %s", r.code, r.stderr)
	case <-time.After(4 * time.Second):
	}
	if out := ctl(); !strings.Contains(out, `"armed": false`) || !strings.Contains(out, `"fired": false`) {
		t.Fatalf("status after disarming: %s", out)
	}
	ctl("1s")
	select {
	case r := <-done:
		if r.code != 3 || !strings.Contains(r.stderr, "fenced: watchdog not fed for 1s") {
			t.Fatalf("exit %d, stderr %q; want exit 3 and the watchdog's reason", r.code, r.stderr)
		}
	case <-time.After(time.Minute):
		t.Fatal("the VMM still runs a minute after its watchdog's 1s TTL")
	}
}

// TestRunDiskLease: while one VMM holds its disk's lease a second VMM of
// another host cannot open the disk; once the first ends (releasing it),
// the second starts at once.
func TestRunDiskLease(t *testing.T) {
	kvmtest.Require(t)
	elf := spinGuest(t, "LEASE-GUEST-UP")
	disk := filepath.Join(t.TempDir(), "shared.raw")
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	first, firstDone := startSpinning(t, "LEASE-GUEST-UP", "--kernel", elf, "--disk", "path="+disk+",lease", "--lease-owner", "h1/web")
	if r, err := disklease.Inspect(disk); err != nil || r.Owner != (disklease.Owner{Host: "h1", VM: "web"}) {
		t.Fatalf("lease record while h1 runs: %+v %v", r, err)
	}
	_, errOut, code := runGovisor(t, "run", "--boot", "pvh", "--memory", "64M", "--kernel", elf,
		"--disk", "path="+disk+",lease", "--lease-owner", "h2/web")
	if code != 1 || !strings.Contains(errOut, "in use by VM web on host h1") {
		t.Fatalf("a second VMM on the held disk: exit %d, stderr %q; want exit 1 naming the holder", code, errOut)
	}
	first.Process.Signal(syscall.SIGTERM)
	if r := <-firstDone; r.code != 128+int(syscall.SIGTERM) {
		t.Fatalf("first VMM after SIGTERM: exit %d, stderr %q", r.code, r.stderr)
	}
	if r, _ := disklease.Inspect(disk); !r.Released {
		t.Errorf("lease not released when the VMM ended: %+v", r)
	}
	t0 := time.Now()
	second, secondDone := startSpinning(t, "LEASE-GUEST-UP", "--kernel", elf, "--disk", "path="+disk+",lease", "--lease-owner", "h2/web")
	if el := time.Since(t0); el > 30*time.Second {
		t.Logf("the second VMM took %v to start on a released lease", el)
	}
	second.Process.Signal(syscall.SIGTERM)
	<-secondDone
}
