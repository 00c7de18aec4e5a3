package admission

import (
	"errors"
	"fmt"
	"strings"

	"github.com/govisor/govisor/internal/cluster/placement"
)

// Decision is admission's answer for one VM.
type Decision struct {
	VM      string
	Host    string // where the VM goes (placement's choice, or the one asked for)
	Allowed bool
	// Warning (policy warn) or Reason (policy refuse) says why failover
	// capacity would be short, and what to do.
	Warning string
	Reason  string
	// Failover is the simulated failure that decided; nil with policy off.
	Failover *Failover
}

// HostRefusesError says the host a VM asked for cannot take it.
type HostRefusesError struct {
	VM        string
	Rejection placement.Rejection
}

// Error names the host, its reasons, and the fix.
func (e *HostRefusesError) Error() string {
	return fmt.Sprintf("admission: vm %s cannot run on %s: %s: pick another host, or none to let placement choose",
		e.VM, e.Rejection.Host, strings.Join(e.Rejection.Reasons, "; "))
}

// Unwrap makes errors.Is(err, placement.ErrNoHost) hold.
func (e *HostRefusesError) Unwrap() error { return placement.ErrNoHost }

// Admit decides whether vm may start: it places vm in a clone of s (on
// vm.Host when set, else where placement chooses), then checks that the
// HA VMs of the largest host (Options.HostFailures of them, or each host
// with AllHosts) could still be restarted on the others. s is not
// changed; the caller records the VM on Decision.Host when Allowed. The
// error is for a VM that fits nowhere (placement.ErrNoHost) or bad input.
func Admit(s *placement.State, vm placement.VM, o Options) (Decision, error) {
	o, err := o.withDefaults()
	if err != nil {
		return Decision{}, err
	}
	d := Decision{VM: vm.Name}
	after := s.Clone()
	if vm.Host != "" {
		rej, err := after.Check(vm, vm.Host)
		if err != nil {
			return d, err
		}
		if rej != nil {
			return d, &HostRefusesError{VM: vm.Name, Rejection: *rej}
		}
		if err := after.Assign(vm, vm.Host); err != nil {
			return d, err
		}
		d.Host = vm.Host
	} else if d.Host, err = after.Place(vm); err != nil {
		return d, err
	}
	if o.Policy == Off {
		d.Allowed = true
		return d, nil
	}
	f, ok, err := Check(after, o)
	if err != nil {
		return d, err
	}
	d.Failover = &f
	if ok {
		d.Allowed = true
		return d, nil
	}
	before := s.Clone()
	before.Remove(vm.Name)
	_, okBefore, err := Check(before, o)
	if err != nil {
		return d, err
	}
	text := shortText(vm.Name, d.Host, f, !okBefore)
	if o.Policy == Warn {
		d.Allowed, d.Warning = true, text
	} else {
		d.Reason = text
	}
	return d, nil
}

// shortText says why failover capacity would be short: which host's
// failure, which HA VMs would fit nowhere, the first one's reasons per
// surviving host, and the fixes.
func shortText(vm, host string, f Failover, already bool) string {
	var b strings.Builder
	var names []string
	var n int
	var cpus int64
	var mem uint64
	for _, d := range f.Failed {
		names = append(names, d.Host)
		n, cpus, mem = n+d.VMs, cpus+d.CPUs, mem+d.MemoryMiB
	}
	which := "the largest host"
	if len(names) > 1 {
		which = fmt.Sprintf("the %d largest hosts", len(names))
	}
	fmt.Fprintf(&b, "admission: starting %s on %s would leave too little capacity to restart the HA VMs of %s (%s: %s, %s, %d MiB) on the other hosts",
		vm, host, strings.Join(names, ", "), which, placement.Plural(n, "HA VM"), placement.Plural(int(cpus), "vCPU"), mem)
	var refused []string
	for _, r := range f.Refused {
		refused = append(refused, r.VM)
	}
	fmt.Fprintf(&b, ": %d of them would fit nowhere (%s)", len(refused), strings.Join(refused, ", "))
	if already {
		fmt.Fprintf(&b, "; the cluster was short already before %s", vm)
	}
	var nh *placement.NoHostError
	if len(f.Refused) > 0 && errors.As(f.Refused[0].Err, &nh) {
		fmt.Fprintf(&b, "\n%s (%s, %d MiB):", nh.VM, placement.Plural(nh.CPUs, "vCPU"), nh.MemoryMiB)
		for _, r := range nh.Rejections {
			if !failed(f, r.Host) {
				b.WriteString("\n  " + r.String())
			}
		}
	} else if len(f.Refused) > 0 {
		fmt.Fprintf(&b, "\n%s: %v", f.Refused[0].VM, f.Refused[0].Err)
	}
	b.WriteString("\nto fix: add a host or free capacity (stop or shrink a VM), relax the HA VMs' rules, or set the admission policy to warn")
	return b.String()
}

// failed says whether host is one of the simulated failures.
func failed(f Failover, host string) bool {
	for _, d := range f.Failed {
		if d.Host == host {
			return true
		}
	}
	return false
}
