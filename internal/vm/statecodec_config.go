package vm

import (
	"github.com/govisor/govisor/internal/snapshot"
)

// encodeConfig encodes the machine description a snapshot or migration
// carries (section "config", configVersion).
func encodeConfig(e *snapshot.Encoder, c *SavedConfig) {
	e.Int(c.CPUs)
	e.U64(c.MemoryMiB)
	e.Len(len(c.Disks))
	for _, k := range c.Disks {
		e.String(k.Path)
		e.Bool(k.ReadOnly)
		e.Bool(k.Direct)
		e.String(k.Format)
		e.String(k.Serial)
		e.Int(k.Queues)
	}
	e.Bool(c.RNG)
	e.Len(len(c.Nets))
	for _, n := range c.Nets {
		e.String(n.TAP)
		e.String(n.MAC)
	}
	e.Bool(c.Vsock != nil)
	if c.Vsock != nil {
		e.U64(c.Vsock.CID)
		e.String(c.Vsock.UDS)
	}
	e.Bool(c.Balloon)
	e.Bool(c.DebugExit)
	e.String(c.Template)
	// Added after configVersion 2's first release: older snapshots end
	// here, and decode with no feature list.
	e.Len(len(c.CPUFeatures))
	for _, f := range c.CPUFeatures {
		e.String(f)
	}
}

// maxCPUFeatures bounds a saved CPU feature list (cpuid.Features has
// about 150 names).
const maxCPUFeatures = 1024

func decodeConfig(d *snapshot.Decoder, c *SavedConfig) error {
	c.CPUs = d.Int("CPUs", MaxCPUs)
	c.MemoryMiB = d.U64()
	if n := d.Len("Disks", maxDisks, minDiskBytes); n > 0 {
		c.Disks = make([]Disk, n)
		for i := range c.Disks {
			k := &c.Disks[i]
			k.Path = d.String("Disk.Path", maxPath)
			k.ReadOnly = d.Bool()
			k.Direct = d.Bool()
			k.Format = d.String("Disk.Format", maxName)
			k.Serial = d.String("Disk.Serial", maxName)
			k.Queues = d.Int("Disk.Queues", maxQueueCount)
		}
	}
	c.RNG = d.Bool()
	if n := d.Len("Nets", maxNets, minNetBytes); n > 0 {
		c.Nets = make([]Net, n)
		for i := range c.Nets {
			c.Nets[i].TAP = d.String("Net.TAP", maxName)
			c.Nets[i].MAC = d.String("Net.MAC", maxName)
		}
	}
	if d.Bool() {
		c.Vsock = &Vsock{CID: d.U64(), UDS: d.String("Vsock.UDS", maxPath)}
	}
	c.Balloon = d.Bool()
	c.DebugExit = d.Bool()
	c.Template = d.String("Template", maxName)
	if d.Remaining() > 0 {
		n := d.Len("CPUFeatures", maxCPUFeatures, 1)
		for i := 0; i < n; i++ {
			c.CPUFeatures = append(c.CPUFeatures, d.String("CPUFeature", maxName))
		}
	}
	return d.Err()
}
