package kvm

import "github.com/govisor/govisor/internal/seccomp"

// The syscalls this package makes in a running VMM: its part of the
// VMM's seccomp allow-list (package seccomp).
func init() {
	seccomp.Allow("internal/kvm", "ioctl", "mmap", "munmap", "openat", "close", "eventfd2")
	// On a vCPU thread: KVM_RUN, and the ioeventfds and irqfds a device
	// registers when the guest activates it (DRIVER_OK) or moves its BARs,
	// and closes when the guest resets it.
	seccomp.AllowVCPU("internal/kvm", "ioctl", "eventfd2", "close")
}
