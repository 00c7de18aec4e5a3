package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// libvirt drives libvirtd's QEMU driver through virsh, the way a libvirt
// user scripts the same lifecycle: define + start, destroy, undefine.
type libvirt struct {
	dir, elf string
	machine  string // microvm when libvirt's QEMU offers it, else pc
	started  []int  // pids of daemons this bench started (stopped at the end)
}

func virsh(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "virsh", append([]string{"-q", "-c", "qemu:///system"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("virsh %s: %s", args[0], firstLine(string(out)))
	}
	return string(out), nil
}

// newLibvirt connects to libvirtd, starting it (and virtlogd) when it is
// installed but not running, and boots one probe domain; on failure it
// returns nil and the reason.
func newLibvirt(dir, elf string) (*libvirt, string) {
	if _, err := exec.LookPath("virsh"); err != nil {
		return nil, "virsh is not installed (Debian: apt-get install libvirt-daemon-system libvirt-clients)"
	}
	lv := &libvirt{dir: dir, elf: elf, machine: "pc"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := virsh(ctx, "version"); err != nil {
		// No systemd here to socket-activate it: start the daemons ourselves.
		for _, d := range []string{"virtlogd", "libvirtd"} {
			if pid, err := startDaemon(d); err == nil {
				lv.started = append(lv.started, pid)
			}
		}
		for {
			if _, err = virsh(ctx, "version"); err == nil || ctx.Err() != nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			lv.close()
			return nil, "libvirtd does not answer: " + err.Error()
		}
	}
	if out, err := virsh(ctx, "domcapabilities", "--machine", "microvm"); err == nil && strings.Contains(out, "<machine>microvm</machine>") {
		lv.machine = "microvm"
	}
	// QEMU runs as libvirt-qemu: the scratch directory must be readable.
	os.Chmod(dir, 0o755)
	if _, err := lv.life(ctx, "probe"); err != nil {
		lv.close()
		return nil, err.Error()
	}
	return lv, ""
}

// startDaemon runs `name -d` (it daemonizes) and returns the daemon's pid
// from its pid file.
func startDaemon(name string) (int, error) {
	if _, err := exec.LookPath(name); err != nil {
		return 0, err
	}
	if err := exec.Command(name, "-d").Run(); err != nil {
		return 0, err
	}
	for range 50 {
		if b, err := os.ReadFile("/run/" + name + ".pid"); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				return pid, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return 0, fmt.Errorf("%s: no pid file", name)
}

func (lv *libvirt) close() {
	for i := len(lv.started) - 1; i >= 0; i-- {
		syscall.Kill(lv.started[i], syscall.SIGTERM)
	}
}

// domainXML is a guest like govisor's: 1 vCPU, 64 MiB, the PVH ELF as
// kernel, COM1 to a file, no balloon or USB.
func (lv *libvirt) domainXML(name, log string) string {
	cpu := ""
	if lv.machine == "microvm" {
		// As bench/boot: kvm_pvm reports arch-capabilities QEMU cannot set.
		cpu = "<cpu mode='host-passthrough'><feature policy='disable' name='arch-capabilities'/></cpu>"
	}
	return fmt.Sprintf(`<domain type='kvm'>
  <name>%s</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='%s'>hvm</type><kernel>%s</kernel></os>
  %s
  <devices>
    <serial type='file'><source path='%s'/><target port='0'/></serial>
    <memballoon model='none'/>
    <controller type='usb' model='none'/>
  </devices>
</domain>
`, name, lv.machine, lv.elf, cpu, log)
}

// life is one domain's lifecycle: define + start, marker, destroy, undefine.
func (lv *libvirt) life(ctx context.Context, name string) (map[string]time.Duration, error) {
	name = "govisor-bench-" + name
	log := filepath.Join(lv.dir, name+".log")
	xml := filepath.Join(lv.dir, name+".xml")
	if err := os.WriteFile(xml, []byte(lv.domainXML(name, log)), 0o644); err != nil {
		return nil, err
	}
	d := map[string]time.Duration{}
	t0 := time.Now()
	if _, err := virsh(ctx, "define", xml); err != nil {
		return nil, err
	}
	defer virsh(context.Background(), "undefine", name) // after a failure
	if _, err := virsh(ctx, "start", name); err != nil {
		return nil, err
	}
	defer virsh(context.Background(), "destroy", name)
	t1 := time.Now()
	d["create"] = t1.Sub(t0)
	for {
		b, _ := os.ReadFile(log)
		if bytes.Contains(b, []byte(marker)) {
			break
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: no boot marker: %w", name, ctx.Err())
		}
		time.Sleep(2 * time.Millisecond)
	}
	t2 := time.Now()
	d["boot"] = t2.Sub(t1)
	if _, err := virsh(ctx, "destroy", name); err != nil {
		return nil, err
	}
	t3 := time.Now()
	d["stop"] = t3.Sub(t2)
	if _, err := virsh(ctx, "undefine", name); err != nil {
		return nil, err
	}
	t4 := time.Now()
	d["delete"] = t4.Sub(t3)
	d["total"] = t4.Sub(t0)
	return d, nil
}
