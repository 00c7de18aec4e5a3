package pcitransport

import (
	"fmt"

	"github.com/govisor/govisor/internal/pci"
	"github.com/govisor/govisor/internal/snapshot"
	"github.com/govisor/govisor/internal/virtio/virtqueue"
)

// The transport state's binary encoding (snapshot.Encoder): the common
// configuration and queues of virtio 1.2 4.1.4, then MSI-X.

// Bounds a decoded state is checked against.
const (
	maxMSIXTable  = MaxVectors * 16
	minQueueBytes = 2 + 1 + 3*8 + 2 + 1
	// MinStateBytes is the least an encoded State takes (its
	// configuration space alone), for callers bounding counts of them.
	MinStateBytes = pci.ConfigSize
)

// Encode appends the state's encoding.
func (t *State) Encode(e *snapshot.Encoder) {
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

// Decode reads what Encode wrote into the zero state t.
func (t *State) Decode(d *snapshot.Decoder) error {
	d.Raw(t.Config.Data[:])
	t.DeviceFeatureSel = d.U32()
	t.DriverFeatureSel = d.U32()
	t.DriverFeatures = d.U64()
	t.Status = d.U8()
	t.ConfigGeneration = d.U8()
	t.QueueSelect = d.U16()
	t.ISR = d.U32()
	t.NeedsReset = d.Bool()
	if n := d.Len("Queues", MaxQueues, minQueueBytes); n > 0 {
		t.Queues = make([]QueueState, n)
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

func encodeQueue(e *snapshot.Encoder, q *QueueState) {
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

func decodeQueue(d *snapshot.Decoder, q *QueueState) {
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
