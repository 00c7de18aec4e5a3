package jail

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// CgroupRoot is where cgroup v2 is mounted; a variable so that tests can
// use another hierarchy.
var CgroupRoot = "/sys/fs/cgroup"

// cgroupParent holds every VMM's cgroup, under CgroupRoot.
const cgroupParent = "govisor"

// OverheadMiB is what a VMM process needs beyond its guest's RAM: the Go
// runtime, device buffers, page tables and the page cache of its disk
// I/O (charged to the cgroup, and reclaimed under the limit rather than
// killing the VMM). bench/boot -jail measured (nested KVM in a lab host):
// a VMM whose tiny guest touches almost none of its 64 MiB peaks at
// 15 MiB, so the VMM itself needs about 15 MiB beyond the guest's pages;
// the rest is headroom for page cache and migration buffers.
const OverheadMiB = 128

// Limits are a VM's cgroup limits.
type Limits struct {
	CPUs      int    // cpu.max: CPUs full CPUs; 0: no limit (an incoming migration's "as the source")
	MemoryMiB uint64 // memory.max: guest RAM + OverheadMiB; 0: no limit
	Pids      int    // pids.max: threads and processes; 0: no limit
}

// PidsMax bounds a VMM's threads: the Go runtime's (GOMAXPROCS and those
// blocked in syscalls), one per vCPU, the device and migration workers.
func PidsMax(cpus int) int { return 256 + 2*cpus }

// CgroupV2 reports whether cgroup v2 is mounted at CgroupRoot.
func CgroupV2() bool {
	var st unix.Statfs_t
	return unix.Statfs(CgroupRoot, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// Cgroup makes (or reuses) the cgroup of jail instance inst with limits l and opens
// it for SysProcAttr (clone into it: the VMM is limited from its first
// instruction). Without cgroup v2 it returns -1 and no error: the limits
// are then not enforced. The caller closes the fd once the process has
// started and calls RemoveCgroup once it has exited.
func Cgroup(inst string, l Limits) (fd int, err error) {
	if !CgroupV2() {
		return -1, nil
	}
	parent := filepath.Join(CgroupRoot, cgroupParent)
	if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return -1, fmt.Errorf("jail: cgroup %s: %w", parent, err)
	}
	// The controllers must be enabled down to the VM's cgroup; the
	// hierarchy's root may offer fewer (then those limits are left out).
	for _, dir := range []string{CgroupRoot, parent} {
		if err := enableControllers(dir); err != nil {
			return -1, err
		}
	}
	dir := filepath.Join(parent, inst)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return -1, fmt.Errorf("jail: cgroup %s: %w", dir, err)
	}
	max := func(n uint64) string {
		if n == 0 {
			return "max"
		}
		return strconv.FormatUint(n, 10)
	}
	cpu := "max 100000"
	if l.CPUs > 0 {
		cpu = fmt.Sprintf("%d 100000", l.CPUs*100000)
	}
	mem := uint64(0)
	if l.MemoryMiB > 0 {
		mem = (l.MemoryMiB + OverheadMiB) << 20
	}
	for file, v := range map[string]string{"cpu.max": cpu, "memory.max": max(mem), "pids.max": max(uint64(l.Pids))} {
		p := filepath.Join(dir, file)
		if _, err := os.Stat(p); err != nil {
			continue // that controller is not enabled on this host
		}
		if err := os.WriteFile(p, []byte(v), 0); err != nil {
			return -1, fmt.Errorf("jail: %s = %s: %w", p, v, err)
		}
	}
	fd, err = unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("jail: open cgroup %s: %w", dir, err)
	}
	return fd, nil
}

// enableControllers enables cpu, memory and pids for dir's children, as
// far as dir has them.
func enableControllers(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	have := strings.Fields(string(b))
	var want []string
	for _, c := range []string{"cpu", "memory", "pids"} {
		for _, h := range have {
			if h == c {
				want = append(want, "+"+c)
			}
		}
	}
	if len(want) == 0 {
		return nil
	}
	p := filepath.Join(dir, "cgroup.subtree_control")
	if err := os.WriteFile(p, []byte(strings.Join(want, " ")), 0); err != nil {
		return fmt.Errorf("jail: enable %v in %s: %w", want, p, err)
	}
	return nil
}

// CgroupDir is the cgroup of jail instance inst.
func CgroupDir(inst string) string { return filepath.Join(CgroupRoot, cgroupParent, inst) }

// RemoveCgroup removes the cgroup of jail instance inst once its
// processes have exited.
func RemoveCgroup(inst string) {
	if CgroupV2() {
		os.Remove(CgroupDir(inst))
	}
}

// SysProcAttr starts a jail's first process (the one that calls Enter):
// in new mount, PID, IPC and UTS namespaces, in its own process group
// and, for cgroupFD >= 0, in that cgroup from its start (clone3's
// CLONE_INTO_CGROUP).
func SysProcAttr(cgroupFD int) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{
		Setpgid:    true,
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS,
	}
	if cgroupFD >= 0 {
		a.UseCgroupFD, a.CgroupFD = true, cgroupFD
	}
	return a
}
