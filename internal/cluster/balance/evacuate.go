package balance

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/govisor/govisor/internal/cluster/placement"
)

// Evacuation is the plan for a host entering maintenance: every VM off
// it, each target chosen by placement (highest restart priority first),
// and the VMs that cannot move, each with the reason. The host stays
// "entering maintenance" while Stuck is not empty. The moves may run in
// any order; the executor runs at most Options.MaxPerHost at a time.
type Evacuation struct {
	Host  string
	Moves []Move
	Stuck []Stuck // by VM name
}

// Stuck is a VM that cannot leave the host, and why.
type Stuck struct {
	VM     string
	Reason string
}

// Evacuate plans moving every VM off host: the host takes no VM during
// the evacuation; a pinned VM, a VM that fits nowhere, and the members of
// an affinity group one of which cannot move stay, listed in Stuck.
func Evacuate(c Cluster, host string, o Options) (Evacuation, error) {
	if _, err := o.withDefaults(); err != nil {
		return Evacuation{}, err
	}
	s, vms, err := snapshot(c, o)
	if err != nil {
		return Evacuation{}, err
	}
	h, ok := s.Host(host)
	switch {
	case !ok:
		return Evacuation{}, fmt.Errorf("%w: host %s is not in the cluster: check the name with govisor host list", ErrInvalid, host)
	case h.State == placement.HostUnreachable || h.State == placement.HostFenced:
		return Evacuation{}, fmt.Errorf("%w: host %s is %s: its VMs cannot be live-migrated; HA restarts its HA VMs elsewhere", ErrInvalid, host, h.State)
	}
	s.SetHostState(host, placement.HostEnteringMaintenance)
	e := Evacuation{Host: host}
	stuck := map[string]string{}
	var batch []placement.VM
	on := s.VMsOn(host)
	for _, pvm := range on {
		if vm := vms[pvm.Name]; vm.Pinned != "" {
			stuck[pvm.Name] = "pinned: " + vm.Pinned
		} else {
			batch = append(batch, pvm)
		}
	}
	res := s.PlaceBatch(batch)
	for _, f := range res.Failed {
		stuck[f.VM] = withoutHost(f.Err, host).Error()
		pvm, _ := findVM(on, f.VM)
		s.Assign(pvm, host) // it stays
	}
	to := map[string]string{}
	for _, p := range res.Placed {
		to[p.VM] = p.Host
	}
	keepGroupsTogether(s, host, on, to, stuck)
	for _, p := range res.Placed {
		if dest, ok := to[p.VM]; ok {
			e.Moves = append(e.Moves, Move{VM: p.VM, From: host, To: dest, Mirror: vms[p.VM].Mirror,
				Reason: fmt.Sprintf("evacuating %s for maintenance", host)})
		}
	}
	for _, pvm := range on {
		if r, ok := stuck[pvm.Name]; ok {
			e.Stuck = append(e.Stuck, Stuck{VM: pvm.Name, Reason: r})
		}
	}
	return e, nil
}

// keepGroupsTogether sends back to host every VM whose affinity group
// has a member that stays there, until no group is split: moving the
// others would break the rule.
func keepGroupsTogether(s *placement.State, host string, on []placement.VM, to, stuck map[string]string) {
	for changed := true; changed; {
		changed = false
		for _, vm := range on {
			if _, moving := to[vm.Name]; !moving {
				continue
			}
			for _, g := range vm.Affinity {
				i := slices.IndexFunc(on, func(o placement.VM) bool {
					_, stays := stuck[o.Name]
					return stays && slices.Contains(o.Affinity, g)
				})
				if i < 0 {
					continue
				}
				delete(to, vm.Name)
				s.Assign(vm, host)
				stuck[vm.Name] = fmt.Sprintf("affinity group %s: %s cannot move, and the group stays together", g, on[i].Name)
				changed = true
				break
			}
		}
	}
}

// withoutHost drops the evacuated host's own refusal from a placement
// error: it is being emptied on purpose, so its reasons only distract.
func withoutHost(err error, host string) error {
	var nh *placement.NoHostError
	if !errors.As(err, &nh) {
		return err
	}
	c := *nh
	c.Rejections = slices.DeleteFunc(slices.Clone(nh.Rejections), func(r placement.Rejection) bool { return r.Host == host })
	return &c
}

// findVM finds a VM by name.
func findVM(vms []placement.VM, name string) (placement.VM, bool) {
	i := slices.IndexFunc(vms, func(v placement.VM) bool { return v.Name == name })
	if i < 0 {
		return placement.VM{}, false
	}
	return vms[i], true
}

// String shows the evacuation as `govisor host maintenance enter` prints it.
func (e Evacuation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "evacuate %s: %s, %s stuck", e.Host, placement.Plural(len(e.Moves), "migration"), placement.Plural(len(e.Stuck), "VM"))
	for _, m := range e.Moves {
		mirror := ""
		if m.Mirror {
			mirror = " (disks mirrored)"
		}
		fmt.Fprintf(&b, "\n  %s -> %s%s", m.VM, m.To, mirror)
	}
	for _, st := range e.Stuck {
		fmt.Fprintf(&b, "\n  %s stays: %s", st.VM, strings.ReplaceAll(st.Reason, "\n", "\n    "))
	}
	return b.String()
}
