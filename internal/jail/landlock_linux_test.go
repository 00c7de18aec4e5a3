package jail

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestLandlockRules runs the rules the jail gives a VMM, on a child of the
// test (Landlock binds a process for good): files may be made only in the
// VM's folder, and only the VMM binary executed. Where the kernel lacks
// Landlock, restrict must say so by returning 0, and nothing is checked.
func TestLandlockRules(t *testing.T) {
	if os.Getenv("JAIL_LANDLOCK_CHILD") == "1" {
		landlockChild()
		return
	}
	if abi, err := landlockABI(); abi == 0 {
		if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) {
			if abi, err := restrict(nil); abi != 0 || err != nil {
				t.Fatalf("without Landlock: %d %v, want 0 and no error", abi, err)
			}
			t.Skipf("no Landlock here: %v", err) // the lab's kernel has it: jail_test covers it there
		}
		t.Fatal(err)
	}
	dir, other := t.TempDir(), t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLandlockRules$", "-test.v")
	cmd.Env = append(os.Environ(), "JAIL_LANDLOCK_CHILD=1", "JAIL_LANDLOCK_DIR="+dir, "JAIL_LANDLOCK_OTHER="+other)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

func landlockChild() {
	runtime.LockOSThread()
	fail := func(f string, args ...any) {
		os.Stderr.WriteString("FAIL: " + f + "\n")
		os.Exit(1)
	}
	dir, other := os.Getenv("JAIL_LANDLOCK_DIR"), os.Getenv("JAIL_LANDLOCK_OTHER")
	exe, _ := os.Executable()
	script := filepath.Join(dir, "script")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexit 0\n"), 0o700); err != nil {
		fail("write the script")
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fail("no_new_privs")
	}
	s := Spec{Dir: dir}
	rules := landlockRules(s)
	rules[2].path = exe // ExePath, as the jail binds it
	if _, err := restrict(rules); err != nil {
		fail(err.Error())
	}
	if err := os.WriteFile(filepath.Join(dir, "new"), nil, 0o600); err != nil {
		fail("a file in the VM's folder: " + err.Error())
	}
	if err := os.WriteFile(filepath.Join(other, "new"), nil, 0o600); !errors.Is(err, os.ErrPermission) {
		fail("a file outside the VM's folder was made")
	}
	if err := unix.Mknod(filepath.Join(dir, "kvm"), unix.S_IFCHR|0o600, 0); err == nil {
		fail("a device node was made")
	}
	if err := exec.Command(script).Run(); !errors.Is(err, os.ErrPermission) {
		fail("a script in the VM's folder ran: " + errString(err))
	}
	if _, err := os.ReadFile(exe); err != nil {
		fail("reading: " + err.Error())
	}
	os.Stdout.WriteString("the child's Landlock rules held\n")
	os.Exit(0)
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}
