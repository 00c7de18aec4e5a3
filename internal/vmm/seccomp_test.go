package vmm

import (
	"testing"

	"github.com/elastic/go-seccomp-bpf/arch"

	"github.com/govisor/govisor/internal/seccomp"
)

// TestSeccompAllowList checks the VMM's whole allow-list, as its packages
// register it: every name is a syscall of this architecture (or Install
// would fail at run time), and none of the syscalls that would let a
// compromised VMM leave its jail or reach the host's kernel at large is
// on it.
func TestSeccompAllowList(t *testing.T) {
	names := seccomp.Names()
	if len(names) < 50 {
		t.Fatalf("allow-list of %d syscalls: are the packages' lists registered?", len(names))
	}
	for _, n := range names {
		if _, ok := arch.X86_64.SyscallNames[n]; !ok {
			t.Errorf("%q (from %v) is no x86-64 syscall", n, seccomp.Owners()[n])
		}
	}
	forbidden := []string{"execve", "execveat", "fork", "vfork", "ptrace", "mount", "umount2", "pivot_root", "chroot",
		"setns", "unshare", "bpf", "perf_event_open", "keyctl", "add_key", "request_key", "init_module", "finit_module",
		"delete_module", "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff", "acct", "setuid", "setgid",
		"setresuid", "setresgid", "capset", "process_vm_readv", "process_vm_writev", "open_by_handle_at", "mknodat",
		"io_uring_setup", "iopl", "ioperm", "syslog", "settimeofday", "clock_settime", "adjtimex"}
	allowed := map[string]bool{}
	for _, n := range names {
		allowed[n] = true
	}
	for _, n := range forbidden {
		if allowed[n] {
			t.Errorf("%s is on the VMM's allow-list (from %v)", n, seccomp.Owners()[n])
		}
	}
	t.Logf("%d syscalls allowed: %v", len(names), names)
}

// TestSeccompVCPUList checks the vCPU threads' list: within the process's
// (its filter applies too, so a name only here would still be refused),
// and without what a vCPU thread, which the guest drives, never needs:
// opening files, making sockets, starting threads, changing folders.
func TestSeccompVCPUList(t *testing.T) {
	all := map[string]bool{}
	for _, n := range seccomp.Names() {
		all[n] = true
	}
	vcpu := seccomp.VCPUNames()
	if len(vcpu) < 20 {
		t.Fatalf("vCPU allow-list of %d syscalls: are the packages' lists registered?", len(vcpu))
	}
	on := map[string]bool{}
	for _, n := range vcpu {
		on[n] = true
		if !all[n] {
			t.Errorf("%s is on the vCPU list but not the process's", n)
		}
	}
	for _, n := range []string{"openat", "socket", "socketpair", "connect", "bind", "listen", "accept4", "clone", "clone3",
		"userfaultfd", "mkdirat", "unlinkat", "renameat", "renameat2", "fchmodat", "getdents64", "readlinkat",
		"sched_setaffinity", "prlimit64", "sendmsg", "recvmsg", "execve"} {
		if on[n] {
			t.Errorf("%s is on the vCPU list", n)
		}
	}
	t.Logf("%d of %d syscalls allowed on vCPU threads: %v", len(vcpu), len(all), vcpu)
}
