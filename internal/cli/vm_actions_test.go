package cli

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

// runGovisorInput runs govisor with stdin from a pipe holding input.
func runGovisorInput(t *testing.T, input string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, govisorBin(t), args...)
	var o, e bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(input), &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run govisor: %v", err)
	}
	return o.String(), e.String(), code
}

// TestVMActionCommands drives `govisor vm console|pause|resume|snapshot|
// snapshots|restore|reboot|migrate|disk-attach|disk-detach` against `govisor serve` with a guest
// that echoes its serial input, including the exit codes of refusals.
func TestVMActionCommands(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	state, sock := filepath.Join(dir, "state"), filepath.Join(dir, "api.sock")
	startServe(t, state, sock)
	gov := func(args ...string) (string, string, int) {
		return runGovisor(t, append(args, "--socket", sock)...)
	}
	os.WriteFile(filepath.Join(dir, "echo.elf"), kvmtest.PVHELF(echoGuest(), 0x100000), 0o644)
	os.WriteFile(filepath.Join(dir, "extra.raw"), make([]byte, 1<<20), 0o644)
	def := "name: echo\nmemory: 64M\nkernel: echo.elf\nboot: pvh\ndebugExit: true\nrestartPolicy: never\nstopTimeout: 0s\n"
	os.WriteFile(filepath.Join(dir, "echo.yaml"), []byte(def), 0o644)
	if _, errOut, code := gov("vm", "create", "-f", filepath.Join(dir, "echo.yaml")); code != 0 {
		t.Fatalf("vm create: exit %d: %s", code, errOut)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		con, _, _ := gov("vm", "console", "--log", "echo")
		if getVM(t, sock, "echo").Status.State == api.StateRunning && strings.Contains(con, "READY") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("echo guest not ready: console %q", con)
		}
	}

	// The interactive console with pipes: input reaches the guest, its
	// echo comes back. The VMM's console socket may lag the process.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out, errOut, code := runGovisorInput(t, "typed-by-cli\n", "vm", "console", "echo", "--socket", sock)
		if code == 0 && strings.Contains(out, "typed-by-cli") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("vm console: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
	}

	steps := []struct {
		args []string
		code int
		want string // in stdout, or in stderr for a failure
	}{
		{[]string{"vm", "pause", "echo"}, 0, "vm echo: paused"},
		{[]string{"vm", "pause", "echo"}, 4, "it is paused; it must be running"},
		{[]string{"vm", "resume", "echo"}, 0, "vm echo: running"},
		{[]string{"vm", "snapshot", "echo", "s1"}, 0, "snapshot s1 saved in"},
		{[]string{"vm", "snapshot", "echo", "s1"}, 4, "already has a snapshot"},
		{[]string{"vm", "snapshots", "echo"}, 0, "s1"},
		{[]string{"vm", "restore", "echo", "s1"}, 0, "vm echo: running from snapshot s1"},
		{[]string{"vm", "restore", "echo", "nope"}, 2, "no such snapshot"},
		{[]string{"vm", "reboot", "echo"}, 0, "vm echo: running"},
		{[]string{"vm", "migrate", "echo", "--to", "nowhere"}, 2, "no live agent"},
		{[]string{"vm", "migrate", "echo"}, 2, "--to is required"},
		{[]string{"vm", "migrate", "echo", "--cancel"}, 4, "no migration of VM echo is running"},
		{[]string{"vm", "stop", "echo"}, 0, "stopped"},
		{[]string{"vm", "pause", "echo"}, 4, "it is stopped"},
		{[]string{"vm", "snapshot", "echo", "s2"}, 4, "it is stopped"},
		{[]string{"vm", "console", "echo"}, 4, "it is stopped"},
		{[]string{"vm", "disk-attach", "echo", filepath.Join(dir, "extra.raw"), "--readonly"}, 0, "extra.raw"},
		{[]string{"vm", "disk-attach", "echo", filepath.Join(dir, "missing.raw")}, 2, "missing.raw"},
		{[]string{"vm", "disk-detach", "echo", "1"}, 3, "has no disk \"1\": give an index from 0 to 0"},
		{[]string{"vm", "disk-detach", "echo", "first"}, 2, "give the disk's position"},
		{[]string{"vm", "disk-detach", "echo", "0"}, 0, "INDEX"},
		{[]string{"vm", "pause", "ghost"}, 3, "not found"},
	}
	for _, s := range steps {
		out, errOut, code := gov(s.args...)
		where := out
		if s.code != 0 {
			where = errOut
		}
		if code != s.code || !strings.Contains(where, s.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d and %q", s.args, code, out, errOut, s.code, s.want)
		}
	}
	if out, _, _ := gov("vm", "console", "--log", "echo"); strings.Count(out, "READY") != 2 {
		t.Errorf("console log: the guest booted %d times, want 2 (boot and reboot; the restore resumes)", strings.Count(out, "READY"))
	}
}
