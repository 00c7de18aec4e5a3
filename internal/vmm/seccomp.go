package vmm

import "github.com/govisor/govisor/internal/seccomp"

// The syscalls this package makes in a running VMM: its part of the
// VMM's seccomp allow-list (package seccomp).
func init() {
	seccomp.Allow("internal/vmm", "unlinkat", "fchmodat", "renameat", "renameat2", "getdents64", "fcntl")
}
