// Package cpubaseline keeps a cluster's CPU baseline: the CPU features
// every host offers (as vSphere EVC and oVirt's cluster CPU type do), so
// that a VM given the baseline can move to any host. Hosts must share a
// vendor (a guest cannot move between Intel and AMD); a host that would
// lower the baseline below what running VMs use is refused, naming the
// features and the VMs.
package cpubaseline

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/govisor/govisor/internal/cluster/placement"
)

// ErrNoVendor is wrapped by the error for a host that reports no vendor.
var ErrNoVendor = errors.New("cpubaseline: no CPU vendor")

// HostCPU is one host's processor.
type HostCPU struct {
	Host string
	CPU  placement.CPU
}

// Baseline is what every host of the cluster offers.
type Baseline struct {
	Vendor string
	// Model is the model every host shares, or empty when they differ
	// (the baseline is then its feature list only).
	Model string
	// Features is the intersection of the hosts' features, sorted.
	Features []string
}

// Compute returns the baseline of hosts: their common vendor and the
// features all of them offer. It refuses hosts of different vendors, and
// a host that reports no vendor.
func Compute(hosts []HostCPU) (Baseline, error) {
	var b Baseline
	if len(hosts) == 0 {
		return b, nil
	}
	byVendor := map[string][]string{}
	for _, h := range hosts {
		if h.CPU.Vendor == "" {
			return b, fmt.Errorf("%w: host %s reports none: check that its agent reads /proc/cpuinfo (vendor_id)", ErrNoVendor, h.Host)
		}
		byVendor[h.CPU.Vendor] = append(byVendor[h.CPU.Vendor], h.Host)
	}
	if len(byVendor) > 1 {
		return b, &VendorError{Hosts: byVendor}
	}
	b.Vendor, b.Model = hosts[0].CPU.Vendor, hosts[0].CPU.Model
	common := set(hosts[0].CPU.Features)
	for _, h := range hosts[1:] {
		if h.CPU.Model != b.Model {
			b.Model = ""
		}
		have := set(h.CPU.Features)
		for f := range common {
			if !have[f] {
				delete(common, f)
			}
		}
	}
	b.Features = slices.Sorted(maps.Keys(common))
	return b, nil
}

// set normalizes features (trimmed, lower case) into a set.
func set(features []string) map[string]bool {
	s := make(map[string]bool, len(features))
	for _, f := range features {
		if f = strings.ToLower(strings.TrimSpace(f)); f != "" {
			s[f] = true
		}
	}
	return s
}

// Missing lists the features (normalized, sorted) the baseline lacks.
func (b Baseline) Missing(features []string) []string {
	have := set(b.Features)
	var out []string
	for f := range set(features) {
		if !have[f] {
			out = append(out, f)
		}
	}
	slices.Sort(out)
	return out
}

// VMCPU is what a running VM's CPU model uses.
type VMCPU struct {
	VM       string
	Host     string
	Features []string
}

// CheckJoin decides whether a host may join (or rejoin, with a new CPU)
// the cluster of hosts where vms run: it returns the new baseline, or
// refuses a host of another vendor (a *VendorError), or one that lacks a
// feature of the current baseline that a running VM uses (a
// *LowersError). A feature the baseline already lacks does not count: the
// joining host does not lower the baseline there.
func CheckJoin(hosts []HostCPU, joining HostCPU, vms []VMCPU) (Baseline, error) {
	var others []HostCPU
	for _, h := range hosts {
		if h.Host != joining.Host {
			others = append(others, h)
		}
	}
	old, err := Compute(others)
	if err != nil {
		return Baseline{}, fmt.Errorf("cpubaseline: the cluster before %s joins: %w", joining.Host, err)
	}
	if joining.CPU.Vendor == "" {
		return Baseline{}, fmt.Errorf("%w: host %s reports none: check that its agent reads /proc/cpuinfo (vendor_id)", ErrNoVendor, joining.Host)
	}
	if len(others) > 0 && joining.CPU.Vendor != old.Vendor {
		return Baseline{}, &VendorError{Joining: joining.Host, Hosts: map[string][]string{
			joining.CPU.Vendor: {joining.Host}, old.Vendor: hostNames(others)}}
	}
	lost := set(Baseline{Features: joining.CPU.Features}.Missing(old.Features)) // baseline features it lacks
	if len(others) == 0 {
		lost = nil // the first host sets the baseline
	}
	used := map[string][]string{}
	for _, vm := range vms {
		for f := range set(vm.Features) {
			if lost[f] {
				used[f] = append(used[f], vm.VM)
			}
		}
	}
	if len(used) > 0 {
		for f := range used {
			slices.Sort(used[f])
		}
		return Baseline{}, &LowersError{Host: joining.Host, VMs: used}
	}
	return Compute(append(others, joining))
}

// hostNames lists the hosts' names.
func hostNames(hosts []HostCPU) []string {
	out := make([]string, len(hosts))
	for i, h := range hosts {
		out[i] = h.Host
	}
	return out
}

// VendorError says hosts mix CPU vendors.
type VendorError struct {
	// Joining is the host whose joining was refused; empty when Compute
	// found the mix.
	Joining string
	// Hosts maps each vendor to its hosts.
	Hosts map[string][]string
}

// Error names the vendors, their hosts, and the fix.
func (e *VendorError) Error() string {
	vendors := slices.Sorted(maps.Keys(e.Hosts))
	parts := make([]string, len(vendors))
	for i, v := range vendors {
		parts[i] = v + ": " + strings.Join(sorted(e.Hosts[v]), ", ")
	}
	mix := strings.Join(parts, "; ")
	if e.Joining != "" {
		return fmt.Sprintf("cpubaseline: host %s cannot join: hosts would mix CPU vendors (%s), and a VM cannot move between vendors: join %s to a cluster of its vendor", e.Joining, mix, e.Joining)
	}
	// Suggest moving the vendor with the fewest hosts.
	few := vendors[0]
	for _, v := range vendors {
		if len(e.Hosts[v]) < len(e.Hosts[few]) {
			few = v
		}
	}
	return fmt.Sprintf("cpubaseline: hosts mix CPU vendors (%s), and a VM cannot move between vendors: move %s to a cluster of their own", mix, strings.Join(sorted(e.Hosts[few]), ", "))
}

// LowersError says a joining host lacks baseline features that running
// VMs use.
type LowersError struct {
	Host string
	// VMs maps each feature the host lacks to the running VMs using it.
	VMs map[string][]string
}

// Features lists the features the host lacks that VMs use, sorted.
func (e *LowersError) Features() []string { return slices.Sorted(maps.Keys(e.VMs)) }

// Error names the host, the features, the VMs, and the fixes.
func (e *LowersError) Error() string {
	fs := e.Features()
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = f + ": " + strings.Join(e.VMs[f], ", ")
	}
	return fmt.Sprintf("cpubaseline: host %s cannot join: its CPU lacks %s, which running VMs use (%s), so it would lower the cluster's CPU baseline below them: restart those VMs with a CPU model without them, or give %s a CPU that has them",
		e.Host, strings.Join(fs, ", "), strings.Join(parts, "; "), e.Host)
}

// sorted returns a sorted copy.
func sorted(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
