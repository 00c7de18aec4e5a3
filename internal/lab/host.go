// Package lab runs govisor lab hosts: QEMU VMs whose kernel (Debian's cloud
// kernel) loads KVM, so govisor runs on a real KVM on machines that have no
// /dev/kvm. With /dev/kvm the lab host is KVM-accelerated (nested KVM);
// without it QEMU's TCG emulates an AMD CPU with SVM and nested paging, and
// kvm_amd inside the lab host uses them.
package lab

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/govisor/govisor/internal/hostcpu"
)

// Assets are the files a lab host boots, made by scripts/lab-build.sh, and
// the lab's own QEMU, made by scripts/lab-qemu.sh.
type Assets struct {
	Dir string // holds vmlinuz, base.cpio and qemu.cpio
	// QEMU is Debian's QEMU with lab/qemu.patch (qemu/qemu-system-x86_64
	// in Dir), when built: TCG lab hosts run on it. Empty: not built.
	QEMU string
}

// FindAssets checks that dir holds a built lab kernel and initramfs.
func FindAssets(dir string) (Assets, error) {
	for _, f := range []string{"vmlinuz", "base.cpio"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return Assets{}, fmt.Errorf("lab: no lab host kernel and initramfs in %s (%w): build them with `make lab` (scripts/lab-build.sh)", dir, err)
		}
	}
	a := Assets{Dir: dir}
	if q := filepath.Join(dir, "qemu", "qemu-system-x86_64"); fileExists(q) {
		a.QEMU = q
	}
	return a, nil
}

// QEMUFor returns the QEMU binary a lab host runs on with accel, and what
// it is for the lab host's tests (GOVISOR_LAB_QEMU): "patched" (the lab's
// own build, see scripts/lab-qemu.sh), "kvm" (KVM-accelerated, where the
// TCG bug the patch fixes does not apply) or "debian" (unpatched under TCG:
// a nested guest's CR8 write can abort it, so UEFI tests stay off).
func (a Assets) QEMUFor(accel Accel) (bin, kind string) {
	switch {
	case !strings.HasPrefix(accel.Accel, "tcg"):
		return "qemu-system-x86_64", "kvm"
	case a.QEMU != "":
		return a.QEMU, "patched"
	default:
		return "qemu-system-x86_64", "debian"
	}
}

// Accel is how QEMU runs a lab host.
type Accel struct {
	Accel string // QEMU -accel value
	CPU   string // QEMU -cpu value
	Kind  string // what the lab host's KVM is, for people and test reports
}

// PickAccel chooses KVM when this machine has a usable /dev/kvm, otherwise
// TCG with an emulated EPYC CPU that has SVM and nested paging (plain qemu64
// lacks NPT, which kvm_amd needs). thread=multi: with thread=single a nested
// vCPU spinning with interrupts off never gives control back to the lab
// kernel (QEMU 10), and Debian 12's QEMU 7.2 froze either way.
//
// A kvm_pvm /dev/kvm (the software KVM of a PVM guest) is not usable: QEMU
// aborts on it at the first vCPU's MSRs ("failed to set MSR 0x10a",
// IA32_ARCH_CAPABILITIES), and it offers no nested virtualization, so a
// lab host on it would have no /dev/kvm of its own.
func PickAccel() Accel {
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err == nil {
		f.Close()
		if !hostcpu.SoftwareKVM() {
			return Accel{Accel: "kvm", CPU: "host", Kind: "nested KVM on this machine's /dev/kvm"}
		}
	}
	return Accel{Accel: "tcg,thread=multi", CPU: "EPYC,+svm,+npt", Kind: "nested kvm_amd under TCG"}
}

// tickOptions are the kernel options that keep a lab host's timer tick
// periodic on an unpatched TCG QEMU. Its emulated VMRUN sets a bit in the
// vCPU's interrupt_request with an unlocked read-modify-write that can undo
// a timer interrupt raised at the same moment from QEMU's main loop (fixed
// in lab/qemu.patch). The interrupt then waits in the APIC, untaken, until
// something raises the next one. A tickless kernel programs its one-shot
// LAPIC timer from that very interrupt, so nothing does: the lab host froze
// idle in HLT with IF set, or inside a nested guest that never exited
// (internal/vm in clean-clone runs, 3 of 6 lab hosts on 2026-12-07). A
// periodic LAPIC timer, which QEMU re-arms itself, raises one within a tick
// (4 ms at the lab kernel's HZ=250); the cost is tick-grained kernel timers.
func tickOptions(accel Accel, qemu string, a Assets) []string {
	if !strings.HasPrefix(accel.Accel, "tcg") || (a.QEMU != "" && qemu == a.QEMU) {
		return nil
	}
	return []string{"highres=off", "nohz=off"}
}

