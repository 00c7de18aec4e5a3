package seccomp

import (
	"fmt"

	bpf "github.com/elastic/go-seccomp-bpf"
)

// Install applies the filter of the registered allow-list to every thread
// of the process, in mode (ModeOff: nothing). It also sets no_new_privs,
// which an unprivileged process needs to install a filter. Nothing undoes
// it: call it once, before the guest runs its first instruction.
func Install(mode Mode) error {
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
		NoNewPrivs: true,
		Flag:       bpf.FilterFlagTSync,
		Policy: bpf.Policy{
			DefaultAction: def,
			Syscalls:      []bpf.SyscallGroup{{Action: bpf.ActionAllow, Names: Names()}},
		},
	}
	if err := bpf.LoadFilter(f); err != nil {
		return fmt.Errorf("seccomp: install the %s filter: %w", mode, err)
	}
	return nil
}
