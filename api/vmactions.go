package api

import "time"

// SnapshotRequest is the body of POST /v1/vms/{name}/snapshot.
type SnapshotRequest struct {
	// Name identifies the snapshot among the VM's snapshots (a DNS label).
	Name string `json:"name"`
	// Path is an absolute folder on the VM's host to save it in; empty: the
	// agent's folder for the VM.
	Path string `json:"path,omitempty"`
}

// Snapshot is one saved snapshot of a VM.
type Snapshot struct {
	Name      string    `json:"name"`
	Path      string    `json:"path"`
	Created   time.Time `json:"created"`
	SizeBytes int64     `json:"sizeBytes"`
}

// SnapshotList is the body of GET /v1/vms/{name}/snapshots.
type SnapshotList struct {
	Items []Snapshot `json:"items"`
}

// RestoreRequest is the body of POST /v1/vms/{name}/restore.
type RestoreRequest struct {
	Snapshot string `json:"snapshot"` // the name of one of the VM's snapshots
}

// MigrateRequest is the body of POST /v1/vms/{name}/migrate.
type MigrateRequest struct {
	Host          string `json:"host"`                    // the destination host's name
	MaxDowntimeMS int    `json:"maxDowntimeMS,omitempty"` // downtime target; 0: the VMM's default
	Bandwidth     int64  `json:"bandwidth,omitempty"`     // bytes per second; 0: unlimited
}

// Migration states in MigrationStatus.State.
const (
	MigrationRunning   = "running"
	MigrationCompleted = "completed"
	MigrationFailed    = "failed"
)

// MigrationStatus is a live migration's progress, shown in VMStatus.
type MigrationStatus struct {
	State              string    `json:"state"` // running, completed or failed
	To                 string    `json:"to"`    // destination host
	Started            time.Time `json:"started"`
	Round              int       `json:"round,omitempty"`
	BytesSent          int64     `json:"bytesSent,omitempty"`
	DirtyRate          float64   `json:"dirtyRate,omitempty"` // pages per second
	RemainingPages     uint64    `json:"remainingPages,omitempty"`
	ExpectedDowntimeMS float64   `json:"expectedDowntimeMS,omitempty"`
	DowntimeMS         float64   `json:"downtimeMS,omitempty"` // once completed
	Error              string    `json:"error,omitempty"`
	// GuestReboots counts the guest's reboots while it was being sent;
	// each time it was sent again.
	GuestReboots int `json:"guestReboots,omitempty"`
}

// IncomingRequest is the body of POST /v1/vms/{name}/incoming, sent by the
// source agent of a live migration to the destination's agent.
type IncomingRequest struct {
	Spec VMSpec `json:"spec"`
	From string `json:"from"` // the source host
	// MirrorDisks gives the virtual size in bytes of each of the VM's disks
	// when the hosts share no storage for them: the destination makes blank
	// images of these sizes and the migration copies the disks into them.
	// Empty: the destination opens the disks where they are.
	MirrorDisks []int64 `json:"mirrorDisks,omitempty"`
	// LeaseNonce, with shared storage, makes the destination VMM take over
	// the source's disk leases at the handover (the source hands them over
	// with the same number); 0: the VM holds no disk leases.
	LeaseNonce uint64 `json:"leaseNonce,omitempty"`
}

// Incoming is the answer to an IncomingRequest: where the destination VMM
// waits for the migration stream.
type Incoming struct {
	// State is where the migration stands on the destination (GET):
	// IncomingWaiting, IncomingArrived or IncomingNone.
	State string `json:"state,omitempty"`
	Addr  string `json:"addr"` // HOST:PORT
	// Disks are the destination's paths of the mirrored disks, in order.
	Disks []string `json:"disks,omitempty"`
}

// Incoming states (Incoming.State): what a live migration's destination
// says of a VM, for a source that lost sight of the handover.
const (
	// IncomingWaiting: a destination VMM waits for (or receives) the VM.
	IncomingWaiting = "waiting"
	// IncomingArrived: the VM's guest runs here (its VMM got the handover).
	IncomingArrived = "arrived"
	// IncomingNone: no VMM of the VM here.
	IncomingNone = "none"
)
