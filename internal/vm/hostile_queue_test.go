package vm

import (
	"bytes"
	"fmt"

	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/virtqueue"
)

const (
	dNext     = virtqueue.DescFNext
	dWrite    = virtqueue.DescFWrite
	dIndirect = virtqueue.DescFIndirect
	// hostileRAMEnd is the end of the attacked guest's 64 MiB of RAM.
	hostileRAMEnd = 64 << 20
	// outsideRAM is a guest-physical address with nothing behind it.
	outsideRAM = 0x10_0000_0000
)

// rngFeatures is what the hostile driver negotiates with virtio-rng.
const rngFeatures = virtio.FeatureVersion1 | virtio.FeatureRingIndirectDesc

// hostileQueueAttacks: split-virtqueue abuse on virtio-rng, the simplest
// device (every chain is writable buffers to fill). Each malformed chain
// or ring must leave the device in DEVICE_NEEDS_RESET (virtio 1.2 §2.1.2;
// what is malformed: §2.7.5 descriptors, §2.7.5.3 indirect tables, §2.7.6
// the available ring), never a VMM crash, a hang or an access outside the
// guest's RAM.
func hostileQueueAttacks(h *hostileRun) {
	rng := h.devs[rngID]

	// A well-formed request first: the driver code itself works.
	bq := h.queue(0, 8)
	h.desc(bq.desc, 0, bq.buf(0), 64, dWrite, 0)
	h.add("baseline rng request", rng, wantHealthy, func() {
		h.initDev(rng, rngFeatures, bq)
		h.offer(rng, bq, 0)
	}, func() error { return h.waitUsed(bq, 1) })

	broken := func(name string, features uint64, layout func(q *hqueue)) {
		q := h.queue(0, 8)
		layout(q)
		h.add(name, rng, wantNeedsReset, func() {
			h.initDev(rng, features, q)
			h.offer(rng, q, 0)
		}, nil)
	}
	broken("descriptor loop", rngFeatures, func(q *hqueue) {
		h.desc(q.desc, 0, q.buf(0), 64, dWrite|dNext, 0)
	})
	broken("chain longer than the queue", rngFeatures, func(q *hqueue) {
		for i := range uint16(8) {
			h.desc(q.desc, i, q.buf(int(i)), 64, dWrite|dNext, (i+1)%8)
		}
	})
	broken("next index past the table", rngFeatures, func(q *hqueue) {
		h.desc(q.desc, 0, q.buf(0), 64, dWrite|dNext, 100)
	})
	broken("indirect table loop", rngFeatures, func(q *hqueue) {
		h.desc(q.desc, 0, q.buf(0), 4*16, dIndirect, 0)
		for i := range uint16(4) {
			h.desc(q.buf(0), i, q.buf(1), 64, dWrite|dNext, (i+1)%4)
		}
	})
	broken("indirect table of 1025 entries", rngFeatures, func(q *hqueue) {
		h.desc(q.desc, 0, q.buf(0), 1025*16, dIndirect, 0)
	})
	broken("nested indirect table", rngFeatures, func(q *hqueue) {
		h.desc(q.desc, 0, q.buf(0), 16, dIndirect, 0)
		h.desc(q.buf(0), 0, q.buf(1), 16, dIndirect, 0)
	})
	broken("indirect without the feature", virtio.FeatureVersion1, func(q *hqueue) {
		h.desc(q.desc, 0, q.buf(0), 16, dIndirect, 0)
		h.desc(q.buf(0), 0, q.buf(1), 64, dWrite, 0)
	})
	broken("indirect table outside RAM", rngFeatures, func(q *hqueue) {
		h.desc(q.desc, 0, outsideRAM, 16, dIndirect, 0)
	})
	broken("buffer outside RAM", rngFeatures, func(q *hqueue) {
		h.desc(q.desc, 0, outsideRAM, 64, dWrite, 0)
	})
	broken("buffer in the device's own BAR", rngFeatures, func(q *hqueue) {
		h.desc(q.desc, 0, rng.bar, 64, dWrite, 0)
	})
	broken("buffer on the local APIC", rngFeatures, func(q *hqueue) {
		h.desc(q.desc, 0, 0xFEE00000, 64, dWrite, 0)
	})
	// The end of RAM keeps a canary: a device that wrote the part of the
	// buffer that is RAM before failing would change it.
	canary := bytes.Repeat([]byte{0x5A}, 32)
	h.poke(hostileRAMEnd-32, canary)
	{
		q := h.queue(0, 8)
		h.desc(q.desc, 0, hostileRAMEnd-32, 64, dWrite, 0)
		h.add("buffer across the end of RAM", rng, wantNeedsReset, func() {
			h.initDev(rng, rngFeatures, q)
			h.offer(rng, q, 0)
		}, func() error {
			if err := poll("NEEDS_RESET", func() bool { return rng.status()&virtio.StatusDeviceNeedsReset != 0 }); err != nil {
				return err
			}
			got := make([]byte, 32)
			h.m.Memory().ReadAt(got, hostileRAMEnd-32)
			if !bytes.Equal(got, canary) {
				return fmt.Errorf("the last 32 bytes of RAM changed: % x", got)
			}
			return nil
		})
	}
	broken("length that wraps 32 bits", rngFeatures, func(q *hqueue) {
		h.desc(q.desc, 0, q.buf(0), 0xFFFFFFFF, dWrite, 0)
	})
	broken("address that wraps 64 bits", rngFeatures, func(q *hqueue) {
		h.desc(q.desc, 0, 0xFFFFFFFFFFFFF000, 0x2000, dWrite, 0)
	})
	broken("readable after writable", rngFeatures, func(q *hqueue) {
		h.desc(q.desc, 0, q.buf(0), 64, dWrite|dNext, 1)
		h.desc(q.desc, 1, q.buf(1), 64, 0, 0)
	})

	// Ring abuse (§2.7.6): a published index too far ahead, a head past
	// the table, an index that goes backwards.
	lie := func(name string, ringHead, idx uint16) {
		q := h.queue(0, 8)
		h.desc(q.desc, 0, q.buf(0), 64, dWrite, 0)
		h.add(name, rng, wantNeedsReset, func() {
			h.initDev(rng, rngFeatures, q)
			h.a.st16(q.avail+4, ringHead)
			h.a.st16(q.avail+2, idx)
			h.kick(rng, 0)
		}, nil)
	}
	lie("avail index a queue ahead", 0, 1000)
	lie("avail head past the table", 200, 1)

	// The used ring is the device's: a driver scribbling over it must not
	// confuse it (it keeps its own index), and the next request is served.
	lq := h.queue(0, 8)
	h.desc(lq.desc, 0, lq.buf(0), 64, dWrite, 0)
	h.desc(lq.desc, 1, lq.buf(1), 64, dWrite, 0)
	h.add("used ring lies (first request)", rng, wantHealthy, func() {
		h.initDev(rng, rngFeatures, lq)
		h.offer(rng, lq, 0)
	}, func() error { return h.waitUsed(lq, 1) })
	h.add("used ring lies", rng, wantHealthy, func() {
		h.a.st16(lq.used+2, 0x7777)
		h.a.st64(lq.used+4, 0xFFFFFFFFFFFFFFFF)
		h.a.st16(lq.used, 0xFFFF)
		h.a.st16(lq.avail, 0xFFFF) // avail flags: reserved bits
		h.offer(rng, lq, 1)
	}, func() error { return h.waitUsed(lq, 2) })
	h.add("avail index goes backwards", rng, wantNeedsReset, func() {
		h.a.st16(lq.avail+2, 1)
		h.kick(rng, 0)
	}, nil)

	// Rings the device cannot map: activation fails (§2.7: the rings are
	// in guest memory, aligned, of a power-of-two size up to the maximum).
	setup := func(name string, q *hqueue) {
		h.add(name, rng, wantNeedsReset, func() { h.initDev(rng, rngFeatures, q) }, nil)
	}
	q := h.queue(0, 8)
	q.desc = outsideRAM
	setup("descriptor table outside RAM", q)
	q = h.queue(0, 8)
	q.used = rng.bar
	setup("used ring in the device's BAR", q)
	q = h.queue(0, 8)
	q.desc = hostileRAMEnd - 64
	setup("descriptor table across the end of RAM", q)
	q = h.queue(0, 8)
	q.avail = 0xFFFFFFFFFFFFFFFE
	setup("available ring that wraps", q)
	q = h.queue(0, 6)
	setup("queue size not a power of two", q)
	q = h.queue(0, 0)
	setup("queue size zero", q)
	q = h.queue(0, 512)
	setup("queue size above the maximum", q)
	q = h.queue(0, 8)
	q.desc += 8
	setup("misaligned descriptor table", q)

	// Status protocol abuse (§3.1.1).
	q = h.queue(0, 8)
	h.add("DRIVER_OK without FEATURES_OK", rng, wantNeedsReset, func() {
		a := &h.a
		a.st8(rng.bar+ccStatus, 0)
		a.st8(rng.bar+ccStatus, virtio.StatusAcknowledge|virtio.StatusDriver)
		h.setupQueue(rng, q)
		a.st8(rng.bar+ccStatus, virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusDriverOK)
	}, nil)
	q = h.queue(0, 8)
	h.add("features the device never offered", rng, wantNeedsReset, func() {
		h.initDev(rng, rngFeatures|1<<40|virtio.FeatureRingPacked, q)
	}, nil)
}
