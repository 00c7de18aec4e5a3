package cli

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/hostcpu"
)

// consoleLimit is how long followConsole lets a VMM run: a Linux test
// guest boots in seconds in a lab host, and the longest of these tests
// takes about a minute there; on kvm_pvm (software KVM) the longest
// (TestLinuxMigrationKeepsTCP) took 7 minutes in all.
func consoleLimit() time.Duration {
	if hostcpu.SoftwareKVM() {
		return 15 * time.Minute
	}
	return 5 * time.Minute
}

// followConsole starts cmd (a VMM), calls onLine with every line of the
// guest console as it arrives, and returns the whole console, the VMM's
// stderr and its exit error once it has ended. A VMM still running after
// consoleLimit (only the process this test started) is asked for its
// machine report (SIGUSR1: vCPU registers, virtio queue positions), then
// for its goroutines (SIGQUIT, GOTRACEBACK=all), and killed 10 s later;
// the test logs the console's last lines and all that: a guest that waits
// forever on a device, or a VMM stuck stopping its devices, then says
// where instead of idling for the CI's whole limit.
func followConsole(t *testing.T, cmd *exec.Cmd, onLine func(line string)) (console, stderr string, err error) {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errBuf bytes.Buffer
	cmd.Stderr = &errBuf
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, "GOTRACEBACK=all")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var quit atomic.Bool
	limit := consoleLimit()
	timer := time.AfterFunc(limit, func() {
		quit.Store(true)
		cmd.Process.Signal(syscall.SIGUSR1)
		time.Sleep(25 * time.Second) // the report takes 2 s, 20 s more if the machine does not pause
		cmd.Process.Signal(syscall.SIGQUIT)
		time.AfterFunc(10*time.Second, func() { cmd.Process.Kill() })
	})
	defer timer.Stop()
	var con strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		con.WriteString(sc.Text() + "\n")
		if onLine != nil {
			onLine(sc.Text())
		}
	}
	err = cmd.Wait()
	if quit.Load() {
		lines := strings.Split(strings.TrimRight(con.String(), "\n"), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		t.Errorf("%s: still running after %v; its console's last lines:\n%s\nstopped with SIGUSR1 (machine report) and SIGQUIT; stderr:\n%s",
			cmd.Path, limit, strings.Join(lines, "\n"), errBuf.String())
	}
	return con.String(), errBuf.String(), err
}
