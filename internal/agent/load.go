package agent

import (
	"context"
	"sync"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/usage"
)

// loadMeter turns consecutive usage samples (CPU time counters) into the
// load this host publishes for the cluster's balancer.
type loadMeter struct {
	mu   sync.Mutex
	prev map[string]usage.Sample // by VM name; "" is the host
}

// measure is the load between the previous round and this one (nil on the
// first round: a rate needs two counters).
func (m *loadMeter) measure(smps []usage.Sample) *api.HostLoad {
	m.mu.Lock()
	defer m.mu.Unlock()
	prev := m.prev
	m.prev = map[string]usage.Sample{}
	for _, s := range smps {
		m.prev[s.VM] = s
	}
	if _, ok := prev[""]; !ok {
		return nil
	}
	var load *api.HostLoad
	for _, s := range smps {
		p, ok := prev[s.VM]
		dt := s.Time.Sub(p.Time).Seconds()
		if !ok || dt <= 0 || s.CPUSeconds < p.CPUSeconds {
			continue // new, restarted (its counter began again), or no time passed
		}
		busy := (s.CPUSeconds - p.CPUSeconds) / dt
		if s.IsHost() {
			load = &api.HostLoad{Time: s.Time, CPUBusy: busy, MemoryUsedMiB: s.RSSBytes >> 20, VMs: map[string]api.VMLoad{}}
			continue
		}
		if load != nil && s.State == string(api.StateRunning) {
			load.VMs[s.VM] = api.VMLoad{CPUBusy: busy, MemoryMiB: s.RSSBytes >> 20}
		}
	}
	return load
}

// publishLoad is the usage sampler's hook: it publishes this host's load
// for the leader's balancer (on the host's lease, so it dies with it).
func (a *Agent) publishLoad(smps []usage.Sample) {
	load := a.loads.measure(smps)
	if load == nil || a.hostLease == nil {
		return
	}
	ctx, cancel := context.WithTimeout(a.ctx, 5*time.Second)
	defer cancel()
	if err := a.st.PutLoad(ctx, a.hostLease, *load); err != nil {
		a.log.Warn("publish the host's load", "err", err)
	}
}
