package kvmtest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// LinuxCmdline is the kernel command line tests boot the minimal guest
// with: quiet (each console byte is a VM exit) and rodata=off (write-protecting
// the kernel text walks page tables, a minute of emulation on kvm_pvm).
const LinuxCmdline = "console=ttyS0 quiet rodata=off"

// LinuxSlots is how many Linux test guests may boot at once on this host,
// across every test process (go test runs packages in parallel). On
// kvm_pvm the guest kernel is emulated on the host CPUs, and more guests
// than CPUs make guest spinlocks and timers crawl (seen: boots that never
// finish), so the default is the CPU count.
var LinuxSlots = runtime.NumCPU()

// LinuxGuest returns the paths of the minimal test kernel and initramfs built
// by `make guest` (guest/build.sh), after taking one of LinuxSlots boot slots
// for the rest of the test. It fails the test, naming the fix, when they are
// missing: a machine with KVM must run the Linux boot tests.
func LinuxGuest(t testing.TB) (kernel, initrd string) {
	t.Helper()
	Require(t)
	acquireSlot(t)
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

// acquireSlot takes a host-wide boot slot: an exclusive flock on one of
// LinuxSlots files in the temp dir, released when the test ends.
func acquireSlot(t testing.TB) {
	t.Helper()
	start := time.Now()
	for {
		for i := 0; i < max(LinuxSlots, 1); i++ {
			path := filepath.Join(os.TempDir(), fmt.Sprintf("govisor-linux-slot-%d", i))
			f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
			if err != nil {
				t.Fatalf("boot slot: %v", err)
			}
			if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
				if d := time.Since(start); d > time.Second {
					t.Logf("waited %v for a Linux boot slot", d.Round(time.Second))
				}
				t.Cleanup(func() { f.Close() }) // closing releases the lock
				return
			}
			f.Close()
		}
		time.Sleep(500 * time.Millisecond)
	}
}
