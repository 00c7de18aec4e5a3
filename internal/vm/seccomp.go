package vm

import "github.com/govisor/govisor/internal/seccomp"

// The syscalls this package makes in a running VMM: its part of the
// VMM's seccomp allow-list (package seccomp).
func init() {
	seccomp.Allow("internal/vm", "tgkill", "gettid", "madvise", "readlinkat", "getdents64", "unlinkat", "sched_getaffinity", "sched_setaffinity")
	// uefi.go: the UEFI variable bank is a shared mapping of the VM's
	// variable file, written back (msync) when the machine closes (the
	// guest's reboot, its end) and after a restore.
	seccomp.Allow("internal/vm", "msync")
	// On a vCPU thread (run.go): the kick of another vCPU when the guest
	// stops the machine (tgkill of its thread in this process).
	seccomp.AllowVCPU("internal/vm", "tgkill", "getpid", "gettid")
}
