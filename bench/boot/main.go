// Command boot measures govisor's own start-up cost against QEMU's, side by
// side in one run: a tiny PVH guest that prints a marker on COM1 and writes
// the debug-exit port, booted alternately by `govisor run` and by
// `qemu-system-x86_64 -enable-kvm -M microvm`; then the minimal Linux test
// guest to its init marker and to power-off in both.
//
// With -jail it measures the jail instead (jail.go): govisor run against
// govisor run --jail, both guests. With -firmware it measures a firmware
// boot instead (firmware.go): the Debian test disks through SeaBIOS and
// through OVMF to their login prompt, govisor against QEMU -M pc with the
// same firmware and disk.
//
// Usage: go run ./bench/boot [-n 20] [-govisor PATH] [-linux-runs 1] [-jail|-firmware]
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/govisor/govisor/internal/kvm"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

type sample struct {
	marker, exit time.Duration
	firstExit    time.Duration // govisor -v: first VM exit (the guest's first I/O)
	rssKiB       int64
	ok           bool
}

// measure runs cmd, timing the first stdout line containing marker and the
// exit; peak RSS comes from the child's rusage.
func measure(args []string, marker string, timeout time.Duration) sample {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return sample{}
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "start:", err)
		return sample{}
	}
	var s sample
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if s.marker == 0 && strings.Contains(sc.Text(), marker) {
			s.marker = time.Since(start)
		}
	}
	cmd.Wait()
	s.exit = time.Since(start)
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		s.rssKiB = ru.Maxrss
	}
	s.ok = s.marker > 0 && ctx.Err() == nil
	if i := strings.Index(stderr.String(), "first VM exit at unix-ns "); i >= 0 {
		var ns int64
		fmt.Sscanf(stderr.String()[i+len("first VM exit at unix-ns "):], "%d", &ns)
		s.firstExit = time.Unix(0, ns).Sub(start)
	}
	return s
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

type stats struct{ marker, exit, rss, first []float64 }

func (st *stats) add(s sample) {
	if s.firstExit > 0 {
		st.first = append(st.first, float64(s.firstExit.Microseconds())/1000)
	}
	st.marker = append(st.marker, float64(s.marker.Microseconds())/1000)
	st.exit = append(st.exit, float64(s.exit.Microseconds())/1000)
	st.rss = append(st.rss, float64(s.rssKiB)/1024)
}

