package agent

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/cpubaseline"
	"github.com/govisor/govisor/internal/cluster/placement"
	"github.com/govisor/govisor/internal/cluster/store"
	"github.com/govisor/govisor/internal/hostcpu"
)

// joinCPU checks that this host's CPU neither mixes vendors in the cluster
// nor lowers its CPU baseline below what running VMs use (as vSphere's EVC
// refuses such a host), then records it for the baseline. A host whose
// CPU is unknown (not x86 Linux) joins unchecked.
func (a *Agent) joinCPU(ctx context.Context) error {
	c, err := hostcpu.Read()
	if err != nil {
		return nil // hostInfo warns
	}
	confs, err := a.st.HostConfigs(ctx)
	if err != nil {
		return fmt.Errorf("agent: check this host's CPU against the cluster's: %w", err)
	}
	recs, _, err := a.st.ListVMs(ctx)
	if err != nil {
		return fmt.Errorf("agent: check this host's CPU against the cluster's: %w", err)
	}
	if err := checkCPUJoin(a.cfg.HostName, c, confs, recs); err != nil {
		return err
	}
	if err := a.st.SetHostCPU(ctx, a.cfg.HostName, store.HostCPU{Vendor: c.Vendor, Model: c.Model, Features: c.Features}); err != nil {
		return fmt.Errorf("agent: record this host's CPU: %w", err)
	}
	return nil
}

// checkCPUJoin is joinCPU's decision for host with CPU c, given the hosts'
// recorded CPUs and the VMs.
func checkCPUJoin(host string, c hostcpu.CPU, confs map[string]store.HostConfig, recs []store.Record) error {
	var hosts []cpubaseline.HostCPU
	for name, hc := range confs {
		if hc.CPU != nil && name != host {
			hosts = append(hosts, cpubaseline.HostCPU{Host: name,
				CPU: placement.CPU{Vendor: hc.CPU.Vendor, Model: hc.CPU.Model, Features: hc.CPU.Features}})
		}
	}
	var vms []cpubaseline.VMCPU
	for _, r := range recs {
		if st := r.Status; st != nil && len(st.CPUFeatures) > 0 && liveState(st.State) {
			vms = append(vms, cpubaseline.VMCPU{VM: r.Desired.Spec.Name, Host: st.Host, Features: st.CPUFeatures})
		}
	}
	joining := cpubaseline.HostCPU{Host: host, CPU: placement.CPU{Vendor: c.Vendor, Model: c.Model, Features: c.Features}}
	if _, err := cpubaseline.CheckJoin(hosts, joining, vms); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	return nil
}

// liveState reports whether a VM in state s has a guest.
func liveState(s api.State) bool {
	return s == api.StatePending || s == api.StateRunning || s == api.StatePaused || s == api.StateStopping
}

// checkMigrateCPU refuses a migration of rec to host to when that host's
// CPU lacks features the guest was started with (the destination VMM
// would refuse it too, after the whole copy).
func (a *Agent) checkMigrateCPU(ctx context.Context, rec store.Record, to string) error {
	if rec.Status == nil || len(rec.Status.CPUFeatures) == 0 {
		return nil
	}
	hosts, err := a.st.Hosts(ctx)
	if err != nil {
		return err
	}
	for _, h := range hosts {
		if h.Name == to && len(h.CPUFeatures) > 0 {
			if miss := missingFeatures(rec.Status.CPUFeatures, h.CPUFeatures); len(miss) > 0 {
				return fieldErr("host", fmt.Sprintf("%q: its CPU lacks %s, which VM %s was started with: migrate it to a host that has them, or restart it with cpu: %s so that it gets the features every host has",
					to, strings.Join(miss, ", "), rec.Desired.Spec.Name, api.CPUBaseline))
			}
		}
	}
	return nil
}

// missingFeatures lists the features of want that have lacks.
func missingFeatures(want, have []string) []string {
	var out []string
	for _, f := range want {
		if !slices.Contains(have, f) {
			out = append(out, f)
		}
	}
	return out
}
