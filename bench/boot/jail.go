package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/govisor/govisor/internal/jail"
)

// benchJail measures what the jail costs (issue 15): the tiny guest and
// the minimal Linux guest started by `govisor run` as it is and by
// `govisor run --jail` (namespaces, pivot_root, a cgroup, an unprivileged
// uid and the seccomp filter), interleaved. Peak RSS is the largest
// process's: the jailed run's is the VMM's (its parent, which waits,
// stays small). Needs root.
func benchJail(govisor, dir, elf, kernel, initrd, cmdline string, n, linuxRuns int) {
	if !jail.CgroupV2() {
		// A lab host's initramfs leaves cgroup v2 unmounted; a systemd
		// host has it.
		if err := unix.Mount("cgroup2", jail.CgroupRoot, "cgroup2", 0, ""); err != nil {
			fmt.Printf("jail: no cgroup v2 (%v): measured without cgroup limits\n", err)
		}
	}
	run := 0
	jailed := func(args []string) []string {
		run++
		id := fmt.Sprintf("bench-%d-%d", os.Getpid(), run)
		out := []string{args[0], args[1], "--jail", "--jail-id", id, "--jail-dir", filepath.Join(dir, id)}
		return append(out, args[2:]...)
	}
	var plain, jail stats
	fails := 0
	tiny := []string{govisor, "run", "--kernel", elf, "--boot", "pvh", "--debug-exit", "--memory", "64M"}
	for i := 0; i < n; i++ {
		for _, c := range []struct {
			args []string
			st   *stats
		}{{tiny, &plain}, {jailed(tiny), &jail}} {
			s := measure(c.args, "TINY-MARKER", 60*time.Second)
			if !s.ok {
				fails++
				continue
			}
			c.st.add(s)
		}
	}
	fmt.Printf("\njail cost: tiny PVH guest, %d interleaved runs each (median; failed runs: %d)\n", n, fails)
	fmt.Printf("%-28s %12s %12s %8s\n", "", "govisor", "--jail", "ratio")
	row := func(name string, a, b []float64, unit string) {
		fmt.Printf("%-28s %9.1f %s %9.1f %s %8s\n", name, median(a), unit, median(b), unit, ratio(median(b), median(a)))
	}
	row("start -> marker", plain.marker, jail.marker, "ms")
	row("start -> exit", plain.exit, jail.exit, "ms")
	row("peak RSS", plain.rss, jail.rss, "MiB")
	if _, err := os.Stat(kernel); err != nil || linuxRuns <= 0 {
		return
	}
	lg := []string{govisor, "run", "--kernel", kernel, "--initrd", initrd, "--memory", "256M", "--cmdline", cmdline}
	var pl, jl stats
	for i := 0; i < linuxRuns; i++ {
		if s := measure(lg, "GUEST-READY", 15*60*time.Second); s.ok {
			pl.add(s)
		}
		if s := measure(jailed(lg), "GUEST-READY", 15*60*time.Second); s.ok {
			jl.add(s)
		}
	}
	fmt.Printf("\njail cost: minimal Linux guest (bzImage, 256 MiB, 1 vCPU), %d run(s) each (median)\n", linuxRuns)
	fmt.Printf("%-28s %12s %12s %8s\n", "", "govisor", "--jail", "ratio")
	row("start -> GUEST-READY", pl.marker, jl.marker, "ms")
	row("start -> exit", pl.exit, jl.exit, "ms")
	row("peak RSS", pl.rss, jl.rss, "MiB")
}
