package seccomp

import (
	"os"
	"os/exec"
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
