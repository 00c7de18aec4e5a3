package lab

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// requireSymbol marks a test binary that has KVM tests: kvmtest.Require is
// linked only into binaries whose tests call it.
const requireSymbol = "github.com/govisor/govisor/internal/kvm/kvmtest.Require"

// NeedsKVM reports whether the test binary at path has tests that need
// KVM. go test strips its binaries' symbol tables, so this looks for the
// function's name in the runtime's function table (.gopclntab), which
// tracebacks need and linking never strips.
func NeedsKVM(path string) (bool, error) { return hasFunc(path, requireSymbol) }

// debianSymbol marks a test binary whose tests boot the Debian test disks
// (scripts/debian-disk.sh): only those lab hosts carry them, about 60 MB
// each that the lab host's kernel would otherwise unpack for nothing.
const debianSymbol = "github.com/govisor/govisor/internal/kvm/kvmtest.DebianDisk"

// hasFunc reports whether the Go binary at path has the function name (its
// full import path) in its runtime function table.
func hasFunc(path, name string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, fmt.Errorf("lab: %s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".gopclntab")
	if sec == nil {
		return false, fmt.Errorf("lab: %s: not a Go binary (no .gopclntab)", path)
	}
	data, err := sec.Data()
	if err != nil {
		return false, fmt.Errorf("lab: %s: %w", path, err)
	}
	return bytes.Contains(data, []byte(name+"\x00")), nil
}

// TestExec configures RunTest.
type TestExec struct {
	Cache    string    // the project's cache: lab/ (assets, runs), guest/
	BinDir   string    // prebuilt govisor, govisor-agent, vsockpeer for the tests
	GuestDir string    // the test guest (bzImage, vmlinux, initrd.cpio), firmware boot (bios-256k.bin, syslinux.img, OVMF_*_4M.fd, esp.img), Debian disks (debian-*.qcow2)
	Tally    string    // file that records how many KVM tests ran, and where
	Package  string    // the package under test, for messages
	Stdout   io.Writer // the test's output
	Stderr   io.Writer // the runner's own messages
	// Stall is how long the lab host's console may stay silent (its
	// heartbeat is every 5 s) before it counts as stuck.
	Stall time.Duration
}

// RunTest runs a go test binary with its arguments inside a fresh lab host
// and returns the binary's exit code. The lab host's kernel loads KVM, the
// binary runs there with the prebuilt binaries and the test guest, its
// output streams back through a serial port. A lab host whose heartbeat
// stops is reported with its vCPUs' registers (QEMU monitor) and killed.
// When the lab host itself fails (it froze, or its kernel panicked) the
// package runs once more in a fresh one, said loudly and recorded in the
// tally: that is the lab's failure, not a test result.
func RunTest(cfg TestExec, bin string, args []string) (int, error) {
	assets, err := FindAssets(filepath.Join(cfg.Cache, "lab"))
	if err != nil {
		return 1, err
	}
	if cfg.Stall == 0 {
		cfg.Stall = 3 * time.Minute
	}
	accel := PickAccel()
	// As many test lab hosts at once as the machine has CPUs and memory
	// for: a TCG lab host's one vCPU keeps one CPU busy.
	unlock, err := takeSlot(assets.Dir, Slots(DefaultCPUs(accel), testHostMemoryMB))
	if err != nil {
		return 1, err
	}
	defer unlock()
	qemu, _ := assets.QEMUFor(accel)
	fmt.Fprintf(cfg.Stderr, "lab: %s: KVM tests run in a lab host (%s; %s)\n", cfg.Package, accel.Kind, qemu)
	var retried string
	for attempt := 1; ; attempt++ {
		res, labErr, err := runOnce(cfg, assets, accel, bin, args)
		if err != nil {
			return 1, err
		}
		if labErr != "" && attempt == 1 {
			retried = labErr
			fmt.Fprintf(cfg.Stderr, "lab: %s: LAB HOST FAILURE, not a test result (%s): running the package again in a fresh lab host\n", cfg.Package, labErr)
			continue
		}
		if labErr != "" {
			return 1, fmt.Errorf("lab: the lab host failed twice: %s, then %s", retried, labErr)
		}
		if cfg.Tally != "" {
			line := fmt.Sprintf("%s\t%d\tlab host (%s)", cfg.Package, res.kvmTests, accel.Kind)
			if retried != "" {
				line += "\tretried after the lab host failed: " + retried
			}
			appendLine(cfg.Tally, line)
		}
		return res.rc, nil
	}
}

// runOnce runs the test binary in one lab host. labErr says how the lab
// host itself failed (froze, or ended without the test's result).
func runOnce(cfg TestExec, assets Assets, accel Accel, bin string, args []string) (res result, labErr string, err error) {
	dir, unlock, err := runDir(filepath.Join(cfg.Cache, "lab", "runs"), strings.NewReplacer("/", "_").Replace(cfg.Package))
	if err != nil {
		return res, "", err
	}
	defer unlock()
	os.RemoveAll(dir)
	ov := &Overlay{}
	ov.Add("/tests/"+filepath.Base(bin), bin, 0o755)
	if cfg.BinDir != "" {
		if err := ov.AddDir("/opt/govisor/bin", cfg.BinDir); err != nil {
			return res, "", err
		}
	}
	files := []string{"bzImage", "vmlinux", "initrd.cpio", "bios-256k.bin", "syslinux.img", "OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd", "esp.img"}
	if debian, err := hasFunc(bin, debianSymbol); err == nil && debian {
		files = append(files, "debian-bios.qcow2", "debian-uefi.qcow2")
	}
	for _, f := range files {
		if p := filepath.Join(cfg.GuestDir, f); fileExists(p) {
			ov.Add("/guest/"+f, p, 0o644)
		}
	}
	_, qemuKind := assets.QEMUFor(accel)
	ov.AddData("/run.sh", []byte(runScript(filepath.Base(bin), args, qemuKind)), 0o755)
	h, err := Start(HostConfig{
		Name: "test", Dir: dir, CPUs: DefaultCPUs(accel), MemoryMB: testHostMemoryMB,
		Assets: assets, Accel: accel, Overlay: ov, Output: cfg.Stdout,
	})
	if err != nil {
		return res, "", err
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	stuck := watchConsole(h, cfg.Stall)
	select {
	case <-h.Done():
	case why := <-stuck:
		fmt.Fprintf(cfg.Stderr, "lab: %s: the lab host is stuck: %s\n%s", cfg.Package, why, diagnose(h))
		h.Kill()
		keepFailed(dir)
		return res, "it froze: " + why, nil
	case s := <-sigs:
		fmt.Fprintf(cfg.Stderr, "lab: %s: %v: stopping the lab host\n%s", cfg.Package, s, diagnose(h))
		h.Kill()
		return res, "", fmt.Errorf("lab: interrupted by %v", s)
	}
	res = readResult(h.Console)
	if res.rc < 0 {
		fmt.Fprintf(cfg.Stderr, "lab: %s: the lab host ended without the test's exit code (QEMU: %v); its console:\n%s", cfg.Package, h.err, tail(h.Console, 40))
		why := "it ended without a result: " + lastPanic(h.Console)
		if r := resetReport(filepath.Join(dir, ResetLog)); r != "" {
			fmt.Fprintf(cfg.Stderr, "--- QEMU's reset log (the lab CPU at its last reset):\n%s", r)
			if strings.Contains(r, "Triple fault") {
				why += " (the lab kernel triple-faulted)"
			}
		}
		keepFailed(dir)
		return res, why, nil
	}
	if !res.kvm {
		return res, "", fmt.Errorf("lab: the lab host has no /dev/kvm; its console:\n%s", tail(h.Console, 40))
	}
	if res.rc == 0 {
		os.RemoveAll(dir)
	}
	return res, "", nil
}

// keepFailed moves a failed lab host's folder aside, so that a retry
// does not overwrite its console log.
func keepFailed(dir string) {
	os.RemoveAll(dir + ".failed")
	os.Rename(dir, dir+".failed")
}

// lastPanic is the lab kernel's panic line, if its console has one.
func lastPanic(console string) string {
	data, _ := os.ReadFile(console)
	for _, l := range strings.Split(string(data), "\n") {
		if i := strings.Index(l, "Kernel panic"); i >= 0 {
			return strings.TrimSpace(l[i:])
		}
	}
	return "no panic message"
}

// runScript is the lab host's /run.sh: the test binary with its
// arguments, its output on ttyS1 (raw, so no \n -> \r\n), status on the console.
//
// qemuKind is what runs the lab host (Assets.QEMUFor), as GOVISOR_LAB_QEMU:
// the UEFI tests need a QEMU that survives OVMF in a nested guest.
func runScript(bin string, args []string, qemuKind string) string {
	var b strings.Builder
	b.WriteString("#!/bin/sh\nstty -F /dev/ttyS1 raw -echo\n")
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "CI" || k == "GOTRACEBACK" || k == "GODEBUG" ||
			(strings.HasPrefix(k, "GOVISOR_") && k != "GOVISOR_CACHE" && k != "GOVISOR_TEST_BINDIR" && k != "GOVISOR_GUEST_DIR" && k != "GOVISOR_KVM_TALLY") {
			fmt.Fprintf(&b, "export %s\n", shellQuote(kv))
		}
	}
	b.WriteString("export GOVISOR_GUEST_DIR=/guest GOVISOR_TEST_BINDIR=/opt/govisor/bin GOVISOR_KVM_TALLY=/tmp/kvm-tally GOVISOR_LAB=1 GOVISOR_LAB_QEMU=" + shellQuote(qemuKind) + "\n")
	// TestImageErrors and others read ordinary files of a Debian system.
	b.WriteString("mkdir -p /tmp/work && cd /tmp/work\n")
	b.WriteString("/tests/" + shellQuote(bin))
	for _, a := range args {
		b.WriteString(" " + shellQuote(a))
	}
	b.WriteString(" >/dev/ttyS1 2>&1\nrc=$?\n")
	b.WriteString("echo \"LAB-KVMTESTS=$(sort -u /tmp/kvm-tally 2>/dev/null | wc -l)\"\necho \"LAB-RC=$rc\"\n")
	return b.String()
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

type result struct {
	rc       int
	kvm      bool
	kvmTests int
}

var resultRE = regexp.MustCompile(`^(LAB-RC|LAB-KVMTESTS)=(\d+)`)

func readResult(console string) result {
	r := result{rc: -1}
	f, err := os.Open(console)
	if err != nil {
		return r
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.HasPrefix(line, "LAB-KVM present") {
			r.kvm = true
		}
		if m := resultRE.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[2])
			if m[1] == "LAB-RC" {
				r.rc = n
			} else {
				r.kvmTests = n
			}
		}
	}
	return r
}