// DefaultCPUs is a lab host's vCPU count when none is asked for: 2 on
// KVM, 1 under TCG. With two TCG vCPU threads (multi-threaded TCG) a
// nested guest under heavy exits broke the lab host in most runs of
// internal/vm's TestHostileGuest: its kernel panicked ("corrupted stack
// end detected inside scheduler"), froze with a CPU in its timer
// interrupt, or a nested vCPU triple-faulted before its own IDT's
// handlers ran, and another VM's vCPU stopped at the same moment, as if
// memory under them changed; with one vCPU the same full test passed 3
// of 3 (2026-12-07). A race in TCG's emulated nested SVM across vCPU
// threads, not found in QEMU's source yet; one thread has no such race.
// Guests with more vCPUs than their lab host still run, time-sliced.
func DefaultCPUs(a Accel) int {
	if strings.HasPrefix(a.Accel, "tcg") {
		return 1
	}
	return 2
}

// NIC attaches a lab host to a TAP device on the lab bridge.
type NIC struct {
	Tap string
	MAC string
}

// HostConfig describes one lab host.
type HostConfig struct {
	Name     string
	Dir      string // work folder: console log, monitor socket, initramfs
	CPUs     int
	MemoryMB int
	Assets   Assets
	Accel    Accel
	QEMU     string   // QEMU binary; default qemu-system-x86_64
	Overlay  *Overlay // files added to the initramfs
	WithQEMU bool     // add qemu.cpio (QEMU inside the lab host, for benchmarks)
	Cmdline  []string // extra kernel options (lab.name= is added)
	NIC      *NIC
	Disk     string // a raw image attached as virtio-blk (/dev/vda)
	// Output receives the lab host's second serial port (ttyS1), where the
	// test runner writes the test's output; nil discards it.
	Output io.Writer
	// ConsoleSocket makes the console (ttyS0) a Unix socket people can
	// attach to (lab console), logged to console.log as well.
	ConsoleSocket bool
	// Detach lets QEMU outlive the process that started it (lab up).
	Detach bool
}

// ResetLog is the file in a TCG lab host's folder where QEMU logs its
// vCPUs' resets (-d cpu_reset): a triple fault of the lab kernel.
const ResetLog = "qemu-reset.log"

// Host is a running lab host (a QEMU process).
type Host struct {
	Config  HostConfig
	Console string // console log
	Monitor string // QEMU human monitor socket
	Socket  string // console socket, when ConsoleSocket
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
}

