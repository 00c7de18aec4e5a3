package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

// serveProc is a `govisor serve` process under test.
type serveProc struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
}

func startServe(t *testing.T, stateDir, sock string, extra ...string) *serveProc {
	t.Helper()
	args := append([]string{"serve", "--state-dir", stateDir, "--socket", sock, "--host-name", "clihost",
		"--log-format", "text", "--stop-timeout", "5s"}, extra...)
	s := &serveProc{cmd: exec.Command(govisorBin(t), args...)}
	s.cmd.Stderr = &s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		killVMMs(stateDir)
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, _, code := runGovisor(t, "host", "show", "--socket", sock); code == 0 {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("govisor serve did not come up:\n%s", s.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and expects a clean exit.
func (s *serveProc) stop(t *testing.T) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	if err := s.cmd.Wait(); err != nil {
		t.Fatalf("govisor serve after SIGTERM: %v\n%s", err, s.stderr.String())
	}
}

// killVMMs kills VMM processes left by the agent of stateDir (argv[0]
// "govisor-vmm:<agent id>:<vm>"), so that a failed test leaks none.
func killVMMs(stateDir string) {
	id, err := os.ReadFile(filepath.Join(stateDir, "agent-id"))
	if err != nil {
		return
	}
	prefix := []byte("govisor-vmm:" + strings.TrimSpace(string(id)) + ":")
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && bytes.HasPrefix(b, prefix) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func getVM(t *testing.T, sock, name string) api.VM {
	t.Helper()
	out, errOut, code := runGovisor(t, "vm", "show", name, "-o", "json", "--socket", sock)
	if code != 0 {
		t.Fatalf("vm show %s: exit %d: %s", name, code, errOut)
	}
	var v api.VM
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("vm show -o json: %v\n%s", err, out)
	}
	return v
}

// TestServeAndVMCommands drives `govisor serve` and `govisor vm` as a user
// would: two VMs from YAML files, their consoles, an agent restart that
// keeps them running (adopted), stop, delete, and the exit codes of errors.
func TestServeAndVMCommands(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	state, sock := filepath.Join(dir, "state"), filepath.Join(dir, "api.sock")
	srv := startServe(t, state, sock, "--on-exit", "keep")
	gov := func(args ...string) (string, string, int) {
		return runGovisor(t, append(args, "--socket", sock)...)
	}
	for _, name := range []string{"one", "two"} {
		var a kvmtest.Asm
		a.Print("UP-" + name + "\n")
		l := a.Len()
		a.Hlt().JmpBack(l)
		os.WriteFile(filepath.Join(dir, name+".elf"), kvmtest.PVHELF(a.B, 0x100000), 0o644)
		def := "name: " + name + "\nmemory: 64M\nkernel: " + name + ".elf\nboot: pvh\ndebugExit: true\nrestartPolicy: never\n"
		os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(def), 0o644)
	}
	os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("name: bad\nkernel: one.elf\nfrobnicate: 1\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "nokernel.yaml"), []byte("name: nok\nkernel: missing.elf\n"), 0o644)

	if out, errOut, code := gov("vm", "create", "-f", filepath.Join(dir, "one.yaml")); code != 0 || !strings.HasPrefix(out, "vm one created on ") {
		t.Fatalf("vm create: exit %d, %q %q", code, out, errOut)
	}
	for _, want := range []string{"created", "unchanged"} {
		if out, errOut, code := gov("vm", "apply", "-f", filepath.Join(dir, "two.yaml")); code != 0 || out != "vm two "+want+"\n" {
			t.Fatalf("vm apply: exit %d, %q %q; want %s", code, out, errOut, want)
		}
	}
	errCases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"vm", "create", "-f", filepath.Join(dir, "one.yaml")}, 4, "already taken"},
		{[]string{"vm", "create", "-f", filepath.Join(dir, "bad.yaml")}, 2, "frobnicate"},
		{[]string{"vm", "create", "-f", filepath.Join(dir, "nokernel.yaml")}, 2, "kernel: "},
		{[]string{"vm", "show", "ghost"}, 3, "not found"},
		{[]string{"vm", "list", "-o", "xml"}, 2, "use table, json or yaml"},
	}
	for _, c := range errCases {
		if _, errOut, code := gov(c.args...); code != c.code || !strings.Contains(errOut, c.msg) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", c.args, code, errOut, c.code, c.msg)
		}
	}
	if _, errOut, code := runGovisor(t, "vm", "list", "--socket", filepath.Join(dir, "nobody.sock")); code != 6 || !strings.Contains(errOut, "govisor serve") {
		t.Errorf("no agent: exit %d, %q", code, errOut)
	}

	pids := map[string]int{}
	for _, name := range []string{"one", "two"} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			v := getVM(t, sock, name)
			con, _, _ := gov("vm", "console", "--log", name)
			if v.Status.State == api.StateRunning && strings.Contains(con, "UP-"+name) {
				pids[name] = v.Status.PID
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %+v, console %q", name, v.Status, con)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	out, _, _ := gov("vm", "list")
	if !strings.HasPrefix(out, "NAME ") || !strings.Contains(out, "one ") || !strings.Contains(out, "running") {
		t.Errorf("vm list:\n%s", out)
	}

	// Restart the agent: the VMs keep their VMM processes.
	srv.stop(t)
	srv = startServe(t, state, sock)
	for name, pid := range pids {
		if v := getVM(t, sock, name); v.Status.State != api.StateRunning || v.Status.PID != pid {
			t.Fatalf("%s after agent restart: %+v, want running as pid %d", name, v.Status, pid)
		}
	}
	if _, errOut, code := gov("vm", "delete", "one"); code != 4 || !strings.Contains(errOut, "stop it first") {
		t.Errorf("delete running VM: exit %d, %q", code, errOut)
	}
	if out, errOut, code := gov("vm", "stop", "one"); code != 0 || !strings.Contains(out, "stopped") {
		t.Fatalf("vm stop: exit %d, %q %q", code, out, errOut)
	}
	if out, errOut, code := gov("vm", "stop", "two", "--force"); code != 0 || !strings.Contains(out, "stopped") {
		t.Fatalf("vm stop --force: exit %d, %q %q", code, out, errOut)
	}
	for _, name := range []string{"one", "two"} {
		if _, errOut, code := gov("vm", "delete", name); code != 0 {
			t.Fatalf("vm delete %s: exit %d, %q", name, code, errOut)
		}
	}
	if out, _, code := gov("vm", "list", "-o", "yaml"); code != 0 || strings.TrimSpace(out) != "items: []" {
		t.Errorf("vm list -o yaml after deletes: %q", out)
	}
	if out, _, code := gov("host", "show"); code != 0 || !strings.Contains(out, "clihost") {
		t.Errorf("host show: %q", out)
	}
	if out, _, code := gov("host", "list"); code != 0 || !strings.HasPrefix(out, "NAME") || !strings.Contains(out, "clihost") {
		t.Errorf("host list: %q", out)
	}
	srv.stop(t)
}
