// Package report turns utilization samples (api.UsageSample, as GET
// /v1/usage returns them) into per-interval rows, per-VM summaries, a CSV
// file and a self-contained HTML page with inline SVG charts. It is pure:
// no I/O but the writer it is given.
package report

import (
	"sort"
	"time"

	"github.com/govisor/govisor/api"
)

// Row is the utilization of one VM, or of the host (VM empty), over one
// sampling interval: the rates between two consecutive samples.
type Row struct {
	Start, End                time.Time
	Host, VM                  string
	CPUPercent                float64 // VM: of its vCPUs (100 = all busy); host: of all its CPUs
	MemoryBytes               uint64  // resident memory at End (host: memory in use)
	HasIO                     bool    // the I/O rates are known (both samples had counters)
	DiskReadBps, DiskWriteBps float64
	NetRxBps, NetTxBps        float64
}

// Series is the samples of one VM (or of a host) in time order.
type Series struct {
	Host, VM string
	Samples  []api.UsageSample
}

// Split groups samples into series, the hosts' first, then VMs by name.
func Split(samples []api.UsageSample) []Series {
	type key struct{ host, vm string }
	idx := map[key]int{}
	var out []Series
	for _, s := range samples {
		k := key{s.Host, s.VM}
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, Series{Host: s.Host, VM: s.VM})
		}
		out[i].Samples = append(out[i].Samples, s)
	}
	for i := range out {
		ss := out[i].Samples
		sort.SliceStable(ss, func(a, b int) bool { return ss[a].Time.Before(ss[b].Time) })
	}
	sort.SliceStable(out, func(a, b int) bool {
		if (out[a].VM == "") != (out[b].VM == "") {
			return out[a].VM == ""
		}
		if out[a].VM != out[b].VM {
			return out[a].VM < out[b].VM
		}
		return out[a].Host < out[b].Host
	})
	return out
}

// delta is how much a cumulative counter grew from a to b. A counter that
// went down was reset (the VMM restarted within the interval): what the new
// process counted, b, is then the best lower bound.
func delta(a, b float64) float64 {
	if b < a {
		return b
	}
	return b - a
}

// Rows derives one row per interval of the series.
func (s Series) Rows() []Row {
	var out []Row
	for i := 1; i < len(s.Samples); i++ {
		a, b := s.Samples[i-1], s.Samples[i]
		dt := b.Time.Sub(a.Time).Seconds()
		if dt <= 0 {
			continue
		}
		cpus := b.VCPUs
		if cpus < 1 {
			cpus = 1
		}
		r := Row{
			Start: a.Time, End: b.Time, Host: s.Host, VM: s.VM,
			CPUPercent:  delta(a.CPUSeconds, b.CPUSeconds) / dt / float64(cpus) * 100,
			MemoryBytes: b.RSSBytes,
			HasIO:       a.HasIO && b.HasIO,
		}
		if r.HasIO {
			r.DiskReadBps = delta(float64(a.DiskReadBytes), float64(b.DiskReadBytes)) / dt
			r.DiskWriteBps = delta(float64(a.DiskWriteBytes), float64(b.DiskWriteBytes)) / dt
			r.NetRxBps = delta(float64(a.NetRxBytes), float64(b.NetRxBytes)) / dt
			r.NetTxBps = delta(float64(a.NetTxBytes), float64(b.NetTxBytes)) / dt
		}
		out = append(out, r)
	}
	return out
}

// Rows derives the rows of every series: by series (hosts first), then time.
func Rows(samples []api.UsageSample) []Row {
	var out []Row
	for _, s := range Split(samples) {
		out = append(out, s.Rows()...)
	}
	return out
}

// Summary is one series' figures over the whole window.
type Summary struct {
	Host, VM                      string
	VCPUs                         int    // configured, at the last sample
	ConfiguredBytes               uint64 // configured memory, at the last sample
	Intervals                     int
	Seconds                       float64 // time covered by the intervals
	AvgCPUPercent                 float64 // weighted by interval length
	PeakCPUPercent                float64
	AvgMemoryBytes                uint64 // weighted by interval length
	PeakMemoryBytes               uint64
	HasIO                         bool // some interval had I/O counters
	DiskReadBytes, DiskWriteBytes uint64
	NetRxBytes, NetTxBytes        uint64
}

// Summarize sums up a series and its rows.
func (s Series) Summarize() Summary {
	sum := Summary{Host: s.Host, VM: s.VM}
	if n := len(s.Samples); n > 0 {
		sum.VCPUs, sum.ConfiguredBytes = s.Samples[n-1].VCPUs, s.Samples[n-1].MemoryBytes
	}
	var cpuW, memW float64
	for _, r := range s.Rows() {
		dt := r.End.Sub(r.Start).Seconds()
		sum.Intervals++
		sum.Seconds += dt
		cpuW += r.CPUPercent * dt
		memW += float64(r.MemoryBytes) * dt
		sum.PeakCPUPercent = max(sum.PeakCPUPercent, r.CPUPercent)
		sum.PeakMemoryBytes = max(sum.PeakMemoryBytes, r.MemoryBytes)
		if r.HasIO {
			sum.HasIO = true
			sum.DiskReadBytes += uint64(r.DiskReadBps*dt + 0.5)
			sum.DiskWriteBytes += uint64(r.DiskWriteBps*dt + 0.5)
			sum.NetRxBytes += uint64(r.NetRxBps*dt + 0.5)
			sum.NetTxBytes += uint64(r.NetTxBps*dt + 0.5)
		}
	}
	if sum.Seconds > 0 {
		sum.AvgCPUPercent = cpuW / sum.Seconds
		sum.AvgMemoryBytes = uint64(memW/sum.Seconds + 0.5)
	}
	return sum
}
