package balance

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/govisor/govisor/internal/cluster/placement"
)

// Plan is the balancer's answer: the migrations to run, in order (they
// may also run at once: a host gives or takes VMs in one plan, never
// both), and the loads they lead to.
type Plan struct {
	Moves     []Move
	Threshold float64
	// Before and After are the imbalance (max-min ready host load).
	Before, After float64
	Loads         []HostLoad // by host name
	// Balanced says After is within the band; otherwise Why says why the
	// plan stops short.
	Balanced bool
	Why      string
}

// eps absorbs rounding when comparing loads.
const eps = 1e-12

// improves says whether stat s is progress from s0 over n hosts: it
// widens neither the band nor the spread (variance) of loads, and
// narrows one of them.
func improves(s, s0 stat, n int) bool {
	d, d0 := s.dev(n), s0.dev(n)
	return s.imb <= s0.imb && d <= d0 && (s.imb < s0.imb-eps || d < d0-eps)
}

// better ranks stat s above s0: the narrower band, then the smaller
// spread.
func better(s, s0 stat, n int) bool {
	return s.imb < s0.imb-eps || s.imb <= s0.imb+eps && s.dev(n) < s0.dev(n)-eps
}

// candidate is a migration under consideration.
type candidate struct {
	vm   *VM
	a, b int
	st   stat
}

// Rebalance plans the fewest migrations it can (greedy, the best
// improvement first) that bring the ready hosts within o.Threshold of
// each other, never breaking a placement rule or a capacity limit, never
// moving a VM twice or a pinned VM, never touching a host that is not
// ready, with at most o.MaxPerHost migrations per host.
func Rebalance(c Cluster, o Options) (Plan, error) {
	o, err := o.withDefaults()
	if err != nil {
		return Plan{}, err
	}
	c.VMs = slices.Clone(c.VMs)
	s, _, err := snapshot(c, o)
	if err != nil {
		return Plan{}, err
	}
	l := newLoads(c.Hosts, c.VMs)
	p := Plan{Threshold: o.Threshold}
	before := make([]float64, len(l.names))
	for i := range l.names {
		before[i] = l.load(i)
	}
	p.Before = l.spread().imb
	moved := map[string]bool{}
	for {
		cur := l.spread()
		imb := cur.imb
		if imb <= o.Threshold {
			p.Balanced = true
			break
		}
		if o.MaxMoves > 0 && len(p.Moves) >= o.MaxMoves {
			p.Why = fmt.Sprintf("imbalance %.2f is above the band %.2f: the plan stops at its limit of %s; the next plan carries on",
				imb, o.Threshold, placement.Plural(o.MaxMoves, "migration"))
			break
		}
		best, why, err := step(s, l, o, moved, cur)
		if err != nil {
			return Plan{}, err
		}
		if best == nil {
			p.Why = fmt.Sprintf("imbalance %.2f is above the band %.2f after %s: %s", imb, o.Threshold, placement.Plural(len(p.Moves), "migration"), why)
			break
		}
		p.Moves = append(p.Moves, apply(s, l, best, cur))
		moved[best.vm.Name] = true
	}
	p.After = l.spread().imb
	for i, name := range l.names {
		p.Loads = append(p.Loads, HostLoad{Host: name, Before: before[i], After: l.load(i)})
	}
	return p, nil
}

// narrow is how many of the most loaded hosts (as sources) and of the
// least loaded (as targets) a step searches first: the band narrows
// there, and searching every pair of a large cluster takes long.
const narrow = 16

// step finds the best allowed migration, or says why there is none: it
// searches the narrow sets first, then every pair.
func step(s *placement.State, l *loads, o Options, moved map[string]bool, cur stat) (*candidate, string, error) {
	var sources, targets []int
	for i := range l.names {
		if l.migrations[i] >= o.MaxPerHost {
			continue
		}
		if l.role[i] != target {
			sources = append(sources, i)
		}
		if l.role[i] != source {
			targets = append(targets, i)
		}
	}
	slices.SortStableFunc(sources, func(a, b int) int { return compareFloat(l.load(b), l.load(a)) })
	slices.SortStableFunc(targets, func(a, b int) int { return compareFloat(l.load(a), l.load(b)) })
	if len(sources) > narrow || len(targets) > narrow {
		best, _, _, err := search(s, l, moved, cur, sources[:min(narrow, len(sources))], targets[:min(narrow, len(targets))])
		if best != nil || err != nil {
			return best, "", err
		}
	}
	best, improving, refused, err := search(s, l, moved, cur, sources, targets)
	switch {
	case best != nil || err != nil:
		return best, "", err
	case improving > 0:
		return nil, fmt.Sprintf("each of the %s that would narrow it breaks a rule or a limit (%s)",
			placement.Plural(improving, "migration"), filterCounts(refused)), nil
	}
	top, bottom := l.extremes()
	return nil, "no single migration narrows it: " + l.stuck(top[0], bottom[0], moved, o), nil
}

