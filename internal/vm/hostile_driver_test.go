package vm

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/govisor/govisor/internal/virtio"
)

// The hostile guest's virtio driver: what it emits to set devices and
// queues up (virtio 1.2 §3.1.1, §4.1.4.3, §2.7.13) and what the host side
// reads back from the rings.

// poke preloads guest RAM at gpa with data (part of the guest image).
func (h *hostileRun) poke(gpa uint64, data []byte) {
	h.preloads = append(h.preloads, preload{gpa, append([]byte(nil), data...)})
}

// desc preloads descriptor i of the table at table (§2.7.5).
func (h *hostileRun) desc(table uint64, i uint16, addr uint64, length uint32, flags, next uint16) {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[0:], addr)
	binary.LittleEndian.PutUint32(b[8:], length)
	binary.LittleEndian.PutUint16(b[12:], flags)
	binary.LittleEndian.PutUint16(b[14:], next)
	h.poke(table+16*uint64(i), b[:])
}

// queue lays out a queue of size entries in a fresh area: descriptors at
// +0, the available ring at +0x1000, the used ring at +0x2000; buffers go
// from +0x4000 on.
func (h *hostileRun) queue(idx, size uint16) *hqueue {
	base := h.area()
	return &hqueue{idx: idx, size: size, desc: base, avail: base + 0x1000, used: base + 0x2000}
}

// buf returns the address of the n-th 1 KiB buffer of q's area.
func (q *hqueue) buf(n int) uint64 { return q.desc + 0x4000 + uint64(n)*0x400 }

// initDev emits a driver's initialization of d (§3.1.1): reset,
// ACKNOWLEDGE, DRIVER, features, FEATURES_OK, the queues, DRIVER_OK.
func (h *hostileRun) initDev(d *hdev, features uint64, qs ...*hqueue) {
	h.startDev(d, features, qs...)
	h.a.st8(d.bar+ccStatus, virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusFeaturesOK|virtio.StatusDriverOK)
}

// startDev is initDev without the final DRIVER_OK.
func (h *hostileRun) startDev(d *hdev, features uint64, qs ...*hqueue) {
	a := &h.a
	a.st8(d.bar+ccStatus, 0)
	a.st8(d.bar+ccStatus, virtio.StatusAcknowledge)
	a.st8(d.bar+ccStatus, virtio.StatusAcknowledge|virtio.StatusDriver)
	for sel := range uint32(2) {
		a.st32(d.bar+ccDriverFeatureSel, sel)
		a.st32(d.bar+ccDriverFeature, uint32(features>>(32*sel)))
	}
	a.st8(d.bar+ccStatus, virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusFeaturesOK)
	for _, q := range qs {
		h.setupQueue(d, q)
	}
}

// setupQueue emits the common-configuration writes for q (§4.1.4.3).
func (h *hostileRun) setupQueue(d *hdev, q *hqueue) {
	a := &h.a
	a.st16(d.bar+ccQueueSelect, q.idx)
	a.st16(d.bar+ccQueueSize, q.size)
	a.st64(d.bar+ccQueueDesc, q.desc)
	a.st64(d.bar+ccQueueDriver, q.avail)
	a.st64(d.bar+ccQueueDevice, q.used)
	a.st16(d.bar+ccQueueEnable, 1)
}

// offer emits the guest making the chain at head available (§2.7.13),
// with the index it publishes, and a kick (§4.1.4.4).
func (h *hostileRun) offer(d *hdev, q *hqueue, heads ...uint16) {
	for _, head := range heads {
		h.a.st16(q.avail+4+2*uint64(q.next%q.size), head)
		q.next++
	}
	h.a.st16(q.avail+2, q.next)
	h.kick(d, q.idx)
}

// kick emits a notification of queue qi with a 16-bit write (the doorbell
// the VMM binds to an ioeventfd).
func (h *hostileRun) kick(d *hdev, qi uint16) {
	h.a.st16(d.bar+barNotify+4*uint64(qi), qi)
}

// usedIdx reads q's used index from guest RAM (what the device published).
func (h *hostileRun) usedIdx(q *hqueue) uint16 {
	var b [2]byte
	h.m.Memory().ReadAt(b[:], int64(q.used+2))
	return binary.LittleEndian.Uint16(b[:])
}

// usedElem reads used ring entry i of q: the chain's head and length.
func (h *hostileRun) usedElem(q *hqueue, i uint16) (id, length uint32) {
	var b [8]byte
	h.m.Memory().ReadAt(b[:], int64(q.used+4+8*uint64(i%q.size)))
	return binary.LittleEndian.Uint32(b[:]), binary.LittleEndian.Uint32(b[4:])
}

// poll calls cond until it holds or hostileWait passes.
func poll(what string, cond func() bool) error {
	for deadline := time.Now().Add(hostileWait); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out waiting for %s", what)
		}
	}
	return nil
}

// waitUsed waits until the device has returned n chains on q in total.
func (h *hostileRun) waitUsed(q *hqueue, n uint16) error {
	err := poll(fmt.Sprintf("used idx %d on queue %d", n, q.idx), func() bool { return h.usedIdx(q) == n })
	if err != nil {
		var b [2]byte
		h.m.Memory().ReadAt(b[:], int64(q.avail+2))
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var ws []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "virtio") {
				ws = append(ws, g)
			}
		}
		var ring [16]byte
		var prog [8]byte
		h.m.Memory().ReadAt(ring[:], int64(q.avail))
		h.m.Memory().ReadAt(prog[:], hostileProgress)
		err = fmt.Errorf("%w: used idx %d, avail idx %d, avail % x, progress % x; device goroutines:\n%s", err, h.usedIdx(q), binary.LittleEndian.Uint16(b[:]), ring, prog, strings.Join(ws, "\n\n"))
	}
	return err
}
