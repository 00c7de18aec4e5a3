package seccomp

import (
	"fmt"
	"time"

	bpf "github.com/elastic/go-seccomp-bpf"
)

// Install applies the filter of the registered allow-list to every thread
// of the process, in mode (ModeOff: nothing). It also sets no_new_privs,
// which an unprivileged process needs to install a filter. Nothing undoes
// it: call it once, before the guest runs its first instruction. The vCPU
// threads started after it add their own (InstallVCPU).
func Install(mode Mode) error {
	if err := load(mode, Names(), bpf.FilterFlagTSync, true); err != nil {
		return err
	}
	mu.Lock()
	installed = mode
	mu.Unlock()
	return nil
}

// InstallVCPU applies the vCPU threads' allow-list (AllowVCPU) to the
// calling thread alone (no SECCOMP_FILTER_FLAG_TSYNC), in the mode of the
// process's filter; without one (Install not called, or ModeOff) it does
// nothing and reports false. The caller must hold its OS thread
// (runtime.LockOSThread) and never release it: a filtered thread given
// back to the Go scheduler would run other goroutines under the vCPU
// list. A goroutine that ends locked takes its thread with it.
func InstallVCPU() (bool, error) {
	mu.Lock()
	mode := installed
	mu.Unlock()
	if mode == ModeOff || mode == "" {
		return false, nil
	}
	// What the standard library reads from files on first use must be
	// read before: the local time zone (/etc/localtime), which the CMOS
	// clock's registers, read on this thread, are in.
	_ = time.Local.String()
	// No prctl for no_new_privs here: TSYNC gave it to every thread
	// (seccomp(2)), and the process filter refuses prctl.
	if err := load(mode, VCPUNames(), 0, false); err != nil {
		return false, fmt.Errorf("seccomp: vCPU thread: %w", err)
	}
	return true, nil
}

// The process filter must let a vCPU thread install its own filter.
// Another filter can only refuse more: seccomp(2) loosens nothing.
func init() { Allow("internal/seccomp", "seccomp") }

// load installs a filter allowing names, doing mode's action on the rest;
// nnp sets no_new_privs first.
func load(mode Mode, names []string, flag bpf.FilterFlag, nnp bool) error {
	var def bpf.Action
	switch mode {
	case ModeOff, "":
		return nil
	case ModeKill:
		def = bpf.ActionTrap // see the package comment: why not KILL_PROCESS
	case ModeLog:
		def = bpf.ActionLog
	default:
		return fmt.Errorf("seccomp: unknown mode %q", mode)
	}
	f := bpf.Filter{
		NoNewPrivs: nnp,
		Flag:       flag,
		Policy: bpf.Policy{
			DefaultAction: def,
			Syscalls:      []bpf.SyscallGroup{{Action: bpf.ActionAllow, Names: names}},
		},
	}
	if err := bpf.LoadFilter(f); err != nil {
		return fmt.Errorf("seccomp: install the %s filter: %w", mode, err)
	}
	return nil
}
