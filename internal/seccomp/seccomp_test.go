package seccomp

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"": ModeOff, "off": ModeOff, "kill": ModeKill, "log": ModeLog} {
		if m, err := ParseMode(in); err != nil || m != want {
			t.Errorf("ParseMode(%q) = %q, %v", in, m, err)
		}
	}
	if _, err := ParseMode("trap"); err == nil {
		t.Error("ParseMode(trap) took it")
	}
}

func TestParseViolation(t *testing.T) {
	log := "govisor: something\nSIGSYS: bad system call\nPC=0x47c0ee m=0 sigcode=1\n\ngoroutine 1 gp=0xc000002380 m=0 mp=0x5f1c40 [syscall]:\n" +
		"syscall.Syscall(0xa3, 0x0, 0x0, 0x0)\n\nrax    0xa3\nrbx    0x0\n"
	v, ok := ParseViolation([]byte(log))
	if !ok || v.Nr != 163 || v.Name != "acct" || v.String() != "syscall 163 (acct)" {
		t.Fatalf("ParseViolation = %+v, %v", v, ok)
	}
	if _, ok := ParseViolation([]byte("panic: something else\n")); ok {
		t.Fatal("a panic is not a seccomp violation")
	}
}

// helperEnv makes the test binary, run again, install the filter and make
// a forbidden syscall (TestFilterEndsProcess).
const helperEnv = "GOVISOR_SECCOMP_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "vcpu" {
		vcpuHelper()
	}
	if os.Getenv(helperEnv) == "1" {
		if err := Install(ModeKill); err != nil {
			os.Stderr.WriteString("install: " + err.Error() + "\n")
			os.Exit(3)
		}
		unix.Syscall(unix.SYS_ACCT, 0, 0, 0)
		os.Stderr.WriteString("the filter let acct(2) through\n")
		os.Exit(4)
	}
	os.Exit(m.Run())
}

// TestFilterEndsProcess installs the real filter (the runtime's list only)
// in a child process: the first forbidden syscall ends it, its report
// names the syscall, and a Go program keeps running under the filter up
// to that point (the runtime's own syscalls are on the list).
func TestFilterEndsProcess(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err == nil || strings.Contains(string(out), "let acct(2) through") || strings.Contains(string(out), "install:") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	v, ok := ParseViolation(out)
	if !ok || v.Name != "acct" {
		t.Fatalf("report %+v, %v:\n%s", v, ok, out)
	}
}

// vcpuHelper installs the process filter, then the vCPU filter on one
// locked thread: socket(2), on the process's list but not the vCPU
// threads', works on another thread and ends the process on the locked
// one.
func vcpuHelper() {
	if err := Install(ModeKill); err != nil {
		os.Stderr.WriteString("install: " + err.Error() + "\n")
		os.Exit(3)
	}
	ready, done := make(chan error), make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: the thread is filtered
		ok, err := InstallVCPU()
		if err == nil && !ok {
			err = errors.New("no vCPU filter under a kill process filter")
		}
		ready <- err
		<-done
		os.Stderr.WriteString("vCPU thread: calling socket(2)\n")
		unix.Syscall(unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_STREAM, 0)
		os.Stderr.WriteString("the vCPU filter let socket(2) through\n")
		os.Exit(4)
	}()
	if err := <-ready; err != nil {
		os.Stderr.WriteString("install vCPU: " + err.Error() + "\n")
		os.Exit(3)
	}
	fd, _, errno := unix.Syscall(unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if errno != 0 {
		os.Stderr.WriteString("socket(2) on another thread: " + errno.Error() + "\n")
		os.Exit(5)
	}
	unix.Close(int(fd))
	os.Stderr.WriteString("socket(2) on another thread: allowed\n")
	close(done)
	select {}
}

// TestVCPUFilterIsPerThread: the vCPU filter binds the thread that
// installs it and no other (no TSYNC), and on that thread a syscall off
// the vCPU list ends the process with the usual report.
func TestVCPUFilterIsPerThread(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=vcpu")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "on another thread: allowed") || strings.Contains(string(out), "let socket(2) through") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	v, ok := ParseViolation(out)
	if !ok || v.Name != "socket" {
		t.Fatalf("report %+v, %v:\n%s", v, ok, out)
	}
}

// TestInstallVCPUWithoutProcessFilter: no process filter, no vCPU filter
// (the VMM's --seccomp=off, and unit tests that run machines).
func TestInstallVCPUWithoutProcessFilter(t *testing.T) {
	if ok, err := InstallVCPU(); ok || err != nil {
		t.Fatalf("InstallVCPU before Install: %v %v", ok, err)
	}
}
