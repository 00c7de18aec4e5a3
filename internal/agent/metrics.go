package agent

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/node"
	"github.com/govisor/govisor/internal/vmmapi"
)

// Metric descriptions; every scrape reads the current state from etcd, so
// the numbers are what the store says, not a cache that can drift.
var (
	descVMs      = prometheus.NewDesc("govisor_vms", "VMs defined for this host, by observed state.", []string{"state"}, nil)
	descUp       = prometheus.NewDesc("govisor_vm_up", "1 when the VM's VMM process is running.", []string{"vm"}, nil)
	descRestarts = prometheus.NewDesc("govisor_vm_restarts_total", "Automatic restarts of the VM by its restart policy.", []string{"vm"}, nil)
	descVCPUs    = prometheus.NewDesc("govisor_vm_vcpus", "vCPUs of the VM's definition.", []string{"vm"}, nil)
	descMemory   = prometheus.NewDesc("govisor_vm_memory_bytes", "Guest RAM of the VM's definition.", []string{"vm"}, nil)
	descInfo     = prometheus.NewDesc("govisor_agent_info", "The host agent: always 1, with its version and identity.", []string{"version", "host", "agent_id", "store"}, nil)
	descStart    = prometheus.NewDesc("govisor_agent_start_time_seconds", "When the host agent started (Unix time).", nil, nil)
	descScrapeOK = prometheus.NewDesc("govisor_store_up", "1 when the scrape could read the store (etcd).", nil, nil)
	descCPU      = prometheus.NewDesc("govisor_vm_cpu_seconds_total", "CPU time of the VM's VMM process (vCPUs and devices), user plus system.", []string{"vm"}, nil)
	descRSS      = prometheus.NewDesc("govisor_vm_resident_memory_bytes", "Resident memory of the VM's VMM process (touched guest RAM plus the VMM).", []string{"vm"}, nil)
	// Live migration progress, while a migration of the VM runs.
	migLabels    = []string{"vm", "to"}
	descMigBytes = prometheus.NewDesc("govisor_vm_migration_bytes_sent", "Bytes the running live migration of the VM has sent.", migLabels, nil)
	descMigRound = prometheus.NewDesc("govisor_vm_migration_round", "Pre-copy round of the running live migration.", migLabels, nil)
	descMigLeft  = prometheus.NewDesc("govisor_vm_migration_remaining_pages", "Pages the running live migration's current round has left to send.", migLabels, nil)
	descMigRate  = prometheus.NewDesc("govisor_vm_migration_dirty_pages_per_second", "Pages per second the guest dirtied in the last pre-copy round.", migLabels, nil)
	descMigDown  = prometheus.NewDesc("govisor_vm_migration_expected_downtime_seconds", "Pause the running live migration expects if it stopped the guest now.", migLabels, nil)
)

type vmCollector struct{ a *Agent }

func (c vmCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descVMs, descUp, descRestarts, descVCPUs, descMemory, descInfo, descStart, descScrapeOK, descCPU, descRSS,
		descMigBytes, descMigRound, descMigLeft, descMigRate, descMigDown} {
		ch <- d
	}
	for _, d := range vmmDescs {
		ch <- d
	}
}

func (c vmCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	ch <- prometheus.MustNewConstMetric(descInfo, prometheus.GaugeValue, 1, version(), a.cfg.HostName, a.id, a.storeKind())
	ch <- prometheus.MustNewConstMetric(descStart, prometheus.GaugeValue, float64(a.started.UnixNano())/1e9)
	ctx, cancel := context.WithTimeout(a.ctx, 5*time.Second)
	defer cancel()
	recs, _, err := a.st.ListVMs(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(descScrapeOK, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(descScrapeOK, prometheus.GaugeValue, 1)
	counts := map[api.State]int{}
	for _, r := range recs {
		if r.Desired.Host != a.cfg.HostName {
			continue
		}
		name := r.Desired.Spec.Name
		v := toAPI(r)
		counts[v.Status.State]++
		up := 0.0
		if v.Status.State == api.StateRunning || v.Status.State == api.StatePaused {
			up = 1
		}
		if m := v.Status.Migration; m != nil && m.State == api.MigrationRunning {
			ch <- prometheus.MustNewConstMetric(descMigBytes, prometheus.GaugeValue, float64(m.BytesSent), name, m.To)
			ch <- prometheus.MustNewConstMetric(descMigRound, prometheus.GaugeValue, float64(m.Round), name, m.To)
			ch <- prometheus.MustNewConstMetric(descMigLeft, prometheus.GaugeValue, float64(m.RemainingPages), name, m.To)
			ch <- prometheus.MustNewConstMetric(descMigRate, prometheus.GaugeValue, m.DirtyRate, name, m.To)
			ch <- prometheus.MustNewConstMetric(descMigDown, prometheus.GaugeValue, m.ExpectedDowntimeMS/1000, name, m.To)
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, name)
		ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(v.Status.Restarts), name)
		ch <- prometheus.MustNewConstMetric(descVCPUs, prometheus.GaugeValue, float64(v.Spec.CPUs), name)
		if mib, err := api.ParseMemoryMiB(v.Spec.Memory); err == nil {
			ch <- prometheus.MustNewConstMetric(descMemory, prometheus.GaugeValue, float64(mib<<20), name)
		}
	}
	// Process figures for the VMMs this agent supervises.
	pids := map[string]int{}
	vmms := map[string]*vmmapi.Client{}
	for name, p := range a.node.Procs() {
		pids[name] = p.PID
		if p.VMM != nil {
			vmms[name] = p.VMM
		}
	}
	collectVMMStats(ch, vmms)
	for name, pid := range pids {
		if cpu, rss, err := node.Usage(pid); err == nil {
			ch <- prometheus.MustNewConstMetric(descCPU, prometheus.CounterValue, cpu, name)
			ch <- prometheus.MustNewConstMetric(descRSS, prometheus.GaugeValue, float64(rss), name)
		}
	}
	for _, s := range api.States {
		ch <- prometheus.MustNewConstMetric(descVMs, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
}

// metricsHandler serves GET /metrics in the Prometheus text format.
func (a *Agent) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(vmCollector{a}, a.haRestarts, a.leading, a.migrations, a.hostStates, a.imbalance, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
