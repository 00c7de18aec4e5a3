package api

// Network kinds.
const (
	NetworkBridge = "bridge" // a Linux bridge on every host; VMs join it through TAPs
)

// Network is a virtual network (/v1/networks): a Linux bridge that each
// host's agent creates, and that VM NICs join through one TAP each.
type Network struct {
	Name string `json:"name"`
	Kind string `json:"kind,omitempty"` // "bridge" (the default and only kind)
	// Bridge is the host bridge device (at most 15 characters; default
	// "gv-" + name when that fits).
	Bridge string `json:"bridge,omitempty"`
	// CIDR is the host's address on the bridge with its prefix length, such
	// as 169.254.0.1/16; empty: the bridge has no address.
	CIDR string `json:"cidr,omitempty"`
	// UsedBy lists the VMs with a NIC on the network (filled in by the agent).
	UsedBy []string `json:"usedBy,omitempty"`
}

// NetworkList is the body of GET /v1/networks.
type NetworkList struct {
	Items []Network `json:"items"`
}

// NICSpec is one virtio-net interface of a VM, on a network.
type NICSpec struct {
	Network string `json:"network"`
	// MAC is the guest's MAC address; when left out the agent derives a
	// stable locally administered one from the VM's name and the NIC's
	// index and stores it in the definition.
	MAC string `json:"mac,omitempty"`
}
