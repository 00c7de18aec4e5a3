package kvmtest

import (
	"os"
	"path/filepath"
	"testing"
)

// LinuxCmdline is the kernel command line tests boot the minimal guest
// with: quiet (each console byte is a VM exit) and rodata=off (write-protecting
// the kernel text walks page tables, a minute of emulation on kvm_pvm).
const LinuxCmdline = "console=ttyS0 quiet rodata=off"

// LinuxGuest returns the paths of the minimal test kernel and initramfs built
// by `make guest` (guest/build.sh). It fails the test, naming the fix, when
// they are missing: a machine with KVM must run the Linux boot tests.
func LinuxGuest(t testing.TB) (kernel, initrd string) {
	t.Helper()
	Require(t)
	dir := os.Getenv("GOVISOR_GUEST_DIR")
	if dir == "" {
		if c := os.Getenv("GOVISOR_CACHE"); c != "" {
			dir = filepath.Join(c, "guest")
		} else if root := repoRoot(); root != "" {
			dir = filepath.Join(root, ".cache", "guest")
		}
	}
	kernel, initrd = filepath.Join(dir, "bzImage"), filepath.Join(dir, "initrd.cpio")
	for _, p := range []string{kernel, initrd} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("test guest missing (%v): run `make guest` (guest/build.sh) first", err)
		}
	}
	return kernel, initrd
}

func repoRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}
