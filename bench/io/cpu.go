package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// threadTicks returns the CPU time (user + system, in clock ticks) of each
// thread of process pid, from /proc/PID/task/*/stat (proc(5) fields 14
// and 15).
func threadTicks(pid int) (map[string]uint64, error) {
	dirs, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(dirs) == 0 {
		return nil, fmt.Errorf("threads of process %d: not found", pid)
	}
	ticks := map[string]uint64{}
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue // the thread ended
		}
		// The command name (field 2) may hold spaces: fields after the
		// last ')' start at field 3.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseUint(f[11], 10, 64)
		k, _ := strconv.ParseUint(f[12], 10, 64)
		ticks[filepath.Base(filepath.Dir(d))] = u + k
	}
	return ticks, nil
}

// printCPU prints, at a mark, the VMM's CPU time so far: all threads,
// the busiest thread (the vCPU, which runs the emulated guest kernel on
// kvm_pvm) and the rest (device and runtime threads, which compete with
// the vCPU for the host's CPUs).
func printCPU(name, mark string, pid int) {
	t, err := threadTicks(pid)
	if err != nil {
		fmt.Fprintf(os.Stderr, "[%s] CPU %s: %v\n", name, mark, err)
		return
	}
	var total, busiest uint64
	var tid string
	for id, v := range t {
		total += v
		if v >= busiest {
			busiest, tid = v, id
		}
	}
	// schedstat: time on a CPU and time runnable but waiting for one
	// (ns), which tells an idle guest from a vCPU the host starved.
	ss, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, tid))
	fmt.Fprintf(os.Stderr, "[%s] CPU %s threads=%d total=%d busiest=%d others=%d (ticks) busiest schedstat: %s\n",
		name, mark, len(t), total, busiest, total-busiest, strings.TrimSpace(string(ss)))
}
