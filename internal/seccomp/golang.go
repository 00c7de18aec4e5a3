package seccomp

// What the Go runtime and the standard library (os, net, time,
// crypto/rand, os/signal) call in a running process. Start-up only
// syscalls are not here: the filter comes later.
func init() {
	Allow("runtime",
		// memory and threads
		"mmap", "munmap", "madvise", "mprotect", "mremap", "clone", "exit", "exit_group",
		"futex", "sched_yield", "sched_getaffinity", "gettid", "getpid", "tgkill", "arch_prctl",
		// signals (goroutine preemption is a SIGURG sent with tgkill)
		"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "restart_syscall",
		// time
		"nanosleep", "clock_nanosleep", "clock_gettime", "clock_getres", "gettimeofday",
		"timer_create", "timer_settime", "timer_delete", "setitimer",
		// the netpoller
		"epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_pwait2", "epoll_wait", "eventfd2", "pipe2",
		// files (package os)
		"read", "write", "readv", "writev", "pread64", "pwrite64", "close", "fcntl", "ioctl",
		"openat", "newfstatat", "fstat", "statx", "lseek", "getdents64", "readlinkat", "getcwd",
		"getrlimit", "prlimit64", "uname", "getrandom",
		"getuid", "geteuid", "getgid", "getegid",
		// net: every VMM serves sockets (API, console, migration)
		"socket", "socketpair", "bind", "listen", "accept4", "connect", "getsockname", "getpeername",
		"setsockopt", "getsockopt", "sendto", "recvfrom", "sendmsg", "recvmsg", "shutdown",
		"poll", "ppoll",
	)
	// What the runtime does on a locked vCPU thread, which runs nothing
	// but its own goroutine: park and wake (futex), grow the heap and
	// stacks, take and return from signals (preemption, the vCPU kick),
	// start and stop the world for a GC the goroutine's allocation
	// triggers (which polls the network poller once: epoll and the read of
	// its wake-up eventfd), close a pollable descriptor (epoll_ctl DEL),
	// write logs and a crash's traceback, and end the thread.
	AllowVCPU("runtime",
		"futex", "sched_yield", "nanosleep", "clock_nanosleep", "clock_gettime", "gettimeofday",
		"mmap", "munmap", "madvise", "mprotect",
		"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "restart_syscall", "tgkill", "getpid", "gettid",
		"epoll_pwait", "epoll_pwait2", "epoll_wait", "epoll_ctl", "read", "write", "writev", "close",
		"exit", "exit_group",
	)
}
