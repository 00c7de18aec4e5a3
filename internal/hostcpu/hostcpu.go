// Package hostcpu reads what this host's CPU is and offers (vendor, model,
// feature flags) from /proc/cpuinfo, for the cluster's CPU baseline: a VM
// may move only to hosts that offer every feature it was started with.
package hostcpu

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// CPU is one host's processor as Linux reports it.
type CPU struct {
	Vendor   string   // vendor_id: GenuineIntel, AuthenticAMD, ...
	Model    string   // model name
	Features []string // flags, sorted, without duplicates
}

// maxLine bounds one /proc/cpuinfo line (flags lines are a few KiB).
const maxLine = 1 << 16

// Read reads this host's CPU from /proc/cpuinfo.
func Read() (CPU, error) {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return CPU{}, fmt.Errorf("hostcpu: %w", err)
	}
	defer f.Close()
	return Parse(f)
}

// Parse reads the first processor's vendor_id, model name and flags from
// /proc/cpuinfo text (every processor of a host is alike for the baseline).
func Parse(r io.Reader) (CPU, error) {
	var c CPU
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxLine)
	seen := 0
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			if seen > 0 {
				break // the end of the first processor's block
			}
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		seen++
		value = strings.TrimSpace(value)
		switch strings.TrimSpace(key) {
		case "vendor_id":
			c.Vendor = value
		case "model name":
			c.Model = value
		case "flags":
			c.Features = strings.Fields(value)
		}
	}
	if err := sc.Err(); err != nil {
		return CPU{}, fmt.Errorf("hostcpu: read cpuinfo: %w", err)
	}
	if c.Vendor == "" || len(c.Features) == 0 {
		return CPU{}, fmt.Errorf("hostcpu: no vendor_id and flags in cpuinfo (not an x86 Linux host?)")
	}
	slices.Sort(c.Features)
	c.Features = slices.Compact(c.Features)
	return c, nil
}

// PVMModule is where the kvm_pvm module shows itself once loaded.
const PVMModule = "/sys/module/kvm_pvm"

// SoftwareKVM reports whether this host's /dev/kvm is kvm_pvm (the
// software KVM of a PVM guest: its CPL0 emulator needs a CPU template, see
// DESIGN.md) rather than hardware-assisted KVM: the module is loaded, or
// the CPU offers neither VMX nor SVM.
func SoftwareKVM() bool {
	if _, err := os.Stat(PVMModule); err == nil {
		return true
	}
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "flags") {
			f := " " + line + " "
			return !strings.Contains(f, " vmx ") && !strings.Contains(f, " svm ")
		}
	}
	return false
}
