package vm

import "github.com/govisor/govisor/internal/seccomp"

// The syscalls this package makes in a running VMM: its part of the
// VMM's seccomp allow-list (package seccomp).
func init() {
	seccomp.Allow("internal/vm", "tgkill", "gettid", "madvise", "readlinkat", "getdents64", "unlinkat", "sched_getaffinity", "sched_setaffinity")
}
