package balance

import (
	"math"
	"slices"
	"strings"

	"github.com/govisor/govisor/internal/cluster/placement"
)

// role is what a host does in a plan: a host gives or takes VMs, never
// both, so that no migration needs room another one frees and the moves
// can run at once, in any order.
type role int8

const (
	idle role = iota
	source
	target
)

// loads tracks the ready hosts' loads while a plan is built.
type loads struct {
	names      []string // ready hosts with capacity, by name
	index      map[string]int
	cpuCap     []float64
	memCap     []float64
	cpu        []float64
	mem        []float64
	role       []role
	migrations []int
	vms        [][]*VM // each host's VMs, by name
}

// newLoads sums the VMs' measured loads per ready host.
func newLoads(hosts []placement.Host, vms []VM) *loads {
	l := &loads{index: map[string]int{}}
	sortedHosts := slices.Clone(hosts)
	slices.SortFunc(sortedHosts, func(a, b placement.Host) int { return strings.Compare(a.Name, b.Name) })
	for _, h := range sortedHosts {
		if h.State != placement.HostReady || h.CPUs <= 0 || h.MemoryMiB == 0 {
			continue
		}
		l.index[h.Name] = len(l.names)
		l.names = append(l.names, h.Name)
		l.cpuCap = append(l.cpuCap, float64(h.CPUs))
		l.memCap = append(l.memCap, float64(h.MemoryMiB))
	}
	n := len(l.names)
	l.cpu, l.mem = make([]float64, n), make([]float64, n)
	l.role, l.migrations, l.vms = make([]role, n), make([]int, n), make([][]*VM, n)
	for i := range vms {
		vm := &vms[i]
		if h, ok := l.index[vm.Host]; ok {
			l.cpu[h] += vm.CPULoad
			l.mem[h] += vm.memUsed()
			l.vms[h] = append(l.vms[h], vm)
		}
	}
	for _, v := range l.vms {
		slices.SortFunc(v, func(a, b *VM) int { return strings.Compare(a.Name, b.Name) })
	}
	return l
}

// with is host i's load after adding (or, negative, removing) a VM's
// CPU and memory.
func (l *loads) with(i int, cpu, mem float64) float64 {
	return max((l.cpu[i]+cpu)/l.cpuCap[i], (l.mem[i]+mem)/l.memCap[i])
}

// load is host i's load.
func (l *loads) load(i int) float64 { return l.with(i, 0, 0) }

// stat summarizes the loads: the imbalance (max-min) and the sum and
// sum of squares, from which the variance comes.
type stat struct {
	imb, sum, ssq float64
}

// dev is the sum of squared deviations from the mean load over n hosts
// (n times the variance), which the balancer lowers when the band stays.
func (s stat) dev(n int) float64 {
	if n == 0 {
		return 0
	}
	return max(s.ssq-s.sum*s.sum/float64(n), 0)
}

// stddev is the standard deviation of the loads over n hosts.
func (s stat) stddev(n int) float64 {
	if n == 0 {
		return 0
	}
	return math.Sqrt(s.dev(n) / float64(n))
}

// spread returns the loads' stat.
func (l *loads) spread() stat {
	if len(l.names) == 0 {
		return stat{}
	}
	var s stat
	lo, hi := math.Inf(1), math.Inf(-1)
	for i := range l.names {
		x := l.load(i)
		lo, hi, s.sum, s.ssq = min(lo, x), max(hi, x), s.sum+x, s.ssq+x*x
	}
	s.imb = hi - lo
	return s
}

// extremes returns up to three hosts by descending and by ascending load,
// enough to find the max and min over the hosts a move leaves alone.
func (l *loads) extremes() (top, bottom []int) {
	order := make([]int, len(l.names))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return compareFloat(l.load(b), l.load(a)) })
	top = order[:min(3, len(order))]
	bottom = slices.Clone(order[max(len(order)-3, 0):])
	slices.Reverse(bottom)
	return top, bottom
}

// compareFloat orders two floats.
func compareFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// after returns the stat once a VM of CPU cpu and memory mem moves from
// host a to host b.
func (l *loads) after(a, b int, cpu, mem float64, top, bottom []int, cur stat) stat {
	la, lb := l.with(a, -cpu, -mem), l.with(b, cpu, mem)
	hi, lo := max(la, lb), min(la, lb)
	for _, i := range top {
		if i != a && i != b {
			hi = max(hi, l.load(i))
			break
		}
	}
	for _, i := range bottom {
		if i != a && i != b {
			lo = min(lo, l.load(i))
			break
		}
	}
	oa, ob := l.load(a), l.load(b)
	return stat{imb: hi - lo, sum: cur.sum - oa - ob + la + lb, ssq: cur.ssq - oa*oa - ob*ob + la*la + lb*lb}
}

// move applies a migration of vm from host a to host b.
func (l *loads) move(vm *VM, a, b int) {
	l.cpu[a] -= vm.CPULoad
	l.mem[a] -= vm.memUsed()
	l.cpu[b] += vm.CPULoad
	l.mem[b] += vm.memUsed()
	l.role[a], l.role[b] = source, target
	l.migrations[a]++
	l.migrations[b]++
	l.vms[a] = slices.DeleteFunc(l.vms[a], func(v *VM) bool { return v == vm })
}
