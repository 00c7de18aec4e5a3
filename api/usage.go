package api

import "time"

// UsageSample is one utilization measurement of a VM, or of its host when
// VM is empty. CPU time and bytes are cumulative since the VMM (or the
// host) started; a report derives rates from consecutive samples.
type UsageSample struct {
	Time           time.Time `json:"time"`
	Host           string    `json:"host"`
	VM             string    `json:"vm,omitempty"`
	State          string    `json:"state"`
	VCPUs          int       `json:"vcpus"`          // configured vCPUs (host: its CPUs)
	MemoryBytes    uint64    `json:"memoryBytes"`    // configured RAM (host: its RAM)
	CPUSeconds     float64   `json:"cpuSeconds"`     // user+system CPU time (host: busy time, all CPUs)
	RSSBytes       uint64    `json:"rssBytes"`       // resident memory of the VMM (host: memory in use)
	HasIO          bool      `json:"hasIO"`          // the disk and network counters below were read
	DiskReadBytes  uint64    `json:"diskReadBytes"`  // cumulative
	DiskWriteBytes uint64    `json:"diskWriteBytes"` // cumulative
	NetRxBytes     uint64    `json:"netRxBytes"`     // cumulative, received by the guest
	NetTxBytes     uint64    `json:"netTxBytes"`     // cumulative, sent by the guest
}

// UsageReport is the body of GET /v1/usage: one host's samples in a window.
type UsageReport struct {
	Host            string        `json:"host"`
	From            time.Time     `json:"from"`
	To              time.Time     `json:"to"`
	IntervalSeconds float64       `json:"intervalSeconds"` // the agent's sampling interval
	StepSeconds     float64       `json:"stepSeconds"`     // at most one sample per VM per step (0: all)
	Skipped         int           `json:"skipped"`         // damaged sample lines passed over
	Samples         []UsageSample `json:"samples"`         // by time; the host's first at each time
}
