package vm

import (
	"fmt"

	"github.com/govisor/govisor/internal/snapshot"
	"github.com/govisor/govisor/internal/virtio/balloon"
	"github.com/govisor/govisor/internal/virtio/blk"
	"github.com/govisor/govisor/internal/virtio/netdev"
	"github.com/govisor/govisor/internal/virtio/pcitransport"
	"github.com/govisor/govisor/internal/virtio/rng"
	"github.com/govisor/govisor/internal/virtio/virtqueue"
	"github.com/govisor/govisor/internal/virtio/vsock"
)

// The virtio-pci functions' state: the transport (virtio 1.2 4.1.4, its
// common configuration and queues) and the device behind it.

func encodeVirtio(e *snapshot.Encoder, v *VirtioState) {
	encodeTransport(e, &v.Transport)
	e.Bool(v.Blk != nil)
	if s := v.Blk; s != nil {
		e.U64(s.Capacity)
		e.Bool(s.ReadOnly)
		e.Raw(s.Serial[:])
	}
	e.Bool(v.RNG != nil) // rng.State has no fields
	e.Bool(v.Net != nil)
	if s := v.Net; s != nil {
		e.Raw(s.MAC[:])
		e.U16(s.MTU)
		e.U64(s.Features)
		e.Bool(s.LinkUp)
		e.Bool(s.Announce)
		e.Int(s.Pairs)
		e.Int(s.Active)
	}
	e.Bool(v.Vsock != nil)
	if s := v.Vsock; s != nil {
		encodeVsock(e, s)
	}
	e.Bool(v.Balloon != nil)
	if s := v.Balloon; s != nil {
		e.U64(s.Features)
		e.U32(s.Target)
		e.U32(s.Actual)
		e.Bool(s.StatsHeld)
		e.U16(s.StatsHead)
		st := &s.Stats
		for _, v := range [...]uint64{st.SwapIn, st.SwapOut, st.MajorFaults, st.MinorFaults, st.FreeMemory,
			st.TotalMemory, st.AvailableMemory, st.DiskCaches, st.HugetlbAllocations, st.HugetlbFailures} {
			e.U64(v)
		}
		e.Time(st.Updated)
	}
}

func decodeVirtio(d *snapshot.Decoder, v *VirtioState) error {
	if err := decodeTransport(d, &v.Transport); err != nil {
		return fmt.Errorf("transport: %w", err)
	}
	if d.Bool() {
		s := new(blk.State)
		s.Capacity = d.U64()
		s.ReadOnly = d.Bool()
		d.Raw(s.Serial[:])
		v.Blk = s
	}
	if d.Bool() {
		v.RNG = new(rng.State)
	}
	if d.Bool() {
		s := new(netdev.State)
		d.Raw(s.MAC[:])
		s.MTU = d.U16()
		s.Features = d.U64()
		s.LinkUp = d.Bool()
		s.Announce = d.Bool()
		s.Pairs = d.Int("Net.Pairs", maxQueueCount)
		s.Active = d.Int("Net.Active", maxQueueCount)
		v.Net = s
	}
	if d.Bool() {
		s := new(vsock.State)
		if err := decodeVsock(d, s); err != nil {
			return fmt.Errorf("vsock: %w", err)
		}
		v.Vsock = s
	}
	if d.Bool() {
		s := new(balloon.State)
		s.Features = d.U64()
		s.Target = d.U32()
		s.Actual = d.U32()
		s.StatsHeld = d.Bool()
		s.StatsHead = d.U16()
		st := &s.Stats
		for _, p := range [...]*uint64{&st.SwapIn, &st.SwapOut, &st.MajorFaults, &st.MinorFaults, &st.FreeMemory,
			&st.TotalMemory, &st.AvailableMemory, &st.DiskCaches, &st.HugetlbAllocations, &st.HugetlbFailures} {
			*p = d.U64()
		}
		st.Updated = d.Time()
		v.Balloon = s
	}
	return d.Err()
}

