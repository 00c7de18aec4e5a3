package placementtest

import (
	"fmt"
	"math"
	"slices"

	"github.com/govisor/govisor/internal/cluster/placement"
)

// limits returns a host's vCPU and memory limits under cfg, computed
// apart from the placement package.
func limits(h placement.Host, cfg placement.Config) (int, uint64) {
	cr, mr := cfg.CPUOvercommit, cfg.MemoryOvercommit
	if cr == 0 {
		cr = placement.DefaultCPUOvercommit
	}
	if mr == 0 {
		mr = placement.DefaultMemoryOvercommit
	}
	return int(math.Floor(float64(h.CPUs)*cr + 1e-9)), uint64(math.Floor(float64(h.MemoryMiB)*mr + 1e-9))
}

// host finds a host by name.
func host(c placement.Cluster, name string) (placement.Host, bool) {
	for _, h := range c.Hosts {
		if h.Name == name {
			return h, true
		}
	}
	return placement.Host{}, false
}

// HostFits says which filters would refuse vm on host given the VMs of c
// (vm itself not counted), by brute force: it returns nil when host
// would take vm.
func HostFits(c placement.Cluster, cfg placement.Config, vm placement.VM, name string) []placement.Filter {
	h, ok := host(c, name)
	if !ok {
		return []placement.Filter{"no such host"}
	}
	var out []placement.Filter
	if h.State != placement.HostReady {
		out = append(out, placement.FilterState)
	}
	cpus, mem := vm.CPUs, vm.MemoryMiB
	for _, o := range c.VMs {
		if o.Host == name && o.Name != vm.Name {
			cpus, mem = cpus+o.CPUs, mem+o.MemoryMiB
		}
	}
	cl, ml := limits(h, cfg)
	if cpus > cl {
		out = append(out, placement.FilterCPU)
	}
	if mem > ml {
		out = append(out, placement.FilterMemory)
	}
	out = append(out, staticFilters(c, vm, h)...)
	for _, o := range c.VMs {
		if o.Host == "" || o.Name == vm.Name {
			continue
		}
		for _, g := range vm.Affinity {
			if o.Host != name && slices.Contains(o.Affinity, g) && !slices.Contains(out, placement.FilterAffinity) {
				out = append(out, placement.FilterAffinity)
			}
		}
		for _, g := range vm.AntiAffinity {
			if o.Host == name && slices.Contains(o.AntiAffinity, g) && !slices.Contains(out, placement.FilterAntiAffinity) {
				out = append(out, placement.FilterAntiAffinity)
			}
		}
	}
	return out
}

// staticFilters checks what does not depend on other VMs: storage, the
// CPU model and the hard host rules.
func staticFilters(c placement.Cluster, vm placement.VM, h placement.Host) []placement.Filter {
	var out []placement.Filter
	if !vm.MirrorDisks {
		for _, name := range vm.Pools {
			i := slices.IndexFunc(c.Pools, func(p placement.Pool) bool { return p.Name == name })
			if i < 0 || !c.Pools[i].Shared && c.Pools[i].Host != h.Name {
				out = append(out, placement.FilterStorage)
				break
			}
		}
	}
	cpuOK := vm.CPUVendor == "" || vm.CPUVendor == h.CPU.Vendor
	for _, f := range vm.CPUFeatures {
		cpuOK = cpuOK && slices.Contains(h.CPU.Features, f)
	}
	if !cpuOK {
		out = append(out, placement.FilterCPUModel)
	}
	for _, r := range vm.HostRules {
		sel, err := placement.ParseSelector(r.Selector)
		if err != nil {
			return append(out, placement.FilterHostRule)
		}
		if m := sel.Matches(h.Labels); r.Kind == placement.Must && !m || r.Kind == placement.MustNot && m {
			out = append(out, placement.FilterHostRule)
			break
		}
	}
	return out
}

// Violations lists every broken rule of the placed VMs of c: a host over
// its limits, a VM whose storage, CPU or hard host rules its host does
// not meet, an affinity group split over hosts, an anti-affinity group
// with two members on one host. Host states are not checked (a VM may sit
// on a host that failed); the caller checks the hosts it moved VMs to.
func Violations(c placement.Cluster, cfg placement.Config) []string {
	var out []string
	type use struct {
		cpus int
		mem  uint64
	}
	used := map[string]use{}
	for _, vm := range c.VMs {
		if vm.Host == "" {
			continue
		}
		h, ok := host(c, vm.Host)
		if !ok {
			out = append(out, fmt.Sprintf("%s on unknown host %s", vm.Name, vm.Host))
			continue
		}
		u := used[vm.Host]
		used[vm.Host] = use{u.cpus + vm.CPUs, u.mem + vm.MemoryMiB}
		for _, f := range staticFilters(c, vm, h) {
			out = append(out, fmt.Sprintf("%s on %s breaks %s", vm.Name, vm.Host, f))
		}
		for _, o := range c.VMs {
			if o.Host == "" || o.Name <= vm.Name {
				continue
			}
			for _, g := range vm.Affinity {
				if slices.Contains(o.Affinity, g) && o.Host != vm.Host {
					out = append(out, fmt.Sprintf("affinity group %s split: %s on %s, %s on %s", g, vm.Name, vm.Host, o.Name, o.Host))
				}
			}
			for _, g := range vm.AntiAffinity {
				if slices.Contains(o.AntiAffinity, g) && o.Host == vm.Host {
					out = append(out, fmt.Sprintf("anti-affinity group %s: %s and %s both on %s", g, vm.Name, o.Name, vm.Host))
				}
			}
		}
	}
	for _, h := range c.Hosts {
		cl, ml := limits(h, cfg)
		if u := used[h.Name]; u.cpus > cl || u.mem > ml {
			out = append(out, fmt.Sprintf("%s over its limits: %d/%d vCPUs, %d/%d MiB", h.Name, u.cpus, cl, u.mem, ml))
		}
	}
	return out
}