// Start builds the host's initramfs and starts QEMU.
func Start(cfg HostConfig) (*Host, error) {
	if cfg.QEMU == "" {
		cfg.QEMU, _ = cfg.Assets.QEMUFor(cfg.Accel)
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 2
	}
	if cfg.MemoryMB == 0 {
		cfg.MemoryMB = 6144
	}
	if _, err := exec.LookPath(cfg.QEMU); err != nil {
		return nil, fmt.Errorf("lab: %s not found: install QEMU 10 with scripts/deps.sh lab", cfg.QEMU)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	initrd, err := buildInitrd(cfg)
	if err != nil {
		return nil, err
	}
	h := &Host{
		Config:  cfg,
		Console: filepath.Join(cfg.Dir, "console.log"),
		Monitor: filepath.Join(cfg.Dir, "monitor.sock"),
		done:    make(chan struct{}),
	}
	os.Remove(h.Monitor)
	// nokaslr: a stuck lab's RIPs then match /proc/kallsyms of any lab host
	// booted from the same kernel (Debian ships no real System.map).
	// mitigations=off: a disposable lab host needs no speculation
	// defences, and their code (SRSO return thunks, on every stack of the
	// lab kernel's scheduler panics) is exotic work for TCG.
	// loglevel=4: a soft lockup's stack dump (printed at the default
	// level) stays off the console: at loglevel=5 a starved TCG lab host
	// spends its time printing RCU-stall dumps over the emulated UART,
	// which starves it more (a clean-clone run's cluster tests all timed
	// out so); QEMU's monitor dump already names where a stuck vCPU is.
	// no_timer_check: the kernel's boot-time check that the PIT's
	// interrupts reach the IO-APIC counts ticks over a busy-wait, which a
	// TCG vCPU on a loaded machine can miss: one lab host of a CI run
	// panicked so ("IO-APIC + timer doesn't work!"); virtual machines'
	// kernels commonly skip it.
	cmdline := []string{"console=ttyS0", "panic=-1", "loglevel=4", "nokaslr", "mitigations=off", "no_timer_check", "lab.name=" + cfg.Name}
	cmdline = append(append(cmdline, tickOptions(cfg.Accel, cfg.QEMU, cfg.Assets)...), cfg.Cmdline...)
	args := []string{
		"-name", "govisor-lab-" + cfg.Name,
		"-accel", cfg.Accel.Accel, "-cpu", cfg.Accel.CPU,
		"-smp", strconv.Itoa(cfg.CPUs), "-m", strconv.Itoa(cfg.MemoryMB),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-monitor", "unix:" + h.Monitor + ",server=on,wait=off",
		"-kernel", filepath.Join(cfg.Assets.Dir, "vmlinuz"), "-initrd", initrd,
		"-append", strings.Join(cmdline, " "),
	}
	if cfg.ConsoleSocket {
		h.Socket = filepath.Join(cfg.Dir, "console.sock")
		os.Remove(h.Socket)
		args = append(args, "-chardev", "socket,id=con,path="+h.Socket+",server=on,wait=off,logfile="+h.Console+",logappend=on")
	} else {
		args = append(args, "-chardev", "file,id=con,path="+h.Console)
	}
	args = append(args, "-serial", "chardev:con", "-chardev", "stdio,id=out,signal=off", "-serial", "chardev:out")
	if cfg.NIC != nil {
		args = append(args, "-netdev", "tap,id=n0,ifname="+cfg.NIC.Tap+",script=no,downscript=no",
			"-device", "virtio-net-pci,netdev=n0,mac="+cfg.NIC.MAC)
	}
	if cfg.Disk != "" {
		args = append(args, "-drive", "file="+cfg.Disk+",format=raw,if=none,id=d0,cache=writeback",
			"-device", "virtio-blk-pci,drive=d0")
	}
	if strings.HasPrefix(cfg.Accel.Accel, "tcg") {
		// A lab host that ends without a word (QEMU exits 0 with
		// -no-reboot on a triple fault) leaves QEMU's reset log: the
		// CPU state at the reset, "Triple fault" before it.
		args = append(args, "-d", "cpu_reset", "-D", filepath.Join(cfg.Dir, ResetLog))
	}
	h.cmd = exec.Command(cfg.QEMU, args...)
	h.cmd.Stdin = nil
	if cfg.Output != nil {
		h.cmd.Stdout = cfg.Output
	}
	qlog, err := os.Create(filepath.Join(cfg.Dir, "qemu.log"))
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	h.cmd.Stderr = qlog
	// QEMU dies with whoever started it (a killed test runner must not
	// leave a lab host running), and gets its own process group.
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if cfg.Detach {
		h.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	if err := h.cmd.Start(); err != nil {
		qlog.Close()
		return nil, fmt.Errorf("lab: start %s: %w", cfg.QEMU, err)
	}
	os.WriteFile(filepath.Join(cfg.Dir, "qemu.pid"), []byte(strconv.Itoa(h.cmd.Process.Pid)+"\n"), 0o644)
	go func() {
		h.err = h.cmd.Wait()
		qlog.Close()
		close(h.done)
	}()
	return h, nil
}

func buildInitrd(cfg HostConfig) (string, error) {
	path := filepath.Join(cfg.Dir, "initrd.cpio")
	f, err := os.Create(path)
	if err != nil {
		return "", fmt.Errorf("lab: %w", err)
	}
	defer f.Close()
	parts := []string{filepath.Join(cfg.Assets.Dir, "base.cpio")}
	if cfg.WithQEMU {
		parts = append(parts, filepath.Join(cfg.Assets.Dir, "qemu.cpio"))
	}
	for _, p := range parts {
		in, err := os.Open(p)
		if err != nil {
			return "", fmt.Errorf("lab: initramfs: %w", err)
		}
		_, err = io.Copy(f, in)
		in.Close()
		if err != nil {
			return "", fmt.Errorf("lab: initramfs: %w", err)
		}
	}
	if cfg.Overlay != nil {
		if _, err := cfg.Overlay.WriteTo(f); err != nil {
			return "", err
		}
	}
	return path, f.Close()
}

// PID is the QEMU process's ID.
func (h *Host) PID() int { return h.cmd.Process.Pid }

// Done is closed when QEMU has exited.
func (h *Host) Done() <-chan struct{} { return h.done }

// Kill ends QEMU at once (pulling the power: everything inside dies).
func (h *Host) Kill() {
	h.cmd.Process.Signal(syscall.SIGKILL)
	<-h.done
}

// HMP sends one command to QEMU's human monitor and returns its answer.
func (h *Host) HMP(command string) (string, error) {
	return MonitorCommand(h.Monitor, command)
}

// MonitorCommand sends one command to the QEMU human monitor at sock.
func MonitorCommand(sock, command string) (string, error) {
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return "", fmt.Errorf("lab: monitor: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	if _, err := readUntilPrompt(r); err != nil {
		return "", fmt.Errorf("lab: monitor: %w", err)
	}
	if _, err := io.WriteString(c, command+"\n"); err != nil {
		return "", fmt.Errorf("lab: monitor: %w", err)
	}
	out, err := readUntilPrompt(r)
	if err != nil && !errors.Is(err, io.EOF) {
		return out, fmt.Errorf("lab: monitor: %w", err)
	}
	// The monitor echoes the command line first.
	if i := strings.IndexByte(out, '\n'); i >= 0 {
		out = out[i+1:]
	}
	return strings.ReplaceAll(out, "\r", ""), nil
}

func readUntilPrompt(r *bufio.Reader) (string, error) {
	var b strings.Builder
	for {
		c, err := r.ReadByte()
		if err != nil {
			return b.String(), err
		}
		b.WriteByte(c)
		if strings.HasSuffix(b.String(), "(qemu) ") {
			return strings.TrimSuffix(b.String(), "(qemu) "), nil
		}
	}
}
