// Package usage records utilization samples of a host and of the VMs it
// runs (CPU time, resident memory, configured size, disk and network bytes)
// in compact append-only files under the agent's state directory, and
// answers queries over a time window. `govisor report` renders them.
package usage

import "time"

// Sample is one measurement of one VM, or of the host itself (VM empty).
// Counters (CPU seconds, bytes) are cumulative since the measured process
// (or the host) started; rates come from the difference of two samples.
type Sample struct {
	Time  time.Time // when it was taken (UTC, millisecond precision on disk)
	Host  string    // the host's name
	VM    string    // the VM's name; empty for the host itself
	State string    // the VM's observed state ("running", ...); "up" for the host

	VCPUs       int    // configured vCPUs (host: its CPUs)
	MemoryBytes uint64 // configured guest RAM (host: its RAM)

	CPUSeconds float64 // CPU time used, user plus system (host: busy time over all CPUs)
	RSSBytes   uint64  // resident memory of the VMM (host: memory in use)

	// HasIO says the disk and network counters were read (from the VMM's
	// API socket, GET /stats); without it they are zero and unknown.
	HasIO          bool
	DiskReadBytes  uint64
	DiskWriteBytes uint64
	NetRxBytes     uint64
	NetTxBytes     uint64
}

// IsHost reports whether s describes the host rather than a VM.
func (s Sample) IsHost() bool { return s.VM == "" }
