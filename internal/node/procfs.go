package node

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// markerPrefix starts argv[0] of every VMM child the agent spawns:
// "govisor-vmm:<agent id>:<vm name>". It shows in ps, and after an agent
// restart it is how the agent recognises its VMM processes in /proc.
const markerPrefix = "govisor-vmm:"

func Marker(agentID, vmName string) string { return markerPrefix + agentID + ":" + vmName }

// Argv0 reads argv[0] of pid ("" for a zombie or a vanished process).
func Argv0(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return ""
	}
	arg0, _, _ := strings.Cut(string(b), "\x00")
	return arg0
}

// StartTicks reads the start time of pid in clock ticks since boot
// (field 22 of /proc/<pid>/stat, proc(5)): with the pid it names one
// process for good, since pids are reused.
func StartTicks(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("agent: /proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	// fields[0] is field 3 (state); starttime is field 22.
	if len(fields) < 20 {
		return 0, fmt.Errorf("agent: /proc/%d/stat: %d fields", pid, len(fields)+2)
	}
	if fields[0] == "Z" || fields[0] == "X" {
		return 0, fmt.Errorf("agent: process %d has exited", pid)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// FindVMMs scans /proc for live processes whose argv[0] is this agent's
// marker and returns their pids by VM name.
func FindVMMs(agentID string) map[string][]int {
	out := map[string][]int{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	prefix := markerPrefix + agentID + ":"
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		name, ok := strings.CutPrefix(Argv0(pid), prefix)
		if !ok || name == "" {
			continue
		}
		if _, err := StartTicks(pid); err != nil {
			continue
		}
		out[name] = append(out[name], pid)
	}
	return out
}

// userHZ is the unit of the CPU times in /proc/<pid>/stat: USER_HZ, which
// Linux fixes at 100 for user space on every architecture govisor runs on.
const userHZ = 100

// Usage reads a process's CPU time (user+system, fields 14 and 15 of
// /proc/<pid>/stat) and resident memory (field 2 of /proc/<pid>/statm).
func Usage(pid int) (cpuSeconds float64, rssBytes uint64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("agent: /proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("agent: /proc/%d/stat: %d fields", pid, len(f)+2)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("agent: /proc/%d/stat: bad CPU times", pid)
	}
	m, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0, 0, err
	}
	mf := strings.Fields(string(m))
	if len(mf) < 2 {
		return 0, 0, fmt.Errorf("agent: /proc/%d/statm: %q", pid, m)
	}
	pages, err := strconv.ParseUint(mf[1], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("agent: /proc/%d/statm: %w", pid, err)
	}
	return float64(ut+st) / userHZ, pages * uint64(os.Getpagesize()), nil
}
