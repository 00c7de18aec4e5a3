package placement

import (
	"errors"
	"fmt"
	"iter"
	"maps"
	"math"
	"slices"
	"strings"
)

// ErrInvalid is wrapped by errors about a malformed snapshot or VM.
var ErrInvalid = errors.New("placement: invalid input")

// State is a cluster snapshot with its allocations, which placements
// update. Build one with New.
type State struct {
	cfg   Config
	hosts []hostInfo // sorted by name, so that index order breaks ties
	index map[string]int32
	pools map[string]Pool
	vms   map[string]placed
	// affinity and anti map a group to its members by host index.
	affinity map[string]map[int32][]string
	anti     map[string]map[int32][]string
	// features numbers every CPU feature some host offers.
	features map[string]int
	// rules caches, per selector text, the hosts it matches (host labels
	// never change in a State).
	rules map[string]*ruleMask
}

// hostInfo is a host with its limits and allocations.
type hostInfo struct {
	Host
	ready    bool
	cpuLimit int64 // vCPUs: CPUs × CPU overcommit
	memLimit uint64
	cpuUsed  int64
	memUsed  uint64
	features bitset
}

// placed is a VM and the index of its host.
type placed struct {
	vm   VM
	host int32
}

// ruleMask is a parsed selector and the hosts it matches.
type ruleMask struct {
	sel   Selector
	hosts bitset
	err   error
}

// Usage is a host's allocation against its limits.
type Usage struct {
	CPUs           int64 // vCPUs allocated
	CPULimit       int64 // vCPUs allowed: host CPUs × CPU overcommit
	MemoryMiB      uint64
	MemoryLimitMiB uint64
}

