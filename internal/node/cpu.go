package node

import (
	"context"
	"fmt"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/cpubaseline"
	"github.com/govisor/govisor/internal/cluster/placement"
	"github.com/govisor/govisor/internal/hostcpu"
)

// cpuFeatures returns the CPU features a fresh boot of s gets: limit for
// the VMM (nil: no limit) and the list its status records, which every
// host the VM moves to must have. A baseline VM (the default) gets what
// every host the cluster knows has; a "host" VM all of this host's.
func (n *Node) cpuFeatures(s api.VMSpec) (limit, record []string, err error) {
	if s.CPU == api.CPUHost {
		c, err := hostcpu.Read()
		if err != nil {
			return nil, nil, nil // not an x86 Linux host: nothing to record
		}
		return nil, c.Features, nil
	}
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	confs, err := n.st.HostConfigs(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("agent: the cluster's CPU baseline for %s: %w", s.Name, err)
	}
	var hosts []cpubaseline.HostCPU
	for name, c := range confs {
		if c.CPU != nil {
			hosts = append(hosts, cpubaseline.HostCPU{Host: name,
				CPU: placement.CPU{Vendor: c.CPU.Vendor, Model: c.CPU.Model, Features: c.CPU.Features}})
		}
	}
	if len(hosts) == 0 {
		return nil, nil, nil // no host has reported its CPU (not x86 Linux)
	}
	b, err := cpubaseline.Compute(hosts)
	if err != nil {
		return nil, nil, fmt.Errorf("agent: the cluster's CPU baseline for %s: %w", s.Name, err)
	}
	return b.Features, b.Features, nil
}
