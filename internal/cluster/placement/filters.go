package placement

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Filter names a feasibility check, so that callers can count refusals
// by cause.
type Filter string

// Filters, in the order they run.
const (
	FilterState        Filter = "state"         // the host is not ready
	FilterCPU          Filter = "cpu"           // too few vCPUs free
	FilterMemory       Filter = "memory"        // too little memory free
	FilterStorage      Filter = "storage"       // a pool of the VM is not reachable
	FilterCPUModel     Filter = "cpu-model"     // the host's CPU lacks the VM's vendor or features
	FilterHostRule     Filter = "host-rule"     // a must/must-not rule on host labels
	FilterAffinity     Filter = "affinity"      // the VM's affinity group runs elsewhere
	FilterAntiAffinity Filter = "anti-affinity" // a VM of its anti-affinity group runs there
)

// Host indexes a request's pools allow.
const (
	anyHost int32 = -1 // no dir pool: every host
	noHost  int32 = -2 // pools on two hosts, or an unknown pool: none
)

// request is a VM compiled against a State: what each filter needs,
// looked up once per VM rather than once per host.
type request struct {
	vm        *VM
	cpus      int64
	mem       uint64
	poolHost  int32
	features  bitset
	unknownCF bool // the VM needs a CPU feature no host offers
	must      []*ruleMask
	mustNot   []*ruleMask
	should    []*ruleMask
	shouldNot []*ruleMask
	affinity  []map[int32][]string
	anti      []map[int32][]string
}

// compile checks vm and looks up what its filters need. The VM must not
// be placed (its own group membership would count against it).
func (s *State) compile(vm *VM) (*request, error) {
	if err := s.validate(vm); err != nil {
		return nil, err
	}
	r := &request{vm: vm, cpus: int64(vm.CPUs), mem: vm.MemoryMiB, poolHost: anyHost}
	if !vm.MirrorDisks {
		for _, name := range vm.Pools {
			p, ok := s.pools[name]
			switch {
			case !ok:
				r.poolHost = noHost
			case p.Shared:
			default:
				i, known := s.index[p.Host]
				if !known || (r.poolHost != anyHost && r.poolHost != i) {
					r.poolHost = noHost
				} else if r.poolHost == anyHost {
					r.poolHost = i
				}
			}
		}
	}
	r.features = newBitset(len(s.features))
	for _, f := range vm.CPUFeatures {
		if b, ok := s.features[f]; ok {
			r.features.set(b)
		} else {
			r.unknownCF = true
		}
	}
	for _, hr := range vm.HostRules {
		m := s.rule(hr.Selector)
		switch hr.Kind {
		case Must:
			r.must = append(r.must, m)
		case MustNot:
			r.mustNot = append(r.mustNot, m)
		case Should:
			r.should = append(r.should, m)
		case ShouldNot:
			r.shouldNot = append(r.shouldNot, m)
		}
	}
	for _, g := range vm.Affinity {
		if m := s.affinity[g]; len(m) > 0 {
			r.affinity = append(r.affinity, m)
		}
	}
	for _, g := range vm.AntiAffinity {
		if m := s.anti[g]; len(m) > 0 {
			r.anti = append(r.anti, m)
		}
	}
	return r, nil
}

// feasible runs every filter on host i, cheapest first, without building
// any reason (the fast path: most hosts are checked and few explained).
func (s *State) feasible(r *request, i int) bool {
	h := &s.hosts[i]
	return h.ready &&
		h.cpuUsed+r.cpus <= h.cpuLimit && h.memUsed+r.mem <= h.memLimit &&
		(r.poolHost == anyHost || r.poolHost == int32(i)) &&
		r.fitsCPUModel(h) && r.fitsRules(i) && r.fitsGroups(int32(i))
}

// fitsCPUModel checks the vendor and the features.
func (r *request) fitsCPUModel(h *hostInfo) bool {
	return !r.unknownCF && (r.vm.CPUVendor == "" || r.vm.CPUVendor == h.CPU.Vendor) && r.features.subsetOf(h.features)
}

// fitsRules checks the hard VM-host rules.
func (r *request) fitsRules(i int) bool {
	for _, m := range r.must {
		if !m.hosts.has(i) {
			return false
		}
	}
	for _, m := range r.mustNot {
		if m.hosts.has(i) {
			return false
		}
	}
	return true
}

// fitsGroups checks affinity (every placed member on this host) and
// anti-affinity (no placed member on this host).
func (r *request) fitsGroups(i int32) bool {
	for _, m := range r.affinity {
		if _, ok := m[i]; !ok || len(m) > 1 {
			return false
		}
	}
	for _, m := range r.anti {
		if _, ok := m[i]; ok {
			return false
		}
	}
	return true
}

// reason is one filter's refusal of a host.
type reason struct {
	filter Filter
	text   string
}