// lifeSign starts each line the lab host's /init writes to the console
// (LAB-INIT, LAB-KVM..., LAB-HEARTBEAT every 5 s).
const lifeSign = "LAB-"

// watchConsole reports on the returned channel when the lab host's
// console has shown no line of its /init (the heartbeat comes every 5 s)
// for stall. Other console output does not count: a lab kernel whose
// vCPUs are stuck still prints "soft lockup" warnings every ~30 s, which
// kept a frozen lab host looking alive until the caller's own limit.
func watchConsole(h *Host, stall time.Duration) <-chan string {
	ch := make(chan string, 1)
	go func() {
		var off int64
		var tail []byte // the previous read's end, for a marker split across reads
		last := time.Now()
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-h.Done():
				return
			case <-t.C:
			}
			if b, err := readFrom(h.Console, off); err == nil && len(b) > 0 {
				off += int64(len(b))
				b = append(tail, b...)
				if bytes.Contains(b, []byte(lifeSign)) {
					last = time.Now()
				}
				tail = bytes.Clone(b[max(0, len(b)-len(lifeSign)+1):])
			}
			if time.Since(last) > stall {
				ch <- fmt.Sprintf("no heartbeat on the console (every 5 s) for %v", time.Since(last).Round(time.Second))
				return
			}
		}
	}()
	return ch
}

