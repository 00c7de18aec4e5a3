// Package vmlimits holds the limits of the VMs govisor runs. The VMM
// (internal/vm) enforces them and the host agent checks definitions
// against them up front; this leaf is their one source of truth, so that
// the agent need not link the VMM to know them.
package vmlimits

// Limits of what govisor accepts.
const (
	MinMemoryMiB = 64
	MaxCPUs      = 64
)
