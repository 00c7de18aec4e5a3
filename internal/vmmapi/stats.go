package vmmapi

// Stats is the body of GET /stats: the VMM's activity counters. They count
// from the start of the current guest (a guest reboot starts them again).
type Stats struct {
	// Exits counts KVM exits to user space by reason ("IO", "MMIO", "HLT",
	// ... as KVM_EXIT_* names without the prefix), summed over the vCPUs.
	Exits map[string]uint64 `json:"exits"`
	// ExitsTotal is the sum of Exits.
	ExitsTotal uint64 `json:"exits_total"`
	// EmulatedInstructions counts instructions govisor completed after a
	// KVM emulation failure (kvm_pvm only).
	EmulatedInstructions uint64      `json:"emulated_instructions"`
	Disks                []DiskStats `json:"disks"`
	NICs                 []NICStats  `json:"nics"`
	Serial               SerialStats `json:"serial"`
}

// SerialStats count the bytes through the serial console (COM1).
type SerialStats struct {
	TxBytes uint64 `json:"tx_bytes"` // written by the guest
	RxBytes uint64 `json:"rx_bytes"` // received by the guest
}

// DiskStats are one virtio-blk disk's request counts. Latencies are sums
// in nanoseconds from taking a request off its queue to completing it:
// divide by the matching ops for a mean.
type DiskStats struct {
	Name           string `json:"name"` // vda, vdb, ...
	Path           string `json:"path,omitempty"`
	ReadOps        uint64 `json:"read_ops"`
	ReadBytes      uint64 `json:"read_bytes"`
	ReadLatencyNs  uint64 `json:"read_latency_ns"`
	WriteOps       uint64 `json:"write_ops"`
	WriteBytes     uint64 `json:"write_bytes"`
	WriteLatencyNs uint64 `json:"write_latency_ns"`
	FlushOps       uint64 `json:"flush_ops"`
	FlushLatencyNs uint64 `json:"flush_latency_ns"`
	DiscardOps     uint64 `json:"discard_ops"`
	Errors         uint64 `json:"errors"`
}

// NICStats are one virtio-net interface's traffic counts, as the guest
// sees them (tx: guest to host).
type NICStats struct {
	Name      string `json:"name"` // the host TAP device
	MAC       string `json:"mac,omitempty"`
	RxPackets uint64 `json:"rx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
	RxDrops   uint64 `json:"rx_drops"`
	TxPackets uint64 `json:"tx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
	TxDrops   uint64 `json:"tx_drops"`
}

// MigrateProgress is the body of GET /migrate and DELETE /migrate: the
// latest outgoing migration of this VMM.
type MigrateProgress struct {
	// State is idle, running, completed, failed or cancelled.
	State string `json:"state"`
	To    string `json:"to,omitempty"`
	// Round is the pre-copy rounds completed (0 during the full copy).
	Round     int    `json:"round"`
	BytesSent int64  `json:"bytes_sent"`
	PagesSent uint64 `json:"pages_sent"`
	// DirtyRate is the pages per second the guest dirtied in the last round.
	DirtyRate float64 `json:"dirty_rate"`
	// RemainingPages is what the current round has left to send: during
	// the full copy (round 0) the RAM pages not yet scanned, later the
	// dirty pages not yet sent.
	RemainingPages uint64 `json:"remaining_pages"`
	// ExpectedDowntimeMS is the pause that sending RemainingPages would take
	// at the measured bandwidth.
	ExpectedDowntimeMS float64 `json:"expected_downtime_ms"`
	// Bandwidth is the measured transfer rate in bytes per second.
	Bandwidth float64 `json:"bandwidth"`
	// ThrottlePercent is the auto-converge throttle of the guest's vCPUs.
	ThrottlePercent int `json:"throttle_percent"`
	// Paused is set once the source paused for the final phase.
	Paused bool `json:"paused"`
	// PostCopy is set once the destination runs the VM and the remaining
	// pages follow (RemainingPages of them).
	PostCopy  bool    `json:"post_copy,omitempty"`
	ElapsedMS float64 `json:"elapsed_ms"`
	// Error says why a failed or cancelled migration stopped.
	Error string `json:"error,omitempty"`
	// Result is set when the migration completed.
	Result *MigrateResult `json:"result,omitempty"`
}

// Migration states of MigrateProgress.State.
const (
	MigrateIdle      = "idle"
	MigrateRunning   = "running"
	MigrateCompleted = "completed"
	MigrateFailed    = "failed"
	MigrateCancelled = "cancelled"
)
