// Command io measures disk and network throughput inside the same Linux
// guest booted by govisor and by QEMU (q35, virtio-blk-pci with the default
// writeback cache in both, virtio-net-pci on a TAP without vhost in both),
// side by side in one run, and prints govisor/QEMU ratios (> 1: govisor is
// faster). The guest (the minimal test guest, busybox) times with
// /proc/uptime: sequential 1 MiB reads and writes (fsync'd), 4 KiB O_DIRECT
// reads, and a TCP stream to the host (busybox nc) across a TAP in a
// network namespace this program makes, with link-local addresses.
//
// Usage: go run ./bench/io [-govisor PATH] [-guest DIR] [-size-mib 64] [-tcp-mib 16] [-runs N] [-diag] [-only VMM]
package main

import (
	"bufio"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/govisor/govisor/internal/kvm"
)

// guestScript prints "NAME=<start> <end>" uptimes around each transfer.
// With diag it also prints the virtio devices' negotiated feature bits
// (one 0/1 character per bit, bit 0 first) and the virtio interrupt
// counts around each transfer, and marks each transfer's start and end
// with "MARK=NAME-a|b" followed by a pause, so the host can read the
// VMM's exit counters there.
func guestScript(sizeMiB, tcpMiB int, diag bool) string {
	t := func(name, cmd string) string {
		s := fmt.Sprintf("read a _ < /proc/uptime; %s; read b _ < /proc/uptime; echo %s=$a,$b; ", cmd, name)
		if diag {
			irq := "grep -E 'virt|MSI' /proc/interrupts; "
			s = irq + "echo MARK=" + name + "-a; sleep 1; " + s + "echo MARK=" + name + "-b; sleep 1; " + irq
		}
		return s
	}
	pre := ""
	if diag {
		pre = "for d in /sys/bus/virtio/devices/*; do echo FEATURES $d $(cat $d/device) $(cat $d/features); done; " +
			"echo BLKQ $(cat /sys/block/vda/queue/max_segments /sys/block/vda/queue/max_hw_sectors_kb /sys/block/vda/queue/nr_requests); " +
			"echo CLOCK $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource /sys/devices/system/clocksource/clocksource0/available_clocksource); " +
			"grep -m1 flags /proc/cpuinfo; grep -m1 'model name' /proc/cpuinfo; "
	}
	return pre + t("SEQREAD", fmt.Sprintf("dd if=/dev/vda of=/dev/null bs=1M count=%d 2>/dev/null", sizeMiB)) +
		t("SEQWRITE", fmt.Sprintf("dd if=/dev/zero of=/dev/vda bs=1M count=%d conv=fsync 2>/dev/null", sizeMiB)) +
		t("RAND4K", "dd if=/dev/vda of=/dev/null bs=4k count=2000 iflag=direct 2>/dev/null") +
		"ip link set eth0 up; ip addr add " + guestIP + "/16 dev eth0; " +
		t("TCPTX", fmt.Sprintf("dd if=/dev/zero bs=64k count=%d 2>/dev/null | nc %s %d", tcpMiB*16, hostIP, tcpPort)) +
		"echo IO-DONE"
}

// The bench network: a TAP in a namespace of its own, link-local only.
const (
	hostIP  = "169.254.88.1"
	guestIP = "169.254.88.2"
	tcpPort = 7001
	tapName = "gvbenchtap0"
)

var (
	resultRe = regexp.MustCompile(`(SEQREAD|SEQWRITE|RAND4K|TCPTX)=([0-9.]+),([0-9.]+)`)
	markRe   = regexp.MustCompile(`MARK=([A-Z0-9]+-[ab])`)
)

// run boots one VMM and returns seconds per measurement. With diag the
// guest's lines are copied to stderr prefixed with name, and at each
// MARK line mark (if not nil) is called with the mark's name.
func run(args []string, name string, diag bool, mark func(string)) (map[string]float64, error) {
	cmd := exec.Command(args[0], args[1:]...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	timer := time.AfterFunc(40*time.Minute, func() { cmd.Process.Kill() })
	defer timer.Stop()
	res := map[string]float64{}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if diag {
			fmt.Fprintf(os.Stderr, "[%s] %s\n", name, line)
			if m := markRe.FindStringSubmatch(line); m != nil {
				printCPU(name, m[1], cmd.Process.Pid)
				if mark != nil {
					mark(m[1])
				}
			}
		}
		if m := resultRe.FindStringSubmatch(line); m != nil {
			a, _ := strconv.ParseFloat(m[2], 64)
			b, _ := strconv.ParseFloat(m[3], 64)
			res[m[1]] = b - a
		}
		if strings.Contains(line, "IO-DONE") {
			cmd.Process.Kill() // only the VMM this program started
		}
	}
	cmd.Wait()
	if len(res) != 4 {
		return res, fmt.Errorf("%s: the guest did not report all measurements (%v)", filepath.Base(args[0]), res)
	}
	return res, nil
}

// govisorStats prints the VMM's exit and device counters (govisor ctl
// stats) at a mark.
func govisorStats(govisor, sock string) func(string) {
	return func(mark string) {
		out, err := exec.Command(govisor, "ctl", "--api-sock", sock, "stats").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "[govisor] STATS %s: %v: %s\n", mark, err, out)
			return
		}
		fmt.Fprintf(os.Stderr, "[govisor] STATS %s %s\n", mark, strings.Join(strings.Fields(string(out)), " "))
	}
}

