// Package balance plans live migrations: the load balancer's (DRS's)
// plan that brings the ready hosts' loads within a band, and the
// evacuation of a host entering maintenance. It is pure: it reads a
// snapshot and returns a plan that the leader's controllers execute.
//
// A host's load is the larger of its measured CPU load over its CPUs and
// its measured memory over its memory; the imbalance is the most loaded
// ready host's load minus the least loaded one's. The planner is greedy
// best-improvement, as DRS is: each step takes the one migration that
// narrows the band most (then the spread of loads most), checked by
// placement's filters, until the band is reached or no migration helps.
package balance

import (
	"errors"
	"fmt"
	"math"

	"github.com/govisor/govisor/internal/cluster/placement"
)

// VM is a running VM as the balancer sees it.
type VM struct {
	placement.VM // Host is where it runs
	// CPULoad is the CPUs it keeps busy, measured from its VMM's counters
	// (1.5: one and a half CPUs).
	CPULoad float64
	// MemoryUsedMiB is its measured memory; zero: MemoryMiB.
	MemoryUsedMiB uint64
	// Mirror says its local disks can be mirrored to the target (live
	// migration with disk mirroring), so its pools need not be reachable
	// there.
	Mirror bool
	// Pinned, when set, says why it must not move (a passthrough device,
	// a user's pin, a migration under way).
	Pinned string
}

// Cluster is the snapshot the planners read.
type Cluster struct {
	Hosts []placement.Host
	Pools []placement.Pool
	VMs   []VM
}

// Defaults.
const (
	// DefaultThreshold is the band: hosts whose loads differ by at most
	// this much are balanced.
	DefaultThreshold = 0.15
	// DefaultMaxPerHost is how many migrations a host takes part in at
	// once (vSphere's limit for vMotion on 10 GbE).
	DefaultMaxPerHost = 8
)

// Options tune the planners; the zero value is the defaults.
type Options struct {
	Placement placement.Config
	// Threshold is the band of max-min host load (0.15: 15 points).
	Threshold float64
	// MaxPerHost bounds the migrations a host takes part in within one
	// plan, as source or target.
	MaxPerHost int
	// MaxMoves bounds a plan's migrations; zero: only MaxPerHost bounds.
	MaxMoves int
}

// ErrInvalid is wrapped by errors about bad input.
var ErrInvalid = errors.New("balance: invalid input")

// withDefaults fills zero fields and checks the others.
func (o Options) withDefaults() (Options, error) {
	if o.Threshold == 0 {
		o.Threshold = DefaultThreshold
	}
	if o.MaxPerHost == 0 {
		o.MaxPerHost = DefaultMaxPerHost
	}
	switch {
	case !(o.Threshold > 0 && o.Threshold <= 1):
		return o, fmt.Errorf("%w: threshold %v: give a band above 0 and at most 1 (0.15: 15 points of load)", ErrInvalid, o.Threshold)
	case o.MaxPerHost < 0 || o.MaxMoves < 0:
		return o, fmt.Errorf("%w: migration limits %d per host, %d in all: give 0 (the default) or more", ErrInvalid, o.MaxPerHost, o.MaxMoves)
	}
	return o, nil
}

// snapshot builds the placement state of c, each VM marked as mirroring
// its disks when it can.
func snapshot(c Cluster, o Options) (*placement.State, map[string]*VM, error) {
	pc := placement.Cluster{Hosts: c.Hosts, Pools: c.Pools}
	vms := make(map[string]*VM, len(c.VMs))
	for i := range c.VMs {
		vm := &c.VMs[i]
		if math.IsNaN(vm.CPULoad) || vm.CPULoad < 0 || math.IsInf(vm.CPULoad, 0) {
			return nil, nil, fmt.Errorf("%w: vm %s has a CPU load of %v: give the measured load, 0 or more", ErrInvalid, vm.Name, vm.CPULoad)
		}
		if vm.Host == "" {
			return nil, nil, fmt.Errorf("%w: vm %s has no host: list running VMs only", ErrInvalid, vm.Name)
		}
		pvm := vm.VM
		pvm.MirrorDisks = vm.Mirror
		pc.VMs = append(pc.VMs, pvm)
		vms[vm.Name] = vm
	}
	s, err := placement.New(pc, o.Placement)
	if err != nil {
		return nil, nil, fmt.Errorf("balance: %w", err)
	}
	return s, vms, nil
}

// memUsed is a VM's measured memory, its size when not measured.
func (vm *VM) memUsed() float64 {
	if vm.MemoryUsedMiB > 0 {
		return float64(vm.MemoryUsedMiB)
	}
	return float64(vm.MemoryMiB)
}

// Move is one planned live migration.
type Move struct {
	VM     string
	From   string
	To     string
	Mirror bool // its disks are mirrored to To
	// Gain is how much the move narrows the spread of host loads (their
	// standard deviation); Imbalance is max-min host load after it.
	Gain      float64
	Imbalance float64
	// Reason says why, in words.
	Reason string
}

// HostLoad is a ready host's load before and after a plan.
type HostLoad struct {
	Host          string
	Before, After float64
}
