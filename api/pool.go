package api

// Storage pool kinds.
const (
	PoolDir    = "dir"    // a directory on one host
	PoolShared = "shared" // a directory every host mounts at the same path (NFS, ...)
)

// Pool is a storage pool (/v1/pools): a directory whose files are volumes.
type Pool struct {
	Name string `json:"name"`
	Kind string `json:"kind,omitempty"` // "dir" (default) or "shared"
	Path string `json:"path"`           // absolute directory path
	// Host is the host a dir pool lives on (default: the agent that
	// creates it); empty for a shared pool.
	Host string `json:"host,omitempty"`
	// Shared says every host sees the same files, so that moving a VM
	// between hosts needs no disk copy (memory-only live migration).
	Shared bool `json:"shared"`
	// CapacityBytes and FreeBytes describe the file system under Path, when
	// the answering agent can see it.
	CapacityBytes uint64 `json:"capacityBytes,omitempty"`
	FreeBytes     uint64 `json:"freeBytes,omitempty"`
}

// PoolList is the body of GET /v1/pools.
type PoolList struct {
	Items []Pool `json:"items"`
}

// Volume is a disk image in a pool.
type Volume struct {
	Name        string   `json:"name"`
	Pool        string   `json:"pool"`
	Path        string   `json:"path"`
	Format      string   `json:"format"`
	VirtualSize int64    `json:"virtualSize"` // bytes the guest sees
	ActualSize  int64    `json:"actualSize"`  // bytes used on the host
	UsedBy      []string `json:"usedBy,omitempty"`
	// Progress is set while the agent still makes the volume from an
	// image or another volume: it is listed, but no file is there yet.
	Progress *VolumeProgress `json:"progress,omitempty"`
}

// VolumeProgress is how far the making of a volume got.
type VolumeProgress struct {
	DoneBytes  int64 `json:"doneBytes"`  // of the source's virtual size, converted
	TotalBytes int64 `json:"totalBytes"` // the source's virtual size
}

// VolumeList is the body of GET /v1/pools/{pool}/volumes.
type VolumeList struct {
	Items []Volume `json:"items"`
}

// VolumeCreate is the body of POST /v1/pools/{pool}/volumes: an empty
// volume of Size bytes, or a copy of an existing image (From, a file on
// the host, or FromVolume, a volume of the same pool) converted to Format.
type VolumeCreate struct {
	Name       string `json:"name"`
	Format     string `json:"format,omitempty"` // raw, qcow2 (default), vmdk, vhd, vhdx
	Size       string `json:"size,omitempty"`   // "10G", "512M", bytes
	From       string `json:"from,omitempty"`
	FromVolume string `json:"fromVolume,omitempty"`
}

// Import sources: the configuration kinds POST /v1/pools/{pool}/imports reads.
const (
	ImportVMX    = "vmx"    // VMware .vmx
	ImportOVA    = "ova"    // OVF package in one tar
	ImportOVF    = "ovf"    // OVF descriptor with its files beside it
	ImportVBox   = "vbox"   // VirtualBox .vbox
	ImportHyperV = "hyperv" // Hyper-V 2012 R2 export folder (Virtual Machines/*.xml)
)

// ImportRequest is the body of POST /v1/pools/{pool}/imports: a VM of
// another hypervisor, whose configuration is a file on the agent's host,
// whose disks become volumes of the pool.
type ImportRequest struct {
	Source string `json:"source"` // vmx, ova, ovf, vbox or hyperv
	Path   string `json:"path"`   // absolute path of the configuration (hyperv: the export folder)
	Name   string `json:"name,omitempty"`
	Format string `json:"format,omitempty"` // of the volumes; default qcow2
}

// ImportResult is what an import made: the volumes, a VM definition using
// them, and the report of what was mapped and dropped.
type ImportResult struct {
	// Spec is the imported VM: CPUs, memory, disks as volumes of the pool,
	// NICs with their source MACs. Its NICs' networks are empty (pick
	// govisor networks) and it has no kernel: the disk boots through
	// Firmware.
	Spec VMSpec `json:"spec"`
	// Firmware is bios or uefi: how the source VM booted.
	Firmware string   `json:"firmware"`
	Volumes  []Volume `json:"volumes"`
	Mapped   []string `json:"mapped,omitempty"`
	Dropped  []string `json:"dropped,omitempty"`
}
