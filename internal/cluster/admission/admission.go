// Package admission keeps failover capacity free: with HA on, a VM whose
// start would leave too little capacity to restart the HA VMs of the
// cluster's largest host elsewhere is refused (or started with a warning,
// by policy), with the reason.
//
// The largest host is the one whose failure needs the most capacity to
// absorb: its HA VMs' memory and vCPUs as a fraction of what the other
// ready hosts have free, in the binding dimension. Rather than reserve
// slots or a percentage (vSphere's approximations), admission runs the
// very batch placement HA would run after that host's death, so that
// rules, fragmentation and CPU models count.
package admission

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/govisor/govisor/internal/cluster/placement"
)

// Policy says what admission does with a VM whose start would leave too
// little failover capacity.
type Policy string

// Policies.
const (
	Refuse Policy = "refuse" // refuse the VM (the default)
	Warn   Policy = "warn"   // start it, with a warning
	Off    Policy = "off"    // do not check failover capacity
)

// Options tune admission; the zero value refuses and tolerates one host
// failure.
type Options struct {
	Policy Policy
	// HostFailures is how many hosts may fail at once (the largest ones);
	// zero: 1.
	HostFailures int
	// AllHosts simulates the failure of every ready host, one at a time,
	// rather than the largest's only: exact, and slower on a large
	// cluster. It needs HostFailures 1.
	AllHosts bool
}

// ErrOptions is wrapped by errors about bad Options.
var ErrOptions = errors.New("admission: bad options")

// withDefaults fills zero fields and checks the others.
func (o Options) withDefaults() (Options, error) {
	if o.Policy == "" {
		o.Policy = Refuse
	}
	if o.Policy != Refuse && o.Policy != Warn && o.Policy != Off {
		return o, fmt.Errorf("%w: policy %q: use %q, %q or %q", ErrOptions, o.Policy, Refuse, Warn, Off)
	}
	if o.HostFailures == 0 {
		o.HostFailures = 1
	}
	if o.HostFailures < 0 {
		return o, fmt.Errorf("%w: %d host failures: give 1 or more", ErrOptions, o.HostFailures)
	}
	if o.AllHosts && o.HostFailures != 1 {
		return o, fmt.Errorf("%w: AllHosts simulates one failure at a time: set HostFailures to 1", ErrOptions)
	}
	return o, nil
}

// Demand is what a host's failure asks of the others.
type Demand struct {
	Host      string
	VMs       int // HA VMs
	CPUs      int64
	MemoryMiB uint64
	// Fraction is the demand over what the other ready hosts have free,
	// in the binding dimension (+Inf: they have nothing free).
	Fraction float64
}

// Demands ranks the ready hosts by what their failure would ask of the
// others, the largest first (then by name).
func Demands(s *placement.State) []Demand {
	type free struct {
		cpus int64
		mem  uint64
	}
	byHost := map[string]*Demand{}
	frees := map[string]free{}
	var total free
	for _, h := range s.Hosts() {
		if h.State != placement.HostReady {
			continue
		}
		byHost[h.Name] = &Demand{Host: h.Name}
		u, _ := s.Usage(h.Name)
		f := free{max(u.CPULimit-u.CPUs, 0), u.MemoryLimitMiB - min(u.MemoryMiB, u.MemoryLimitMiB)}
		frees[h.Name] = f
		total.cpus, total.mem = total.cpus+f.cpus, total.mem+f.mem
	}
	for vm := range s.All() {
		if d := byHost[vm.Host]; d != nil && vm.HA {
			d.VMs, d.CPUs, d.MemoryMiB = d.VMs+1, d.CPUs+int64(vm.CPUs), d.MemoryMiB+vm.MemoryMiB
		}
	}
	out := make([]Demand, 0, len(byHost))
	for name, d := range byHost {
		f := frees[name]
		d.Fraction = max(fraction(float64(d.CPUs), float64(total.cpus-f.cpus)), fraction(float64(d.MemoryMiB), float64(total.mem-f.mem)))
		out = append(out, *d)
	}
	slices.SortFunc(out, func(a, b Demand) int {
		return cmp.Or(cmp.Compare(b.Fraction, a.Fraction), cmp.Compare(b.MemoryMiB, a.MemoryMiB), strings.Compare(a.Host, b.Host))
	})
	return out
}

// fraction is need over have, +Inf when there is need and nothing to have.
func fraction(need, have float64) float64 {
	switch {
	case need == 0:
		return 0
	case have <= 0:
		return math.Inf(1)
	}
	return need / have
}

// Failover is the outcome of a simulated failure: the HA VMs of the
// failed hosts placed as HA would place them, and those that fit nowhere.
type Failover struct {
	Failed  []Demand // the hosts that failed
	Placed  []placement.Placement
	Refused []placement.Failure
}

// OK says whether every HA VM of the failed hosts found a host.
func (f Failover) OK() bool { return len(f.Refused) == 0 }

// Simulate fails hosts in a clone of s and places their HA VMs with
// PlaceBatch, as HA would; s is not changed.
func Simulate(s *placement.State, hosts []string) (Failover, error) {
	c := s.Clone()
	var ha []placement.VM
	var f Failover
	for _, name := range hosts {
		if err := c.SetHostState(name, placement.HostUnreachable); err != nil {
			return f, fmt.Errorf("admission: simulating the failure of %s: %w", name, err)
		}
		d := Demand{Host: name}
		for _, vm := range c.VMsOn(name) {
			c.Remove(vm.Name) // its VMs die with it
			if vm.HA {
				ha = append(ha, vm)
				d.VMs, d.CPUs, d.MemoryMiB = d.VMs+1, d.CPUs+int64(vm.CPUs), d.MemoryMiB+vm.MemoryMiB
			}
		}
		f.Failed = append(f.Failed, d)
	}
	res := c.PlaceBatch(ha)
	f.Placed, f.Refused = res.Placed, res.Failed
	return f, nil
}

// Check simulates the failures Options ask for on s: it returns the first
// failover that leaves an HA VM without a host (or the last simulated,
// when all succeed) and whether all succeeded.
func Check(s *placement.State, o Options) (Failover, bool, error) {
	o, err := o.withDefaults()
	if err != nil {
		return Failover{}, false, err
	}
	demands := Demands(s)
	var sets [][]string
	if o.AllHosts {
		for _, d := range demands {
			sets = append(sets, []string{d.Host})
		}
	} else {
		var worst []string
		for _, d := range demands[:min(o.HostFailures, len(demands))] {
			worst = append(worst, d.Host)
		}
		sets = append(sets, worst)
	}
	var f Failover
	for _, hosts := range sets {
		if f, err = Simulate(s, hosts); err != nil {
			return f, false, err
		}
		for i := range f.Failed {
			for _, d := range demands {
				if d.Host == f.Failed[i].Host {
					f.Failed[i].Fraction = d.Fraction
				}
			}
		}
		if !f.OK() {
			return f, false, nil
		}
	}
	return f, true, nil
}
