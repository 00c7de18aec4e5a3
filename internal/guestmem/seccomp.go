package guestmem

import "github.com/govisor/govisor/internal/seccomp"

// The syscalls this package makes in a running VMM: its part of the
// VMM's seccomp allow-list (package seccomp).
func init() {
	seccomp.Allow("internal/guestmem", "mmap", "munmap", "madvise", "mprotect", "openat", "pread64")
}
