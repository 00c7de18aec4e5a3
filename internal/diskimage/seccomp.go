package diskimage

import "github.com/govisor/govisor/internal/seccomp"

// The syscalls this package makes in a running VMM: its part of the
// VMM's seccomp allow-list (package seccomp).
func init() {
	seccomp.Allow("internal/diskimage", "pread64", "pwrite64", "preadv", "pwritev", "fdatasync", "fsync", "ftruncate", "fallocate", "openat", "unlinkat", "mkdirat", "getdents64", "fstatfs", "flock", "fcntl")
	// On a vCPU thread: closing an image the guest ejected (its _EJ0
	// write, vm.ejectSlot) writes its metadata back and unlocks it.
	seccomp.AllowVCPU("internal/diskimage", "pread64", "pwrite64", "preadv", "pwritev", "fdatasync", "fsync", "ftruncate", "fallocate", "flock", "fcntl", "close")
}