func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func main() {
	n := flag.Int("n", 20, "runs of the tiny guest per VMM (interleaved)")
	govisor := flag.String("govisor", ".cache/bin/govisor", "govisor binary")
	qemu := flag.String("qemu", "qemu-system-x86_64", "QEMU binary")
	guestDir := flag.String("guest", ".cache/guest", "folder with bzImage and initrd.cpio from `make guest`")
	linuxRuns := flag.Int("linux-runs", 1, "boots of the minimal Linux guest per VMM (0 to skip)")
	jailCost := flag.Bool("jail", false, "compare govisor run with govisor run --jail instead of with QEMU (needs root)")
	firmwareKinds := flag.String("firmware-kinds", "bios,uefi", "with -firmware: which disks, bios, uefi or both")
	firmware := flag.Bool("firmware", false, "boot the Debian test disks through SeaBIOS and OVMF to their login prompt instead, -linux-runs times per VMM")
	flag.Parse()

	flavor := kvm.DetectFlavor()
	fmt.Printf("KVM: %s (%s)\n", flavor, map[kvm.Flavor]string{kvm.FlavorPVM: "kvm_pvm software KVM: guest-kernel code emulated", kvm.FlavorHardware: "hardware-assisted"}[flavor])
	dir, err := os.MkdirTemp("", "bench-boot")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	elf := filepath.Join(dir, "tiny.elf")
	if err := os.WriteFile(elf, kvmtest.PVHELF(kvmtest.MarkerGuest("TINY-MARKER\n"), 0x100000), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *firmware {
		benchFirmware(*firmwareKinds, *govisor, *qemu, *guestDir, dir, max(*linuxRuns, 1))
		return
	}
	if *jailCost {
		kernel, initrd := filepath.Join(*guestDir, "bzImage"), filepath.Join(*guestDir, "initrd.cpio")
		benchJail(*govisor, dir, elf, kernel, initrd, kvmtest.LinuxCmdline+" run=poweroff", *n, *linuxRuns)
		return
	}
	gArgs := []string{*govisor, "run", "-v", "--kernel", elf, "--boot", "pvh", "--debug-exit", "--memory", "64M"}
	qArgs := []string{*qemu, "-enable-kvm", "-M", "microvm", "-cpu", "host,-arch-capabilities", "-m", "64",
		"-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio", "-kernel", elf,
		"-device", "isa-debug-exit,iobase=0xf4,iosize=4"}
	var g, q stats
	fails := 0
	for i := 0; i < *n; i++ {
		for _, c := range []struct {
			args []string
			st   *stats
		}{{gArgs, &g}, {qArgs, &q}} {
			s := measure(c.args, "TINY-MARKER", 60*time.Second)
			if !s.ok {
				fails++
				continue
			}
			c.st.add(s)
		}
	}
	fmt.Printf("\ntiny PVH guest, %d interleaved runs each (median; failed runs: %d)\n", *n, fails)
	fmt.Printf("%-28s %12s %12s %8s\n", "", "govisor", "qemu microvm", "ratio")
	row := func(name string, a, b []float64, unit string) {
		fmt.Printf("%-28s %9.1f %s %9.1f %s %8s\n", name, median(a), unit, median(b), unit, ratio(median(a), median(b)))
	}
	row("start -> marker", g.marker, q.marker, "ms")
	row("start -> exit", g.exit, q.exit, "ms")
	row("peak RSS", g.rss, q.rss, "MiB")
	fmt.Printf("%-28s %9.1f ms (govisor only: the guest's first I/O exit; target < 10 ms)\n", "start -> first guest exit", median(g.first))

	if *linuxRuns <= 0 {
		return
	}
	kernel, initrd := filepath.Join(*guestDir, "bzImage"), filepath.Join(*guestDir, "initrd.cpio")
	if _, err := os.Stat(kernel); err != nil {
		fmt.Printf("\nminimal Linux guest: skipped (%v; run `make guest`)\n", err)
		return
	}
	cmdline := kvmtest.LinuxCmdline + " run=poweroff"
	lg := []string{*govisor, "run", "--kernel", kernel, "--initrd", initrd, "--memory", "256M", "--cmdline", cmdline}
	// QEMU sees the host's CPUID on kvm_pvm too, so it gets the same options
	// govisor's pvm template appends, plus what QEMU needs besides.
	qcmd := cmdline
	if flavor == kvm.FlavorPVM {
		qcmd += " noxsave clearcpuid=cx16,xsave,popcnt,erms,fsrm,fsgsbase,rdpid,invpcid,pcid,smap,rdrand,rdseed percpu_alloc=page"
	}
	lq := []string{*qemu, "-enable-kvm", "-M", "microvm", "-cpu", "host,-arch-capabilities,-cx16", "-m", "256",
		"-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd, "-append", qcmd}
	var gl, ql stats
	qfail := 0
	for i := 0; i < *linuxRuns; i++ {
		if s := measure(lg, "GUEST-READY", 15*time.Minute); s.ok {
			gl.add(s)
		}
		if s := measure(lq, "GUEST-READY", 15*time.Minute); s.ok {
			ql.add(s)
		} else {
			qfail++
		}
	}
	fmt.Printf("\nminimal Linux guest (bzImage, 256 MiB, 1 vCPU), %d run(s) each (median)\n", *linuxRuns)
	fmt.Printf("%-28s %12s %12s %8s\n", "", "govisor", "qemu microvm", "ratio")
	row("start -> GUEST-READY", gl.marker, ql.marker, "ms")
	row("start -> exit", gl.exit, ql.exit, "ms")
	row("peak RSS", gl.rss, ql.rss, "MiB")
	if qfail > 0 {
		fmt.Printf("QEMU failed to reach GUEST-READY in %d of %d runs", qfail, *linuxRuns)
		if flavor == kvm.FlavorPVM {
			fmt.Printf(" (expected on kvm_pvm: QEMU stops at the first instruction the emulator cannot run)")
		}
		fmt.Println()
	}
}
