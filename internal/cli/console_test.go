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
)

// consoleLimit is how long followConsole lets a VMM run: a Linux test
// guest boots in seconds in a lab host; on kvm_pvm the longest of these
// tests (TestLinuxMigrationKeepsTCP) took 7 minutes in all.
const consoleLimit = 15 * time.Minute

// followConsole starts cmd (a VMM), calls onLine with every line of the
// guest console as it arrives, and returns the whole console, the VMM's
// stderr and its exit error once it has ended. A VMM still running after
// consoleLimit (only the process this test started) is asked for its
// goroutines (SIGQUIT, GOTRACEBACK=all), which the test logs, and killed
// 10 s later: a guest that waits forever on a device, or a VMM stuck
// stopping its devices, then says where instead of idling for the CI's
// whole limit.
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
	timer := time.AfterFunc(consoleLimit, func() {
		quit.Store(true)
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
		t.Errorf("%s: still running after %v; stopped with SIGQUIT; stderr:\n%s", cmd.Path, consoleLimit, errBuf.String())
	}
	return con.String(), errBuf.String(), err
}