// New builds a State from a snapshot. It refuses a malformed snapshot
// (duplicate names, a VM on an unknown host, a bad rule), saying which.
func New(c Cluster, cfg Config) (*State, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &State{
		cfg:      cfg,
		index:    make(map[string]int32, len(c.Hosts)),
		pools:    make(map[string]Pool, len(c.Pools)),
		vms:      make(map[string]placed, len(c.VMs)),
		affinity: map[string]map[int32][]string{},
		anti:     map[string]map[int32][]string{},
		features: map[string]int{},
		rules:    map[string]*ruleMask{},
	}
	hosts := slices.Clone(c.Hosts)
	slices.SortFunc(hosts, func(a, b Host) int { return strings.Compare(a.Name, b.Name) })
	for _, h := range hosts {
		for _, f := range h.CPU.Features {
			if _, ok := s.features[f]; !ok {
				s.features[f] = len(s.features)
			}
		}
	}
	for i, h := range hosts {
		if h.Name == "" {
			return nil, fmt.Errorf("%w: a host has no name: name every host", ErrInvalid)
		}
		if i > 0 && hosts[i-1].Name == h.Name {
			return nil, fmt.Errorf("%w: host %s is listed twice: list each host once", ErrInvalid, h.Name)
		}
		if h.CPUs < 0 {
			return nil, fmt.Errorf("%w: host %s has %d CPUs: give a count of 0 or more", ErrInvalid, h.Name, h.CPUs)
		}
		hi := hostInfo{
			Host:     h,
			ready:    h.State == HostReady,
			cpuLimit: int64(math.Floor(float64(h.CPUs)*cfg.CPUOvercommit + 1e-9)),
			memLimit: uint64(math.Floor(float64(h.MemoryMiB)*cfg.MemoryOvercommit + 1e-9)),
			features: newBitset(len(s.features)),
		}
		for _, f := range h.CPU.Features {
			hi.features.set(s.features[f])
		}
		s.index[h.Name] = int32(i)
		s.hosts = append(s.hosts, hi)
	}
	for _, p := range c.Pools {
		if _, dup := s.pools[p.Name]; dup || p.Name == "" {
			return nil, fmt.Errorf("%w: pool %q is unnamed or listed twice: list each pool once", ErrInvalid, p.Name)
		}
		if !p.Shared && p.Host == "" {
			return nil, fmt.Errorf("%w: dir pool %s has no host: set the host it lives on, or mark it shared", ErrInvalid, p.Name)
		}
		s.pools[p.Name] = p
	}
	for _, vm := range c.VMs {
		if vm.Host == "" {
			continue
		}
		if _, dup := s.vms[vm.Name]; dup {
			return nil, fmt.Errorf("%w: vm %s is listed twice: list each VM once", ErrInvalid, vm.Name)
		}
		if err := s.Assign(vm, vm.Host); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// withDefaults fills zero fields and checks the others.
func (c Config) withDefaults() (Config, error) {
	if c.Strategy == "" {
		c.Strategy = Spread
	}
	if c.Strategy != Spread && c.Strategy != Pack {
		return c, fmt.Errorf("%w: strategy %q: use %q or %q", ErrInvalid, c.Strategy, Spread, Pack)
	}
	if c.CPUOvercommit == 0 {
		c.CPUOvercommit = DefaultCPUOvercommit
	}
	if c.MemoryOvercommit == 0 {
		c.MemoryOvercommit = DefaultMemoryOvercommit
	}
	for _, r := range []float64{c.CPUOvercommit, c.MemoryOvercommit} {
		if !(r > 0 && r <= 1000) {
			return c, fmt.Errorf("%w: overcommit ratio %v: give a ratio above 0 (1.0: none)", ErrInvalid, r)
		}
	}
	return c, nil
}

// Config is the configuration in force, defaults filled in.
func (s *State) Config() Config { return s.cfg }

// Clone returns an independent copy: placements on one do not show in
// the other.
func (s *State) Clone() *State {
	c := *s
	c.hosts = slices.Clone(s.hosts)
	c.vms = maps.Clone(s.vms)
	c.affinity = cloneGroups(s.affinity)
	c.anti = cloneGroups(s.anti)
	c.rules = maps.Clone(s.rules) // entries are never changed once made
	return &c
}

// cloneGroups deep-copies a group index.
func cloneGroups(g map[string]map[int32][]string) map[string]map[int32][]string {
	out := make(map[string]map[int32][]string, len(g))
	for name, byHost := range g {
		m := make(map[int32][]string, len(byHost))
		for h, vms := range byHost {
			m[h] = slices.Clone(vms)
		}
		out[name] = m
	}
	return out
}

// Hosts lists the hosts, sorted by name, with their current state.
func (s *State) Hosts() []Host {
	out := make([]Host, len(s.hosts))
	for i := range s.hosts {
		out[i] = s.hosts[i].Host
	}
	return out
}

// Host returns the named host.
func (s *State) Host(name string) (Host, bool) {
	i, ok := s.index[name]
	if !ok {
		return Host{}, false
	}
	return s.hosts[i].Host, true
}

// SetHostState changes a host's state (a host entering maintenance, a
// host failing in a what-if).
func (s *State) SetHostState(name string, st HostState) error {
	i, ok := s.index[name]
	if !ok {
		return fmt.Errorf("%w: host %s is not in the cluster", ErrInvalid, name)
	}
	s.hosts[i].State, s.hosts[i].ready = st, st == HostReady
	return nil
}

// Usage returns a host's allocation and limits.
func (s *State) Usage(host string) (Usage, bool) {
	i, ok := s.index[host]
	if !ok {
		return Usage{}, false
	}
	h := &s.hosts[i]
	return Usage{CPUs: h.cpuUsed, CPULimit: h.cpuLimit, MemoryMiB: h.memUsed, MemoryLimitMiB: h.memLimit}, true
}

// VM returns a placed VM, its Host set.
func (s *State) VM(name string) (VM, bool) {
	p, ok := s.vms[name]
	return p.vm, ok
}

// VMs lists the placed VMs, sorted by name.
func (s *State) VMs() []VM { return s.VMsOn("") }

// All yields every placed VM, in no set order (cheaper than VMs on a
// large cluster).
func (s *State) All() iter.Seq[VM] {
	return func(yield func(VM) bool) {
		for _, p := range s.vms {
			if !yield(p.vm) {
				return
			}
		}
	}
}

// VMsOn lists the VMs placed on host (every host: ""), sorted by name.
func (s *State) VMsOn(host string) []VM {
	var out []VM
	for _, p := range s.vms {
		if host == "" || p.vm.Host == host {
			out = append(out, p.vm)
		}
	}
	slices.SortFunc(out, func(a, b VM) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Assign records vm on host without checking any filter (what an agent
// reports, a user's explicit host); a VM already placed is moved.
func (s *State) Assign(vm VM, host string) error {
	i, ok := s.index[host]
	if !ok {
		return fmt.Errorf("%w: vm %s is on host %q, which is not in the cluster: add the host or clear the VM's host", ErrInvalid, vm.Name, host)
	}
	if err := s.validate(&vm); err != nil {
		return err
	}
	s.Remove(vm.Name)
	s.add(vm, i)
	return nil
}

// Remove takes a VM off its host, freeing its allocation; it says whether
// the VM was placed.
func (s *State) Remove(name string) bool {
	p, ok := s.vms[name]
	if !ok {
		return false
	}
	h := &s.hosts[p.host]
	h.cpuUsed -= int64(p.vm.CPUs)
	h.memUsed -= p.vm.MemoryMiB
	for _, g := range p.vm.Affinity {
		ungroup(s.affinity, g, p.host, name)
	}
	for _, g := range p.vm.AntiAffinity {
		ungroup(s.anti, g, p.host, name)
	}
	delete(s.vms, name)
	return true
}

// add places vm on host i.
func (s *State) add(vm VM, i int32) {
	h := &s.hosts[i]
	vm.Host = h.Name
	h.cpuUsed += int64(vm.CPUs)
	h.memUsed += vm.MemoryMiB
	for _, g := range vm.Affinity {
		group(s.affinity, g, i, vm.Name)
	}
	for _, g := range vm.AntiAffinity {
		group(s.anti, g, i, vm.Name)
	}
	s.vms[vm.Name] = placed{vm: vm, host: i}
}

// group adds a member to a group index.
func group(idx map[string]map[int32][]string, g string, host int32, vm string) {
	m := idx[g]
	if m == nil {
		m = map[int32][]string{}
		idx[g] = m
	}
	m[host] = append(m[host], vm)
}

// ungroup removes a member from a group index.
func ungroup(idx map[string]map[int32][]string, g string, host int32, vm string) {
	m := idx[g]
	members := m[host]
	if i := slices.Index(members, vm); i >= 0 {
		members = slices.Delete(members, i, i+1)
	}
	if len(members) == 0 {
		delete(m, host)
	} else {
		m[host] = members
	}
	if len(m) == 0 {
		delete(idx, g)
	}
}

// validate checks a VM's own fields.
func (s *State) validate(vm *VM) error {
	switch {
	case vm.Name == "":
		return fmt.Errorf("%w: a VM has no name: name it", ErrInvalid)
	case vm.CPUs < 1:
		return fmt.Errorf("%w: vm %s has %d vCPUs: give it at least 1", ErrInvalid, vm.Name, vm.CPUs)
	case vm.MemoryMiB < 1:
		return fmt.Errorf("%w: vm %s has no memory: give it a memory size", ErrInvalid, vm.Name)
	}
	for _, r := range vm.HostRules {
		if !r.Kind.valid() {
			return fmt.Errorf("%w: vm %s: host rule %q: kind %q: use must, must-not, should or should-not", ErrInvalid, vm.Name, r.String(), r.Kind)
		}
		if m := s.rule(r.Selector); m.err != nil {
			return fmt.Errorf("%w: vm %s: %w", ErrInvalid, vm.Name, m.err)
		}
	}
	return nil
}

// rule returns the parsed selector and its host mask, from the cache.
func (s *State) rule(text string) *ruleMask {
	if m, ok := s.rules[text]; ok {
		return m
	}
	m := &ruleMask{hosts: newBitset(len(s.hosts))}
	m.sel, m.err = ParseSelector(text)
	if m.err == nil {
		for i := range s.hosts {
			if m.sel.Matches(s.hosts[i].Labels) {
				m.hosts.set(i)
			}
		}
	}
	s.rules[text] = m
	return m
}
