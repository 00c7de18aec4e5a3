package vm

import (
	"fmt"

	"github.com/govisor/govisor/internal/snapshot"
	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/balloon"
	"github.com/govisor/govisor/internal/virtio/blk"
	"github.com/govisor/govisor/internal/virtio/netdev"
	"github.com/govisor/govisor/internal/virtio/pcitransport"
	"github.com/govisor/govisor/internal/virtio/rng"
	"github.com/govisor/govisor/internal/virtio/virtqueue"
	"github.com/govisor/govisor/internal/virtio/vsock"
)

// The virtio-pci functions' state: the transport (virtio 1.2 4.1.4, its
// common configuration and queues), then the device's state under its kind
// (virtio.RegisterState: each device package encodes its own). Version 3
// had a presence flag per kind there was instead, the kinds in v3Kinds'
// order, each followed by its state if set; it is still read and written
// (what decodes re-encodes identically).

// v3Kinds are the device kinds of StateVersion 3, in its flags' order.
var v3Kinds = [...]string{blk.StateKind, rng.StateKind, netdev.StateKind, vsock.StateKind, balloon.StateKind}

func encodeVirtio(e *snapshot.Encoder, v *VirtioState, version int) {
	encodeTransport(e, &v.Transport)
	if version == stateVersionV3 {
		// A v3 state only comes from decoding one: its device is of a v3 kind.
		for _, k := range v3Kinds {
			set := v.Device != nil && v.Device.StateKind() == k
			e.Bool(set)
			if set {
				v.Device.EncodeState(e)
			}
		}
		return
	}
	if v.Device == nil {
		e.String("")
		return
	}
	e.String(v.Device.StateKind())
	v.Device.EncodeState(e)
}

func decodeVirtio(d *snapshot.Decoder, v *VirtioState, version int) error {
	if err := decodeTransport(d, &v.Transport); err != nil {
		return fmt.Errorf("transport: %w", err)
	}
	if version == stateVersionV3 {
		return decodeVirtioV3(d, v)
	}
	kind := d.String("Virtio.Kind", maxName)
	if err := d.Err(); err != nil || kind == "" {
		return err
	}
	s, err := virtio.DecodeState(kind, d)
	if err != nil {
		return err
	}
	v.Device = s
	return d.Err()
}

// decodeVirtioV3 reads a version 3 device state: a flag per v3 kind. At
// most one is set; the codec wrote none for a function with no device.
func decodeVirtioV3(d *snapshot.Decoder, v *VirtioState) error {
	for _, k := range v3Kinds {
		if !d.Bool() {
			continue
		}
		if v.Device != nil {
			return fmt.Errorf("%w: states of a %s and a %s in one function", snapshot.ErrCorrupt, v.Device.StateKind(), k)
		}
		s, err := virtio.DecodeState(k, d)
		if err != nil {
			return err
		}
		v.Device = s
	}
	return d.Err()
}

func encodeTransport(e *snapshot.Encoder, t *pcitransport.State) {
	e.Raw(t.Config.Data[:])
	e.U32(t.DeviceFeatureSel)
	e.U32(t.DriverFeatureSel)
	e.U64(t.DriverFeatures)
	e.U8(t.Status)
	e.U8(t.ConfigGeneration)
	e.U16(t.QueueSelect)
	e.U32(t.ISR)
	e.Bool(t.NeedsReset)
	e.Len(len(t.Queues))
	for i := range t.Queues {
		encodeQueue(e, &t.Queues[i])
	}
	e.Blob(t.MSIX.Table)
	e.U64(t.MSIX.Pending)
	e.U16(t.MSIX.ConfigVector)
}

func decodeTransport(d *snapshot.Decoder, t *pcitransport.State) error {
	d.Raw(t.Config.Data[:])
	t.DeviceFeatureSel = d.U32()
	t.DriverFeatureSel = d.U32()
	t.DriverFeatures = d.U64()
	t.Status = d.U8()
	t.ConfigGeneration = d.U8()
	t.QueueSelect = d.U16()
	t.ISR = d.U32()
	t.NeedsReset = d.Bool()
	if n := d.Len("Queues", pcitransport.MaxQueues, minQueueBytes); n > 0 {
		t.Queues = make([]pcitransport.QueueState, n)
		for i := range t.Queues {
			decodeQueue(d, &t.Queues[i])
			if err := d.Err(); err != nil {
				return fmt.Errorf("queue %d: %w", i, err)
			}
		}
	}
	t.MSIX.Table = d.Blob("MSIX.Table", maxMSIXTable)
	t.MSIX.Pending = d.U64()
	t.MSIX.ConfigVector = d.U16()
	return d.Err()
}

func encodeQueue(e *snapshot.Encoder, q *pcitransport.QueueState) {
	e.U16(q.Size)
	e.Bool(q.Enable)
	e.U64(q.Desc)
	e.U64(q.Driver)
	e.U64(q.Device)
	e.U16(q.Vector)
	e.Bool(q.Ring != nil)
	if r := q.Ring; r != nil {
		e.U16(r.Config.Size)
		e.U64(r.Config.Desc)
		e.U64(r.Config.Avail)
		e.U64(r.Config.Used)
		e.Bool(r.Config.EventIdx)
		e.Bool(r.Config.Indirect)
		e.U16(r.LastAvail)
		e.U16(r.NextUsed)
		e.U16(r.SignalledUsed)
		e.U16(r.UsedFlags)
		e.Bool(r.Broken)
	}
}

func decodeQueue(d *snapshot.Decoder, q *pcitransport.QueueState) {
	q.Size = d.U16()
	q.Enable = d.Bool()
	q.Desc = d.U64()
	q.Driver = d.U64()
	q.Device = d.U64()
	q.Vector = d.U16()
	if d.Bool() {
		r := new(virtqueue.State)
		r.Config.Size = d.U16()
		r.Config.Desc = d.U64()
		r.Config.Avail = d.U64()
		r.Config.Used = d.U64()
		r.Config.EventIdx = d.Bool()
		r.Config.Indirect = d.Bool()
		r.LastAvail = d.U16()
		r.NextUsed = d.U16()
		r.SignalledUsed = d.U16()
		r.UsedFlags = d.U16()
		r.Broken = d.Bool()
		q.Ring = r
	}
}

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
