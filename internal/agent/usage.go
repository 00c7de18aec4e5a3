package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/agent/service"
	"github.com/govisor/govisor/internal/node"
	"github.com/govisor/govisor/internal/usage"
	"github.com/govisor/govisor/internal/vmmapi"
)

// maxUsagePoints bounds the samples per VM a default /v1/usage query
// returns: a wider window is thinned to about this many per VM.
const maxUsagePoints = 1000

// maxUsageSamples bounds one answer of /v1/usage (about 200 bytes of JSON
// each), whatever the query asks.
const maxUsageSamples = 500000

// usageDir is where the utilization samples of this host are kept.
func (a *Agent) usageDir() string { return filepath.Join(a.cfg.StateDir, "usage") }

func (a *Agent) usageInterval() time.Duration {
	if a.cfg.UsageEvery > 0 {
		return a.cfg.UsageEvery
	}
	return usage.DefaultInterval
}

// usageLoop samples this host and its VMs until the agent stops.
func (a *Agent) usageLoop() {
	defer a.loopWG.Done()
	st, err := usage.OpenStore(a.usageDir(), a.cfg.UsageKeep)
	if err != nil {
		a.log.Error("usage sampling disabled", "err", err)
		return
	}
	s, err := usage.NewSampler(usage.Config{
		Store: st, Host: a.cfg.HostName, Interval: a.usageInterval(),
		ListVMs: a.usageVMs, ReadIO: a.usageIO, Logger: a.log, OnSample: a.publishLoad,
	})
	if err != nil {
		st.Close()
		a.log.Error("usage sampling disabled", "err", err)
		return
	}
	s.Run(a.ctx)
}

// usageVMs lists this host's VMs with the pids of their VMMs.
func (a *Agent) usageVMs(ctx context.Context) ([]usage.VMInfo, error) {
	recs, _, err := a.st.ListVMs(ctx)
	if err != nil {
		return nil, err
	}
	procs := a.node.Procs()
	pids := make(map[string]int, len(procs))
	for name, p := range procs {
		pids[name] = p.PID
	}
	var out []usage.VMInfo
	for _, r := range recs {
		if r.Desired.Host != a.cfg.HostName {
			continue
		}
		v := toAPI(r)
		mib, _ := api.ParseMemoryMiB(v.Spec.Memory)
		out = append(out, usage.VMInfo{
			Name: v.Spec.Name, State: string(v.Status.State), VCPUs: v.Spec.CPUs,
			MemoryBytes: mib << 20, PID: pids[v.Spec.Name],
		})
	}
	return out, nil
}

// usageIO asks a VM's VMM for its disk and network counters (GET /stats
// on the VMM's API socket), summed over its disks and NICs.
func (a *Agent) usageIO(ctx context.Context, v usage.VMInfo) (usage.IO, error) {
	sock := filepath.Join(a.vmDir(v.Name), node.APISock)
	hc := http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://vmm/stats", nil)
	if err != nil {
		return usage.IO{}, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return usage.IO{}, fmt.Errorf("agent: stats of %s: %w", v.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return usage.IO{}, fmt.Errorf("agent: stats of %s: %s", v.Name, resp.Status)
	}
	var st vmmapi.Stats
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(&st); err != nil {
		return usage.IO{}, fmt.Errorf("agent: stats of %s: %w", v.Name, err)
	}
	var out usage.IO
	for _, d := range st.Disks {
		out.DiskReadBytes += d.ReadBytes
		out.DiskWriteBytes += d.WriteBytes
	}
	for _, n := range st.NICs {
		// NIC counters are the guest's view: tx is guest to host.
		out.NetRxBytes += n.RxBytes
		out.NetTxBytes += n.TxBytes
	}
	return out, nil
}

// Usage reports this host's utilization samples in the window of q
// (default: the last 24 hours).
func (a *Agent) Usage(ctx context.Context, q service.UsageQuery) (api.UsageReport, error) {
	to := time.Now().UTC()
	if s := q.To; s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return api.UsageReport{}, fieldErr("to", fmt.Sprintf("%q: want an RFC 3339 time", s))
		}
		to = t.UTC()
	}
	from := to.Add(-24 * time.Hour)
	if s := q.From; s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return api.UsageReport{}, fieldErr("from", fmt.Sprintf("%q: want an RFC 3339 time", s))
		}
		from = t.UTC()
	}
	if to.Before(from) {
		return api.UsageReport{}, fieldErr("from", "the window ends before it starts")
	}
	vm := q.VM
	if vm != "" && !nameRE.MatchString(vm) {
		return api.UsageReport{}, fieldErr("vm", fmt.Sprintf("%q is not a VM name", vm))
	}
	step := to.Sub(from) / maxUsagePoints
	if step <= a.usageInterval() {
		step = 0
	}
	if s := q.Step; s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return api.UsageReport{}, fieldErr("step", fmt.Sprintf("%q: want a duration such as 60s", s))
		}
		step = d
	}
	st, err := usage.OpenStore(a.usageDir(), a.cfg.UsageKeep)
	if err != nil {
		return api.UsageReport{}, err
	}
	res, err := st.Query(usage.Query{From: from, To: to, VM: vm, Step: step, MaxSamples: maxUsageSamples})
	if errors.Is(err, usage.ErrTooMany) {
		return api.UsageReport{}, fieldErr("step", fmt.Sprintf("more than %d samples: narrow the window (from, to, vm) or give a larger step", maxUsageSamples))
	}
	if err != nil {
		return api.UsageReport{}, err
	}
	rep := api.UsageReport{
		Host: a.cfg.HostName, From: from, To: to, IntervalSeconds: a.usageInterval().Seconds(),
		StepSeconds: step.Seconds(), Skipped: res.Skipped, Samples: make([]api.UsageSample, 0, len(res.Samples)),
	}
	for _, s := range res.Samples {
		rep.Samples = append(rep.Samples, api.UsageSample{
			Time: s.Time, Host: s.Host, VM: s.VM, State: s.State, VCPUs: s.VCPUs, MemoryBytes: s.MemoryBytes,
			CPUSeconds: s.CPUSeconds, RSSBytes: s.RSSBytes, HasIO: s.HasIO,
			DiskReadBytes: s.DiskReadBytes, DiskWriteBytes: s.DiskWriteBytes, NetRxBytes: s.NetRxBytes, NetTxBytes: s.NetTxBytes,
		})
	}
	return rep, nil
}