func main() {
	govisor := flag.String("govisor", ".cache/bin/govisor", "govisor binary")
	qemu := flag.String("qemu", "qemu-system-x86_64", "QEMU binary")
	guest := flag.String("guest", ".cache/guest", "folder with bzImage and initrd.cpio (make guest)")
	sizeMiB := flag.Int("size-mib", 64, "sequential transfer size")
	tcpMiB := flag.Int("tcp-mib", 16, "TCP stream size, guest to host")
	runs := flag.Int("runs", 1, "runs of each VMM (alternating which goes first); medians are printed")
	only := flag.String("only", "", "run only this VMM (govisor or qemu) and print its seconds, for diagnosis")
	diag := flag.Bool("diag", false, "print the guest's output, its virtio feature bits and interrupt counts, and govisor's exit counters around each transfer")
	flag.Parse()
	if err := bench(*govisor, *qemu, *guest, *sizeMiB, *tcpMiB, *diag, *only, *runs); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func bench(govisor, qemu, guest string, sizeMiB, tcpMiB int, diag bool, only string, runs int) error {
	if runs < 1 {
		return fmt.Errorf("-runs %d: at least 1", runs)
	}
	dir, err := os.MkdirTemp("", "bench-io")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bn, err := newBenchNet(tcpMiB)
	if err != nil {
		return err
	}
	defer bn.close()
	img := filepath.Join(dir, "disk.raw")
	f, err := os.Create(img)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for i := 0; i < sizeMiB; i++ { // real data, not holes: reads must hit the file
		rand.Read(buf)
		f.Write(buf)
	}
	f.Close()

	kernel, initrd := filepath.Join(guest, "bzImage"), filepath.Join(guest, "initrd.cpio")
	cmdline := "console=ttyS0 quiet rodata=off run=\"" + guestScript(sizeMiB, tcpMiB, diag) + "\""
	flavor := kvm.DetectFlavor()
	qcmd := cmdline
	if flavor == kvm.FlavorPVM {
		// QEMU sees the host's CPUID too: the options govisor's pvm template adds.
		qcmd += " noxsave clearcpuid=cx16,xsave,popcnt,erms,fsrm,fsgsbase,rdpid,invpcid,pcid,smap,rdrand,rdseed percpu_alloc=page"
	}
	gargs := []string{govisor, "run", "--kernel", kernel, "--initrd", initrd, "--memory", "512M",
		"--disk", "path=" + img, "--net", "tap=" + tapName, "--cmdline", cmdline}
	var mark func(string)
	if diag {
		sock := filepath.Join(dir, "api.sock")
		gargs = append(gargs, "--api-sock", sock)
		mark = govisorStats(govisor, sock)
	}
	if len(qcmd) >= 2048 { // x86 COMMAND_LINE_SIZE
		return fmt.Errorf("the guest command line is %d bytes, more than Linux takes (2047)", len(qcmd))
	}
	qargs := []string{qemu, "-enable-kvm", "-M", "q35", "-cpu", "host,-arch-capabilities,-cx16", "-m", "512",
		"-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio", "-kernel", kernel, "-initrd", initrd,
		"-append", qcmd, "-drive", "file=" + img + ",format=raw,if=none,id=d0", "-device", "virtio-blk-pci,drive=d0",
		"-netdev", "tap,id=n0,ifname=" + tapName + ",script=no,downscript=no,vhost=off", "-device", "virtio-net-pci,netdev=n0"}
	one := func(name string, args []string, mark func(string)) (map[string]float64, error) {
		res, err := run(bn.wrap(args), name, diag, mark)
		if err == nil {
			err = bn.check()
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		fmt.Printf("%s (seconds per measurement): %v\n", name, res)
		return res, nil
	}
	switch only {
	case "govisor":
		_, err := one("govisor", gargs, mark)
		return err
	case "qemu":
		_, err := one("qemu", qargs, nil)
		return err
	case "":
	default:
		return fmt.Errorf("-only %q: govisor or qemu", only)
	}
	// Runs alternate which VMM goes first, so that a change in the
	// host's load during the bench does not favour one of them.
	var gs, qs []map[string]float64
	for i := range runs {
		order := []string{"govisor", "qemu"}
		if i%2 == 1 {
			order = []string{"qemu", "govisor"}
		}
		for _, name := range order {
			if name == "govisor" {
				g, err := one("govisor", gargs, mark)
				if err != nil {
					return err
				}
				gs = append(gs, g)
			} else {
				q, err := one("qemu", qargs, nil)
				if err != nil {
					return err
				}
				qs = append(qs, q)
			}
		}
	}
	fmt.Printf("KVM: %s; disk: %d MiB raw file; TCP: %d MiB guest->host; guest: minimal Linux, busybox dd and nc; %d run(s), medians\n", flavor, sizeMiB, tcpMiB, runs)
	fmt.Printf("%-30s %12s %12s %7s  %s\n", "", "govisor", "qemu q35", "ratio", "ratio per run")
	mb := float64(sizeMiB)
	for _, r := range []struct {
		key, name string
		amount    float64
		unit      string
	}{
		{"SEQREAD", "sequential read, 1 MiB", mb, "MiB/s"},
		{"SEQWRITE", "sequential write, 1 MiB+fsync", mb, "MiB/s"},
		{"RAND4K", "4 KiB O_DIRECT reads", 2000, "IOPS"},
		{"TCPTX", "TCP guest->host over TAP", float64(tcpMiB), "MiB/s"},
	} {
		var gv, qv, ratios []float64
		per := ""
		for i := range gs {
			g, q := r.amount/gs[i][r.key], r.amount/qs[i][r.key]
			gv, qv, ratios = append(gv, g), append(qv, q), append(ratios, g/q)
			per += fmt.Sprintf(" %.2f", g/q)
		}
		fmt.Printf("%-30s %8.2f %s %8.2f %s %6.2fx %s\n", r.name, median(gv), r.unit, median(qv), r.unit, median(ratios), per)
	}
	return nil
}

// median returns the middle value of v (the mean of the two middle ones
// for an even count).
func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
