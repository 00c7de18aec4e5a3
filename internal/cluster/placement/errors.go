package placement

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrNoHost is wrapped by every NoHostError: the VM fits no host.
var ErrNoHost = errors.New("placement: no host fits")

// Rejection is why one host cannot take a VM: the filters that refused
// it and their reasons, in filter order.
type Rejection struct {
	Host    string
	Filters []Filter
	Reasons []string
}

// String is "host: reason; reason".
func (r Rejection) String() string { return r.Host + ": " + strings.Join(r.Reasons, "; ") }

// NoHostError says a VM fits no host, with every host's reasons sorted by
// host name.
type NoHostError struct {
	VM         string
	CPUs       int
	MemoryMiB  uint64
	Rejections []Rejection
}

// Unwrap makes errors.Is(err, ErrNoHost) hold.
func (e *NoHostError) Unwrap() error { return ErrNoHost }

// Error lists the reason per host, one host a line, then the fixes.
func (e *NoHostError) Error() string {
	var b strings.Builder
	if len(e.Rejections) == 0 {
		fmt.Fprintf(&b, "placement: vm %s fits no host: there is no other host: add a host", e.VM)
		return b.String()
	}
	fmt.Fprintf(&b, "placement: vm %s (%s, %d MiB) fits none of the %s:", e.VM, Plural(e.CPUs, "vCPU"), e.MemoryMiB, Plural(len(e.Rejections), "host"))
	for _, r := range e.Rejections {
		b.WriteString("\n  " + r.String())
	}
	b.WriteString("\nto fix: " + strings.Join(e.fixes(), "; "))
	return b.String()
}

// Count says how many hosts each filter refused.
func (e *NoHostError) Count() map[Filter]int {
	n := map[Filter]int{}
	for _, r := range e.Rejections {
		for _, f := range slices.Compact(slices.Clone(r.Filters)) {
			n[f]++
		}
	}
	return n
}

// fixHints says, per filter, what would make room.
var fixHints = []struct {
	f    Filter
	hint string
}{
	{FilterState, "bring a host back to ready (or out of maintenance)"},
	{FilterCPU, "free or add vCPUs (stop a VM, add a host) or raise the CPU overcommit"},
	{FilterMemory, "free or add memory (stop a VM, add a host) or raise the memory overcommit"},
	{FilterStorage, "put the VM's disks on a shared pool (or define the missing pool)"},
	{FilterCPUModel, "give the VM the cluster's CPU baseline, or add a host with that CPU"},
	{FilterHostRule, "relax the VM's host rules or label more hosts"},
	{FilterAffinity, "free room on the host its affinity group runs on, or leave the group"},
	{FilterAntiAffinity, "add a host or take a VM out of its anti-affinity group"},
}

// fixes lists the hints for the filters that refused some host.
func (e *NoHostError) fixes() []string {
	n := e.Count()
	var out []string
	for _, h := range fixHints {
		if n[h.f] > 0 {
			out = append(out, h.hint)
		}
	}
	return out
}

// Plural says "1 host", "3 hosts".
func Plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
