package vm

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/hostcpu"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

// bootLinux boots the minimal test guest and returns its console and exit.
// With pvh, the ELF vmlinux is entered at its PVH entry instead of the
// bzImage at its 64-bit entry.
func bootLinux(t *testing.T, cpus int, memMiB uint64, pvh bool, extra, run string) (string, Exit) {
	t.Helper()
	return bootLinuxWith(t, cpus, memMiB, pvh, extra, run, nil)
}

// bootLinuxWith is bootLinux with mod applied to the machine's config.
func bootLinuxWith(t *testing.T, cpus int, memMiB uint64, pvh bool, extra, run string, mod func(*Config)) (string, Exit) {
	t.Helper()
	kernel, initrd := kvmtest.LinuxGuest(t)
	boot := BootLinux64
	if pvh {
		kernel, boot = filepath.Join(filepath.Dir(kernel), "vmlinux"), BootPVH
	}
	k, err := os.ReadFile(kernel)
	if err != nil {
		t.Fatal(err)
	}
	ird, err := os.ReadFile(initrd)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		CPUs: cpus, MemoryMiB: memMiB, Kernel: k, Initrd: ird, Boot: boot,
		Cmdline: fmt.Sprintf("%s %s run=%q", kvmtest.LinuxCmdline, extra, run),
	}
	if mod != nil {
		mod(&cfg)
	}
	// On kvm_pvm a boot takes up to minutes and a guest kernel very
	// occasionally stalls (seen with several guests at once: vCPUs
	// spinning for good), which is that host's flaw, not the VMM's: there
	// a boot gets 10 minutes and a second try. On hardware-assisted KVM
	// (and in lab hosts) a boot takes seconds: 3 minutes and no retry, a
	// stall is a failure, reported with where the machine stood.
	limit, tries := 3*time.Minute, 1
	if hostcpu.SoftwareKVM() {
		limit, tries = 10*time.Minute, 2
	}
	for attempt := 1; ; attempt++ {
		var out syncBuffer
		cfg.Console = &out
		m, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := m.Start(); err != nil {
			m.Close()
			t.Fatal(err)
		}
		select {
		case <-m.Done():
		case <-time.After(limit):
			if attempt == tries {
				stallReport(t, m)
			}
			m.Stop(Exit{Reason: ExitHost})
			m.Wait()
			m.Close()
			if attempt < tries {
				t.Logf("RETRYING (kvm_pvm): the guest did not finish in %v (exits per vCPU %v); console so far:\n%s", limit, m.Exits(), out.String())
				continue
			}
			t.Fatalf("guest did not finish in %v (%d tries); console:\n%s", limit, tries, out.String())
		}
		ex := m.Wait()
		t.Logf("%d vCPUs, %d MiB: stopped after %v: %s %s; %d instructions completed by govisor",
			cpus, memMiB, time.Since(start).Round(time.Millisecond), ex.Reason, ex.Detail, m.EmulatedInstructions())
		m.Close()
		return out.String(), ex
	}
}

var (
	nprocRe    = regexp.MustCompile(`(?m)^NPROC=(\d+)\r?$`)
	memTotalRe = regexp.MustCompile(`MemTotal:\s+(\d+) kB`)
)

// TestLinuxBoot boots the minimal Linux guest with 1, 2 and 4 vCPUs, reads
// the CPU count and memory size back over the serial console, and checks
// how it ends: ACPI power-off, or (acpi=off, CPUs from the MP table) the
// reboot the guest falls back to without ACPI. The 4-vCPU guest boots the
// ELF vmlinux through its PVH entry; the others a host-unpacked bzImage.
func TestLinuxBoot(t *testing.T) {
	cases := []struct {
		cpus   int
		mem    uint64
		pvh    bool
		extra  string
		reason ExitReason
	}{
		{1, 256, false, "", ExitPowerOff},
		{2, 512, false, "acpi=off", ExitReset},
		{4, 1024, true, "", ExitPowerOff},
	}
	for _, c := range cases {
		c := c
		name := fmt.Sprintf("%dcpu_%dM%s", c.cpus, c.mem, strings.ReplaceAll(c.extra, "=", "_"))
		if c.pvh {
			name += "_pvh"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			con, ex := bootLinux(t, c.cpus, c.mem, c.pvh, c.extra, "echo NPROC=$(nproc); grep MemTotal /proc/meminfo")
			if ex.Reason != c.reason {
				t.Fatalf("exit %s (%v), want %s; console:\n%s", ex.Reason, ex.Err, c.reason, con)
			}
			if !strings.Contains(con, "GUEST-READY") {
				t.Fatalf("no GUEST-READY marker; console:\n%s", con)
			}
			m := nprocRe.FindStringSubmatch(con)
			if m == nil || m[1] != strconv.Itoa(c.cpus) {
				t.Errorf("guest sees %v CPUs, want %d; console:\n%s", m, c.cpus, con)
			}
			mm := memTotalRe.FindStringSubmatch(con)
			if mm == nil {
				t.Fatalf("no MemTotal; console:\n%s", con)
			}
			kb, _ := strconv.ParseUint(mm[1], 10, 64)
			// The kernel keeps its own image and reserved areas out of MemTotal.
			if kb > c.mem*1024 || kb < c.mem*1024*80/100 {
				t.Errorf("MemTotal %d kB for a %d MiB guest", kb, c.mem)
			}
		})
	}
}

// TestLinuxCPUBaseline boots Linux with a CPU feature list that leaves out
// one feature this host offers (as a cluster's baseline does when another
// host lacks it): the guest's /proc/cpuinfo lacks it and keeps the rest,
// and the machine reports the features the guest got.
func TestLinuxCPUBaseline(t *testing.T) {
	// Which features the host's KVM offers: a machine built, not run.
	var a kvmtest.Asm
	a.Exit(0)
	probe := newFlat(t, 1, a.B, nil)
	host := probe.CPUFeatures()
	var drop, keep string
	for _, f := range []string{"avx2", "sse4_2", "popcnt", "aes", "ssse3"} {
		if slices.Contains(host, f) {
			if drop == "" {
				drop = f
			} else if keep == "" {
				keep = f
			}
		}
	}
	if drop == "" || keep == "" {
		t.Fatalf("this host's KVM offers too few common features to test a baseline: %v", host)
	}
	var baseline []string
	for _, f := range host {
		if f != drop {
			baseline = append(baseline, f)
		}
	}
	var got []string
	con, ex := bootLinuxWith(t, 1, 256, false, "", "grep -m1 '^flags' /proc/cpuinfo", func(c *Config) { c.CPUFeatures = baseline })
	if ex.Reason != ExitPowerOff {
		t.Fatalf("exit %s (%v); console:\n%s", ex.Reason, ex.Err, con)
	}
	for _, l := range strings.Split(con, "\n") {
		if strings.HasPrefix(l, "flags") {
			got = strings.Fields(strings.TrimPrefix(strings.TrimSpace(l), "flags"))
		}
	}
	if slices.Contains(got, drop) || !slices.Contains(got, keep) {
		t.Errorf("guest flags %v: want %s gone and %s kept; console:\n%s", got, drop, keep, con)
	}
	t.Logf("baseline without %s: the guest kept %s and %d other flags", drop, keep, len(got)-1)
}
