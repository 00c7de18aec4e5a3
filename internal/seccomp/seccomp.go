// Package seccomp is the VMM's syscall allow-list and the seccomp-bpf
// filter built from it. The list is not kept in one place: each package
// whose code makes syscalls registers the ones it needs (Allow, in a file
// named seccomp.go next to that code), so a syscall added to a package is
// added to its list in the same change, and a VMM binary's filter holds
// only what the packages it links need. Install turns the registered
// lists into one filter (the BPF is assembled by
// github.com/elastic/go-seccomp-bpf) and applies it to every thread of
// the process (SECCOMP_FILTER_FLAG_TSYNC: the Go runtime's threads and the
// locked vCPU threads alike, and every thread started later inherits it).
//
// A forbidden syscall under ModeKill returns SECCOMP_RET_TRAP, not
// SECCOMP_RET_KILL_PROCESS: the kernel rolls the registers back to the
// syscall's entry and sends SIGSYS (seccomp(2), SECCOMP_RET_TRAP), and the
// Go runtime, for which SIGSYS is fatal, prints "SIGSYS: bad system call",
// the offending goroutine's stack and the registers, rax holding the
// syscall number, then ends the process. So the VMM still dies at its
// first forbidden syscall, and its log says which syscall and which code
// made it (ParseViolation reads that back). RET_KILL_PROCESS would only
// leave a line in the audit log, which hosts without auditd (as Debian's
// default kernel, audit=0) do not keep. A compromised VMM could catch its
// own SIGSYS and go on, but the forbidden syscall has still not happened.
package seccomp

import (
	"fmt"
	"slices"
	"sort"
	"sync"
)

// Mode is what the filter does with a syscall off the list.
type Mode string

// The modes of --seccomp.
const (
	ModeKill Mode = "kill" // the process ends at the first forbidden syscall, reporting it
	ModeLog  Mode = "log"  // the syscall runs and the kernel logs it (audit, where enabled)
	ModeOff  Mode = "off"  // no filter
)

// ParseMode checks a --seccomp value; empty is ModeOff.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case ModeKill, ModeLog, ModeOff:
		return Mode(s), nil
	case "":
		return ModeOff, nil
	}
	return "", fmt.Errorf("seccomp mode %q: give kill, log or off", s)
}

var (
	mu        sync.Mutex
	lists     = map[string][]string{} // owner (a package) -> syscall names
	vcpuLists = map[string][]string{} // the same, of code that runs on vCPU threads
	installed Mode                    // the process filter's mode, once Install ran
)

// Allow adds syscalls (by their Linux names) to the allow-list on behalf
// of owner, the package whose code makes them. Packages call it from
// init; a name the kernel's table lacks fails Install, not the caller.
func Allow(owner string, names ...string) {
	mu.Lock()
	defer mu.Unlock()
	lists[owner] = append(lists[owner], names...)
}

// AllowVCPU adds syscalls to the vCPU threads' allow-list on behalf of
// owner, a package whose code runs on a vCPU thread (the KVM_RUN loop and
// the port and MMIO handlers it calls, which the guest drives directly).
// That list is tighter than the process's: no files opened, no sockets
// made, no processes or threads started. A vCPU thread's filter is on top
// of the process's, so its names must be on Allow's list too.
func AllowVCPU(owner string, names ...string) {
	mu.Lock()
	defer mu.Unlock()
	vcpuLists[owner] = append(vcpuLists[owner], names...)
}

// Names is the whole allow-list, sorted, each name once.
func Names() []string { return merged(lists) }

// VCPUNames is the vCPU threads' allow-list, sorted, each name once.
func VCPUNames() []string { return merged(vcpuLists) }

func merged(m map[string][]string) []string {
	mu.Lock()
	defer mu.Unlock()
	var all []string
	for _, l := range m {
		all = append(all, l...)
	}
	sort.Strings(all)
	return slices.Compact(all)
}

// Owners maps each allowed syscall to the packages that asked for it, for
// review (govisor's tests print it on failure).
func Owners() map[string][]string {
	mu.Lock()
	defer mu.Unlock()
	m := map[string][]string{}
	for o, l := range lists {
		for _, n := range l {
			m[n] = append(m[n], o)
		}
	}
	for _, o := range m {
		sort.Strings(o)
	}
	return m
}