// The vsock device's state is versioned on its own, behind a tag no guest
// CID can equal (CIDs are below 2^32): version 1 was the CID alone, version 2
// adds the connections, their credit accounting (virtio 1.2 5.10.6.3) and
// the packets queued for the guest.
const (
	vsockStateTag     = 0x56534F434B000000 // "VSOCK" in the high bytes
	vsockStateVersion = 2
	maxVsockConns     = vsock.MaxConnections
	maxVsockPending   = 2*vsock.MaxConnections + 1024 // per connection a data and a control packet, plus RSTs
	maxVsockPacket    = 64 << 10                      // the device reads at most this much at once
	minVsockConnBytes = 9*4 + 4 + 4 + 8               // counters, flags, ToHost length, File
	minVsockPktBytes  = 8 + 4 + 4 + 2 + 4 + 4         // Conn, ports, Op, Flags, Data length
)

func encodeVsock(e *snapshot.Encoder, s *vsock.State) {
	e.U64(vsockStateTag | vsockStateVersion)
	e.U64(s.CID)
	e.U32(s.NextPort)
	e.Len(len(s.Conns))
	for i := range s.Conns {
		c := &s.Conns[i]
		for _, v := range [...]uint32{c.HostPort, c.GuestPort, c.PeerBufAlloc, c.PeerFwdCnt, c.TxCnt, c.RxCnt, c.FwdCnt, c.Advertised, c.PeerShut} {
			e.U32(v)
		}
		for _, b := range [...]bool{c.Connecting, c.HostEOF, c.WriterDone, c.CreditQueued} {
			e.Bool(b)
		}
		e.Blob(c.ToHost)
		e.Int(c.File)
	}
	e.Len(len(s.Pending))
	for i := range s.Pending {
		p := &s.Pending[i]
		e.Int(p.Conn + 1) // -1 (no connection) is 0
		e.U32(p.HostPort)
		e.U32(p.GuestPort)
		e.U16(p.Op)
		e.U32(p.Flags)
		e.Blob(p.Data)
	}
}

func decodeVsock(d *snapshot.Decoder, s *vsock.State) error {
	tag := d.U64()
	if err := d.Err(); err != nil {
		return err
	}
	if tag < 1<<32 {
		return fmt.Errorf("%w: vsock state version 1 (an older govisor); this govisor reads version %d",
			ErrStateFormat, vsockStateVersion)
	}
	if v := tag &^ vsockStateTag; tag&vsockStateTag != vsockStateTag || v != vsockStateVersion {
		return fmt.Errorf("%w: vsock state tag %#x, this govisor reads version %d", ErrStateFormat, tag, vsockStateVersion)
	}
	s.CID = d.U64()
	s.NextPort = d.U32()
	if n := d.Len("Vsock.Conns", maxVsockConns, minVsockConnBytes); n > 0 {
		s.Conns = make([]vsock.ConnState, n)
		for i := range s.Conns {
			c := &s.Conns[i]
			for _, p := range [...]*uint32{&c.HostPort, &c.GuestPort, &c.PeerBufAlloc, &c.PeerFwdCnt, &c.TxCnt, &c.RxCnt, &c.FwdCnt, &c.Advertised, &c.PeerShut} {
				*p = d.U32()
			}
			for _, p := range [...]*bool{&c.Connecting, &c.HostEOF, &c.WriterDone, &c.CreditQueued} {
				*p = d.Bool()
			}
			c.ToHost = d.Blob("Vsock.ToHost", vsock.BufAlloc)
			c.File = d.Int("Vsock.File", maxVsockConns)
		}
	}
	if n := d.Len("Vsock.Pending", maxVsockPending, minVsockPktBytes); n > 0 {
		s.Pending = make([]vsock.Packet, n)
		for i := range s.Pending {
			p := &s.Pending[i]
			p.Conn = d.Int("Vsock.Pending.Conn", maxVsockConns) - 1
			p.HostPort = d.U32()
			p.GuestPort = d.U32()
			p.Op = d.U16()
			p.Flags = d.U32()
			p.Data = d.Blob("Vsock.Pending.Data", maxVsockPacket)
		}
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