// search finds the best allowed migration of a VM from one of sources to
// one of targets, counting the improving ones and the filters that
// refused them.
func search(s *placement.State, l *loads, moved map[string]bool, cur stat, sources, targets []int) (*candidate, int, map[placement.Filter]int, error) {
	top, bottom := l.extremes()
	var best *candidate
	improving := 0
	refused := map[placement.Filter]int{}
	for _, a := range sources {
		for _, vm := range l.vms[a] {
			if vm.Pinned != "" || moved[vm.Name] {
				continue
			}
			cpu, mem := vm.CPULoad, vm.memUsed()
			for _, b := range targets {
				if b == a || l.load(b) >= l.load(a) {
					continue
				}
				st := l.after(a, b, cpu, mem, top, bottom, cur)
				if !improves(st, cur, len(l.names)) {
					continue
				}
				improving++
				if best != nil && !better(st, best.st, len(l.names)) {
					continue
				}
				pvm, _ := s.VM(vm.Name)
				rej, err := s.Check(pvm, l.names[b])
				if err != nil {
					return nil, 0, nil, fmt.Errorf("balance: checking %s on %s: %w", vm.Name, l.names[b], err)
				}
				if rej != nil {
					for _, f := range slices.Compact(slices.Clone(rej.Filters)) {
						refused[f]++
					}
					continue
				}
				best = &candidate{vm: vm, a: a, b: b, st: st}
			}
		}
	}
	return best, improving, refused, nil
}

// apply performs a migration on the state and the loads and describes it.
func apply(s *placement.State, l *loads, c *candidate, cur stat) Move {
	from, to := l.names[c.a], l.names[c.b]
	la, lb := l.load(c.a), l.load(c.b)
	pvm, _ := s.VM(c.vm.Name)
	s.Assign(pvm, to) // checked by step
	l.move(c.vm, c.a, c.b)
	n := len(l.names)
	return Move{
		VM: c.vm.Name, From: from, To: to, Mirror: c.vm.Mirror,
		Gain: cur.stddev(n) - c.st.stddev(n), Imbalance: c.st.imb,
		Reason: fmt.Sprintf("%s %.0f%% -> %.0f%%, %s %.0f%% -> %.0f%%: imbalance %.2f -> %.2f",
			from, 100*la, 100*l.load(c.a), to, 100*lb, 100*l.load(c.b), cur.imb, c.st.imb),
	}
}

// stuck says why neither the most loaded host (hi) can give nor the
// least loaded one (lo) can take.
func (l *loads) stuck(hi, lo int, moved map[string]bool, o Options) string {
	var parts []string
	switch {
	case l.role[hi] == target:
		parts = append(parts, fmt.Sprintf("%s, the most loaded, takes VMs in this plan (a host gives or takes, never both)", l.names[hi]))
	case l.migrations[hi] >= o.MaxPerHost:
		parts = append(parts, fmt.Sprintf("%s, the most loaded, has reached its limit of %s", l.names[hi], placement.Plural(o.MaxPerHost, "migration")))
	default:
		var pinned []string
		movable := 0
		for _, vm := range l.vms[hi] {
			switch {
			case vm.Pinned != "":
				pinned = append(pinned, fmt.Sprintf("%s (%s)", vm.Name, vm.Pinned))
			case !moved[vm.Name]:
				movable++
			}
		}
		text := fmt.Sprintf("%s, the most loaded, has %s that may move", l.names[hi], placement.Plural(movable, "VM"))
		if len(pinned) > 0 {
			text += "; pinned: " + strings.Join(pinned, ", ")
		}
		if movable > 0 {
			text += ", each too large for the gap to the lighter hosts that may take VMs"
		}
		parts = append(parts, text)
	}
	switch {
	case l.role[lo] == source:
		parts = append(parts, fmt.Sprintf("%s, the least loaded, gives VMs in this plan", l.names[lo]))
	case l.migrations[lo] >= o.MaxPerHost:
		parts = append(parts, fmt.Sprintf("%s, the least loaded, has reached its limit of %s", l.names[lo], placement.Plural(o.MaxPerHost, "migration")))
	}
	return strings.Join(parts, "; ")
}

// filterCounts shows refusals by filter, the most frequent first:
// "memory 5, anti-affinity 3".
func filterCounts(n map[placement.Filter]int) string {
	fs := slices.Collect(maps.Keys(n))
	slices.SortFunc(fs, func(a, b placement.Filter) int {
		return cmp.Or(cmp.Compare(n[b], n[a]), strings.Compare(string(a), string(b)))
	})
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = fmt.Sprintf("%s %d", f, n[f])
	}
	return strings.Join(parts, ", ")
}

// String shows the plan as `govisor cluster balance --dry-run` prints it.
func (p Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "imbalance %.2f -> %.2f (band %.2f) with %s", p.Before, p.After, p.Threshold, placement.Plural(len(p.Moves), "migration"))
	for _, m := range p.Moves {
		mirror := ""
		if m.Mirror {
			mirror = ", disks mirrored"
		}
		fmt.Fprintf(&b, "\n  %s: %s -> %s (gain %.3f%s): %s", m.VM, m.From, m.To, m.Gain, mirror, m.Reason)
	}
	if !p.Balanced {
		b.WriteString("\nnot balanced: " + p.Why)
	}
	return b.String()
}
