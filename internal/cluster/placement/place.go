package placement

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Choose picks the host for vm without placing it. A VM already placed is
// judged as if it were not (its own allocation and groups do not count).
func (s *State) Choose(vm VM) (string, error) {
	if old, ok := s.vms[vm.Name]; ok {
		s.Remove(vm.Name)
		defer s.add(old.vm, old.host)
	}
	r, err := s.compile(&vm)
	if err != nil {
		return "", err
	}
	i := s.best(r)
	if i < 0 {
		return "", s.noHost(r)
	}
	return s.hosts[i].Name, nil
}

// Place picks the host for vm and places it there, updating the
// allocations; a VM already placed is moved (or left where it was when it
// fits nowhere).
func (s *State) Place(vm VM) (string, error) {
	old, was := s.vms[vm.Name]
	s.Remove(vm.Name)
	r, err := s.compile(&vm)
	if err == nil {
		if i := s.best(r); i >= 0 {
			s.add(vm, int32(i))
			return s.hosts[i].Name, nil
		}
		err = s.noHost(r)
	}
	if was {
		s.add(old.vm, old.host)
	}
	return "", err
}

// BatchResult is the outcome of PlaceBatch: the VMs placed, in placement
// order, and those that fit nowhere, each with its error.
type BatchResult struct {
	Placed []Placement
	Failed []Failure
}

// Failure is a VM a batch could not place.
type Failure struct {
	VM  string
	Err error
}

// PlaceBatch places several VMs (the HA VMs of a dead host, an evacuated
// host's VMs): first it takes every one of them off its current host, then
// places them one by one, highest Priority first (then the largest
// memory, then by name), each placement updating the allocations, so that
// two anti-affine VMs of one batch land apart. A VM that fits nowhere is
// left unplaced and listed in Failed.
func (s *State) PlaceBatch(vms []VM) BatchResult {
	order := slices.Clone(vms)
	slices.SortStableFunc(order, func(a, b VM) int {
		return cmp.Or(cmp.Compare(b.Priority, a.Priority), cmp.Compare(b.MemoryMiB, a.MemoryMiB),
			cmp.Compare(b.CPUs, a.CPUs), strings.Compare(a.Name, b.Name))
	})
	for _, vm := range order {
		s.Remove(vm.Name)
	}
	var res BatchResult
	seen := make(map[string]bool, len(order))
	for k := range order {
		vm := &order[k]
		if seen[vm.Name] {
			res.Failed = append(res.Failed, Failure{vm.Name, fmt.Errorf("%w: vm %s is in the batch twice: list it once", ErrInvalid, vm.Name)})
			continue
		}
		seen[vm.Name] = true
		r, err := s.compile(vm)
		if err != nil {
			res.Failed = append(res.Failed, Failure{vm.Name, err})
			continue
		}
		i := s.best(r)
		if i < 0 {
			res.Failed = append(res.Failed, Failure{vm.Name, s.noHost(r)})
			continue
		}
		s.add(*vm, int32(i))
		res.Placed = append(res.Placed, Placement{VM: vm.Name, Host: s.hosts[i].Name})
	}
	return res
}

// Check says whether host could take vm (as if vm were not placed): nil,
// or the host's refusal with its reasons. The error is for bad input.
func (s *State) Check(vm VM, host string) (*Rejection, error) {
	i, ok := s.index[host]
	if !ok {
		return nil, fmt.Errorf("%w: host %s is not in the cluster", ErrInvalid, host)
	}
	if old, ok := s.vms[vm.Name]; ok {
		s.Remove(vm.Name)
		defer s.add(old.vm, old.host)
	}
	r, err := s.compile(&vm)
	if err != nil {
		return nil, err
	}
	if s.feasible(r, int(i)) {
		return nil, nil
	}
	rej := s.rejection(r, int(i))
	return &rej, nil
}

// Explain lists every host that would refuse vm, with its reasons, sorted
// by host name (as if vm were not placed).
func (s *State) Explain(vm VM) ([]Rejection, error) {
	if old, ok := s.vms[vm.Name]; ok {
		s.Remove(vm.Name)
		defer s.add(old.vm, old.host)
	}
	r, err := s.compile(&vm)
	if err != nil {
		return nil, err
	}
	var out []Rejection
	for i := range s.hosts {
		if !s.feasible(r, i) {
			out = append(out, s.rejection(r, i))
		}
	}
	return out, nil
}

// best returns the index of the best feasible host, or -1: the most
// preferred (soft rules), then the best score, then the first by name.
func (s *State) best(r *request) int {
	best, bestPref, bestScore := -1, 0, 0.0
	for i := range s.hosts {
		if !s.feasible(r, i) {
			continue
		}
		pref, score := r.preference(i), s.score(r, i)
		if best < 0 || pref > bestPref || pref == bestPref && score > bestScore {
			best, bestPref, bestScore = i, pref, score
		}
	}
	return best
}

// preference counts the should rules host i meets, minus the should-not
// rules it meets.
func (r *request) preference(i int) int {
	n := 0
	for _, m := range r.should {
		if m.hosts.has(i) {
			n++
		}
	}
	for _, m := range r.shouldNot {
		if m.hosts.has(i) {
			n--
		}
	}
	return n
}

// score rates a feasible host i (higher is better) by its load after
// placement in its binding dimension (the larger of the vCPU and memory
// fractions): spread prefers it low, pack high.
func (s *State) score(r *request, i int) float64 {
	h := &s.hosts[i]
	load := max(float64(h.cpuUsed+r.cpus)/float64(h.cpuLimit), float64(h.memUsed+r.mem)/float64(h.memLimit))
	if s.cfg.Strategy == Pack {
		return load
	}
	return -load
}

// rejection explains why host i refuses the request.
func (s *State) rejection(r *request, i int) Rejection {
	rej := Rejection{Host: s.hosts[i].Name}
	for _, why := range s.explain(r, i) {
		rej.Filters = append(rej.Filters, why.filter)
		rej.Reasons = append(rej.Reasons, why.text)
	}
	return rej
}

// noHost builds the error for a request that fits nowhere.
func (s *State) noHost(r *request) error {
	e := &NoHostError{VM: r.vm.Name, CPUs: r.vm.CPUs, MemoryMiB: r.vm.MemoryMiB}
	for i := range s.hosts {
		e.Rejections = append(e.Rejections, s.rejection(r, i))
	}
	return e
}