// explain runs every filter on host i and says why each that refuses
// does (the slow path, for errors and reports).
func (s *State) explain(r *request, i int) []reason {
	h := &s.hosts[i]
	var out []reason
	add := func(f Filter, format string, args ...any) {
		out = append(out, reason{f, fmt.Sprintf(format, args...)})
	}
	if !h.ready {
		add(FilterState, "host is %s (only ready hosts take VMs)", stateName(h.State))
	}
	if h.cpuUsed+r.cpus > h.cpuLimit {
		add(FilterCPU, "%d of %d vCPUs free (%d CPUs × CPU overcommit %s), VM needs %d",
			max(h.cpuLimit-h.cpuUsed, 0), h.cpuLimit, h.CPUs, ratio(s.cfg.CPUOvercommit), r.cpus)
	}
	if h.memUsed+r.mem > h.memLimit {
		free := uint64(0)
		if h.memLimit > h.memUsed {
			free = h.memLimit - h.memUsed
		}
		add(FilterMemory, "%d MiB free of %d MiB, VM needs %d MiB (memory overcommit %s)",
			free, h.memLimit, r.mem, ratio(s.cfg.MemoryOvercommit))
	}
	if !r.vm.MirrorDisks {
		for _, name := range r.vm.Pools {
			p, ok := s.pools[name]
			switch {
			case !ok:
				add(FilterStorage, "pool %s is not defined", name)
			case !p.Shared && p.Host != h.Name:
				add(FilterStorage, "pool %s is a dir pool on %s", name, p.Host)
			}
		}
	}
	if r.vm.CPUVendor != "" && r.vm.CPUVendor != h.CPU.Vendor {
		add(FilterCPUModel, "CPU vendor is %s, VM needs %s", orNone(h.CPU.Vendor), r.vm.CPUVendor)
	}
	if missing := s.missingFeatures(r.vm, h); len(missing) > 0 {
		add(FilterCPUModel, "CPU lacks %s that the VM needs", strings.Join(missing, ", "))
	}
	for _, hr := range r.vm.HostRules {
		m := s.rule(hr.Selector)
		switch {
		case hr.Kind == Must && !m.hosts.has(i):
			add(FilterHostRule, "labels %s do not match rule %q", labelText(h.Labels), hr.String())
		case hr.Kind == MustNot && m.hosts.has(i):
			add(FilterHostRule, "labels %s match rule %q", labelText(h.Labels), hr.String())
		}
	}
	for _, g := range r.vm.Affinity {
		if m := s.affinity[g]; len(m) > 0 {
			if _, ok := m[int32(i)]; !ok || len(m) > 1 {
				add(FilterAffinity, "affinity group %s runs on %s", g, s.membersText(m))
			}
		}
	}
	for _, g := range r.vm.AntiAffinity {
		if members := s.anti[g][int32(i)]; len(members) > 0 {
			add(FilterAntiAffinity, "anti-affinity group %s: %s already here", g, strings.Join(sorted(members), ", "))
		}
	}
	return out
}

// missingFeatures lists the VM's CPU features the host lacks, sorted.
func (s *State) missingFeatures(vm *VM, h *hostInfo) []string {
	var missing []string
	for _, f := range vm.CPUFeatures {
		if b, ok := s.features[f]; !ok || !h.features.has(b) {
			missing = append(missing, f)
		}
	}
	slices.Sort(missing)
	return slices.Compact(missing)
}

// membersText says where a group's members run: "lab1 (web1, web2), lab3 (web3)".
func (s *State) membersText(m map[int32][]string) string {
	idx := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(idx))
	for k, i := range idx {
		parts[k] = fmt.Sprintf("%s (%s)", s.hosts[i].Name, strings.Join(sorted(m[i]), ", "))
	}
	return strings.Join(parts, ", ")
}

// labelText shows labels sorted: "{rack=r1, zone=b}", or "{}".
func labelText(l map[string]string) string {
	keys := slices.Sorted(maps.Keys(l))
	for i, k := range keys {
		keys[i] = k + "=" + l[k]
	}
	return "{" + strings.Join(keys, ", ") + "}"
}

// ratio shows an overcommit ratio with at least one decimal: 1.0, 1.5, 1.25.
func ratio(r float64) string {
	if r == math.Trunc(r) {
		return strconv.FormatFloat(r, 'f', 1, 64)
	}
	return strconv.FormatFloat(r, 'f', -1, 64)
}

// stateName says a host state in words: "in maintenance", "fenced".
func stateName(st HostState) string {
	switch st {
	case HostMaintenance:
		return "in maintenance"
	case HostEnteringMaintenance:
		return "entering maintenance"
	case "":
		return "in no known state"
	case HostReady, HostUnreachable, HostFenced:
		return string(st)
	}
	return fmt.Sprintf("in state %q", string(st))
}

// orNone shows an empty string as "none".
func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// sorted returns a sorted copy.
func sorted(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
