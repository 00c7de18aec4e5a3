package disklease

import "github.com/govisor/govisor/internal/seccomp"

// The syscalls this package makes in a running VMM: its part of the
// VMM's seccomp allow-list (package seccomp).
func init() {
	seccomp.Allow("internal/disklease", "mmap", "munmap", "fcntl", "openat", "pread64", "pwrite64", "fsync")
	// On a vCPU thread: releasing the lease of a disk the guest ejected.
	seccomp.AllowVCPU("internal/disklease", "munmap", "fcntl", "pread64", "pwrite64", "fsync", "close")
}