// readFrom returns the bytes of the file at path from offset off on.
func readFrom(path string, off int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, err
	}
	return io.ReadAll(f)
}

// diagnose says what a lab host was doing: its last console lines and,
// through the QEMU monitor, each vCPU's state and registers.
func diagnose(h *Host) string {
	var b strings.Builder
	fmt.Fprintf(&b, "--- last console lines (%s):\n%s", h.Console, tail(h.Console, 20))
	for _, c := range []string{"info status", "info cpus", "info registers -a"} {
		out, err := h.HMP(c)
		if err != nil {
			out = err.Error() + "\n"
		}
		fmt.Fprintf(&b, "--- QEMU monitor: %s\n%s", c, out)
	}
	return b.String()
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error() + "\n"
	}
	lines := strings.SplitAfter(strings.ReplaceAll(string(data), "\r", ""), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func appendLine(path, line string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintln(f, line)
}

// resetReport is the end of QEMU's reset log when the lab host reset more
// than at power-on ("" otherwise): the last reset's CPU state, and
// "Triple fault" when that was the cause.
func resetReport(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	s := string(data)
	// QEMU resets each vCPU twice as it powers on.
	if !strings.Contains(s, "Triple fault") && strings.Count(s, "CPU Reset (CPU 0)") <= 2 {
		return ""
	}
	if len(s) > 8<<10 {
		s = s[len(s)-8<<10:]
	}
	return s
}
