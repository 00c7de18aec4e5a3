package lab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/govisor/govisor/internal/hostmem"
)

// testHostMemoryMB is the memory of the lab host a test binary runs in.
const testHostMemoryMB = 6144

// Slots is how many lab hosts of cpus vCPUs and memMB of memory this
// machine runs at once: one per cpus of its CPUs, as far as its memory
// goes, at least one. A TCG lab host's vCPU keeps one host CPU busy, and
// two of them on two CPUs finish in about the time one does; more than the
// machine's CPUs only slows every one of them (and their tests' timeouts
// are in wall time). GOVISOR_LAB_SLOTS=N overrides it (1: one at a time).
func Slots(cpus, memMB int) int {
	if n, err := strconv.Atoi(os.Getenv("GOVISOR_LAB_SLOTS")); err == nil && n > 0 {
		return n
	}
	return slotsFor(runtime.NumCPU(), int(hostmem.TotalMiB()), cpus, memMB)
}

func slotsFor(hostCPUs, hostMemMB, cpus, memMB int) int {
	n := hostCPUs / max(cpus, 1)
	if hostMemMB > 0 && memMB > 0 {
		// QEMU touches guest memory lazily, but a test may well use it all;
		// leave the machine a GiB of its own.
		n = min(n, (hostMemMB-1024)/memMB)
	}
	return max(n, 1)
}

// slotPath is the lock file of run slot i in the lab's assets folder:
// run.lock is slot 0, as when the lab ran one host at a time.
func slotPath(dir string, i int) string {
	if i == 0 {
		return filepath.Join(dir, "run.lock")
	}
	return filepath.Join(dir, fmt.Sprintf("run.lock.%d", i))
}

// takeSlot takes one of the n run slots, waiting until one is free, and
// returns the function that frees it. The slots are flocks: a process that
// dies frees its slot.
func takeSlot(dir string, n int) (func(), error) {
	for {
		for i := range n {
			unlock, err := lockFile(slotPath(dir, i), false)
			if err == nil {
				return unlock, nil
			}
			if !errors.Is(err, errBusy) {
				return nil, err
			}
		}
		time.Sleep(time.Second)
	}
}

// RunLock takes every run slot: a lab of several hosts (labtest, lab up in
// tests) runs alone, its hosts already more than the machine's CPUs. Call
// the returned function to release it.
func RunLock(a Assets) (func(), error) {
	n := Slots(DefaultCPUs(PickAccel()), testHostMemoryMB)
	var unlocks []func()
	release := func() {
		for _, u := range unlocks {
			u()
		}
	}
	// In slot order, like every other taker of more than one: no deadlock.
	for i := range n {
		u, err := lockFile(slotPath(a.Dir, i), true)
		if err != nil {
			release()
			return nil, err
		}
		unlocks = append(unlocks, u)
	}
	return release, nil
}

var errBusy = errors.New("lab: run slot busy")

// lockFile takes an exclusive flock on path: waiting for it, or failing
// with errBusy at once when another process holds it.
func lockFile(path string, wait bool) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	how := syscall.LOCK_EX
	if !wait {
		how |= syscall.LOCK_NB
	}
	for {
		err = syscall.Flock(int(f.Fd()), how)
		if err != syscall.EINTR {
			break
		}
	}
	if err == syscall.EWOULDBLOCK {
		f.Close()
		return nil, errBusy
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lab: lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// runDir returns the work folder of one lab host run of the package named
// name under runs, and the function that releases it: runs/NAME, or
// runs/NAME.2, .3, ... while another run of the same package (the race
// run's beside the normal one) holds it.
func runDir(runs, name string) (string, func(), error) {
	if err := os.MkdirAll(runs, 0o755); err != nil {
		return "", nil, fmt.Errorf("lab: %w", err)
	}
	for i := 1; ; i++ {
		dir := filepath.Join(runs, name)
		if i > 1 {
			dir += fmt.Sprintf(".%d", i)
		}
		unlock, err := lockFile(dir+".lock", false)
		if err == nil {
			return dir, unlock, nil
		}
		if !errors.Is(err, errBusy) {
			return "", nil, err
		}
	}
}
