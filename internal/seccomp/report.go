package seccomp

import (
	"bytes"
	"fmt"
	"strconv"

	"github.com/elastic/go-seccomp-bpf/arch"
)

// Violation is a forbidden syscall that ended a process.
type Violation struct {
	Nr   int    // the syscall number (x86-64)
	Name string // its name, "" if unknown
}

func (v Violation) String() string {
	if v.Name == "" {
		return fmt.Sprintf("syscall %d", v.Nr)
	}
	return fmt.Sprintf("syscall %d (%s)", v.Nr, v.Name)
}

// sigsysMark is how the Go runtime starts its report of a fatal SIGSYS.
var sigsysMark = []byte("SIGSYS: bad system call")

// ParseViolation finds, in the output (stderr) of a process that ModeKill
// ended, the Go runtime's SIGSYS report and the syscall number it shows
// in rax (the kernel rolled the registers back to the syscall's entry
// before sending SIGSYS). ok is false when log holds no such report.
func ParseViolation(log []byte) (v Violation, ok bool) {
	i := bytes.LastIndex(log, sigsysMark)
	if i < 0 {
		return Violation{}, false
	}
	rest := log[i:]
	// The register dump: "rax    0x1b" on a line of its own.
	for _, line := range bytes.Split(rest, []byte("\n")) {
		f := bytes.Fields(line)
		if len(f) == 2 && string(f[0]) == "rax" {
			n, err := strconv.ParseUint(string(f[1]), 0, 32)
			if err != nil {
				break
			}
			v.Nr = int(n)
			v.Name = SyscallName(v.Nr)
			return v, true
		}
	}
	return Violation{Nr: -1}, true
}

// SyscallName names an x86-64 syscall number ("" if unknown).
func SyscallName(nr int) string {
	return arch.X86_64.SyscallNumbers[nr]
}
