package vm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"

	"github.com/govisor/govisor/internal/pci"
	"github.com/govisor/govisor/internal/pcihotplug"
	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/blk"
	"github.com/govisor/govisor/internal/virtio/netdev"
	"github.com/govisor/govisor/internal/virtio/vsock"
)

// hostileTransportAttacks: the virtio-pci common configuration written
// out of protocol, and storms of doorbells, MMIO and port I/O. None of it
// is malformed enough to break a device (§4.1.4.3 leaves such writes
// without effect), so the device must keep serving.
func hostileTransportAttacks(h *hostileRun) {
	rng := h.devs[rngID]
	q := h.queue(0, 8)
	for i := range uint16(8) {
		h.desc(q.desc, i, q.buf(int(i)), 64, dWrite, 0)
	}
	h.add("common config out of protocol", rng, wantHealthy, func() {
		a := &h.a
		h.initDev(rng, rngFeatures, q)
		h.offer(rng, q, 0)
		a.st16(rng.bar+ccQueueSelect, 0xFFFF)
		a.st16(rng.bar+ccQueueSize, 0x1234)
		a.st64(rng.bar+ccQueueDesc, outsideRAM)
		a.st16(rng.bar+ccQueueEnable, 1)
		a.st32(rng.bar, 0xFFFFFFFF) // device_feature_select
		a.ld(rng.bar+4, 4)
		a.st16(rng.bar+ccQueueSelect, 0)
		a.st64(rng.bar+ccQueueDesc, outsideRAM) // frozen after DRIVER_OK
		a.st16(rng.bar+ccQueueSize, 3)
		a.st32(rng.bar+0x13, 0xFFFFFFFF) // across two registers
		a.st64(rng.bar+0x10, 0xFFFFFFFFFFFFFFFF)
		a.st32(rng.bar+0x12, 0xFFFFFFFF) // num_queues is read-only
		a.st8(rng.bar+0x15, 0xFF)        // config_generation is read-only
		a.st64(rng.bar+0x34, 0xFFFFFFFFFFFFFFFF)
		a.st64(rng.bar+0x38, 0xFFFFFFFFFFFFFFFF) // past the structure
		a.st64(rng.bar+0xFF8, 0xFFFFFFFFFFFFFFFF)
		a.ld(rng.bar+0xFFC, 4)
		a.st8(rng.bar+barISR, 0xFF)
		a.st64(rng.bar+barDevCfg, 0xFFFFFFFFFFFFFFFF) // rng has no configuration
		a.st64(rng.bar+barDevCfg+0xFF8, 0xFFFFFFFFFFFFFFFF)
		h.offer(rng, q, 1)
	}, func() error { return h.waitUsed(q, 2) })

	h.add("doorbell storm", rng, wantHealthy, func() {
		a := &h.a
		a.repeat(stormRounds(5000), func() {
			h.kick(rng, 0)                              // ioeventfd
			a.st32(rng.bar+barNotify, 0)                // MMIO exit
			a.st8(rng.bar+barNotify+2, 0xFF)            // odd offset
			a.st16(rng.bar+barNotify+4*7, 7)            // no such queue
			a.st64(rng.bar+barNotify+0x7F8, ^uint64(0)) // notify area's end
		})
		h.offer(rng, q, 2)
	}, func() error { return h.waitUsed(q, 3) })

	h.add("MMIO storm over the BAR", rng, wantHealthy, func() {
		a := &h.a
		a.repeat(stormRounds(2000), func() {
			a.ld(rng.bar+barISR, 1) // read-to-clear
			a.ld(rng.bar+barISR+0x800, 4)
			a.ld(rng.bar+barDevCfg+0x10, 8)
			a.ld(rng.bar+barMSIXPBA, 8)
			a.ld(rng.bar+ccStatus, 1)
			a.st64(rng.bar+barMSIXPBA+0x3F8, ^uint64(0))
		})
		h.offer(rng, q, 3)
	}, func() error { return h.waitUsed(q, 4) })

	h.add("MMIO storm on nothing", rng, wantHealthy, func() {
		a := &h.a
		a.repeat(stormRounds(5000), func() {
			a.st32(0xD0000000, 0xFFFFFFFF)
			a.ld(0xDFFFF000, 4)
			a.st64(0xFEBFFFF8, ^uint64(0)) // below the I/O APIC
		})
		h.offer(rng, q, 4)
	}, func() error { return h.waitUsed(q, 5) })

	h.add("port I/O storm", rng, wantHealthy, func() {
		a := &h.a
		a.repeat(stormRounds(3000), func() {
			a.out(0x80, 1, 0xFF)
			a.in(0x1234, 4)
			a.out(0xFFFF, 1, 0xFF)
			a.out(pci.ConfigAddressPort, 4, 1<<31|31<<11|7<<8|0xFC) // an absent function
			a.out(pci.ConfigDataPort, 4, 0xFFFFFFFF)
			a.in(pci.ConfigDataPort, 4)
			a.out(pci.ResetControlPort, 1, 0x0A) // SYS_RST|FULL_RST, no RST_CPU
			a.out(0x70, 1, 0xFF)
			a.in(0x71, 1)
			a.in(pcihotplug.GPEBase, 4)
		})
		a.out(pci.ResetControlPort, 1, 0)
		h.offer(rng, q, 5)
	}, func() error { return h.waitUsed(q, 6) })
}

// hostileDeviceAttacks: malformed requests and headers for virtio-blk,
// virtio-net, virtio-vsock and virtio-balloon. These are the devices'
// own protocols (§5.2, §5.1, §5.10, §5.5): a bad request is answered
// with an error status or dropped and counted, the device keeps working.
func hostileDeviceAttacks(h *hostileRun) {
	hostileBlk(h)
	hostileNet(h)
	hostileVsock(h)
	hostileBalloon(h)
}

// scribbleConfig emits writes of all ones over d's whole device
// configuration region (§4.1.4.6), and one running past it.
func (h *hostileRun) scribbleConfig(d *hdev) {
	h.a.repeat(1, func() {
		for off := uint64(0); off < 0x100; off += 8 {
			h.a.st64(d.bar+barDevCfg+off, ^uint64(0))
		}
		h.a.st32(d.bar+barDevCfg+0x101, ^uint32(0))
		h.a.st64(d.bar+barDevCfg+0xFFC, ^uint64(0))
	})
}

func hostileBlk(h *hostileRun) {
	vda := h.devs["vda"]
	q := h.queue(0, 16)
	hdr := func(n int, typ uint32, sector uint64) uint64 {
		var b [16]byte
		binary.LittleEndian.PutUint32(b[0:], typ)
		binary.LittleEndian.PutUint64(b[8:], sector)
		h.poke(q.buf(n), b[:])
		return q.buf(n)
	}
	status := func(n int) uint64 { return q.buf(n) + 0x3F0 }
	// 0: a header of 8 bytes.
	h.desc(q.desc, 0, hdr(0, blk.TypeIn, 0), 8, dNext, 1)
	h.desc(q.desc, 1, status(0), 1, dWrite, 0)
	// 2: a read past the end of the disk.
	h.desc(q.desc, 2, hdr(1, blk.TypeIn, 0xFFFFFFFFFFFFFF00), 16, dNext, 3)
	h.desc(q.desc, 3, q.buf(2), 512, dWrite|dNext, 4)
	h.desc(q.desc, 4, status(1), 1, dWrite, 0)
	// 5: an unknown request type.
	h.desc(q.desc, 5, hdr(3, 0x7777, 0), 16, dNext, 6)
	h.desc(q.desc, 6, status(3), 1, dWrite, 0)
	// 7: no writable buffer for the status.
	h.desc(q.desc, 7, hdr(4, blk.TypeIn, 0), 16, 0, 0)
	// 8: a write of 100 bytes (not whole sectors) at the last sector.
	h.desc(q.desc, 8, hdr(5, 1, 2047), 16, dNext, 9)
	h.desc(q.desc, 9, q.buf(6), 100, dNext, 10)
	h.desc(q.desc, 10, status(5), 1, dWrite, 0)
	// 11: a write that runs past the end of the disk.
	h.desc(q.desc, 11, hdr(7, 1, 2047), 16, dNext, 12)
	h.desc(q.desc, 12, q.buf(8), 1024, dNext, 13)
	h.desc(q.desc, 13, status(7), 1, dWrite, 0)
	for _, n := range []int{0, 1, 3, 5, 7} {
		h.poke(status(n), []byte{0xEE})
	}
	h.add("virtio-blk malformed requests", vda, wantHealthy, func() {
		h.initDev(vda, virtio.FeatureVersion1, q)
		h.scribbleConfig(vda)
		h.offer(vda, q, 0, 2, 5, 7, 8, 11)
	}, func() error {
		if err := h.waitUsed(q, 6); err != nil {
			return err
		}
		for _, c := range []struct {
			what string
			n    int
			want byte
		}{{"short header", 0, blk.StatusIOErr}, {"read past the end", 1, blk.StatusIOErr},
			{"unknown type", 3, blk.StatusUnsupp}, {"partial sector write", 5, blk.StatusIOErr},
			{"write past the end", 7, blk.StatusIOErr}} {
			var s [1]byte
			h.m.Memory().ReadAt(s[:], int64(status(c.n)))
			if s[0] != c.want {
				return fmt.Errorf("%s: status %d, want %d", c.what, s[0], c.want)
			}
		}
		img, err := os.ReadFile(h.diskPath)
		if err != nil {
			return err
		}
		if !bytes.Equal(img, bytes.Repeat([]byte{0xA5}, 1<<20)) || len(img) != 1<<20 {
			return fmt.Errorf("the disk image changed (%d bytes)", len(img))
		}
		return nil
	})
}

func hostileNet(h *hostileRun) {
	net0 := h.devs["net0"]
	dev := h.m.devs.Get("net0").Dev.(*netdev.Device)
	rx, tx := h.queue(0, 8), h.queue(1, 16)
	frame := func(n int, flags, gso uint8, csumStart uint16, length uint32) uint16 {
		b := make([]byte, length)
		if len(b) >= netdev.HeaderSize {
			b[0], b[1] = flags, gso
			binary.LittleEndian.PutUint16(b[6:], csumStart)
			binary.LittleEndian.PutUint16(b[10:], 0xFFFF) // num_buffers: the device's
		}
		h.poke(tx.buf(n), b)
		h.desc(tx.desc, uint16(n), tx.buf(n), length, 0, 0)
		return uint16(n)
	}
	heads := []uint16{
		frame(0, 0, 0, 0, 4),                         // shorter than the header
		frame(1, 0, 0, 0, netdev.HeaderSize+10),      // shorter than an Ethernet header
		frame(2, 0, 0x55, 0, netdev.HeaderSize+60),   // unknown GSO type
		frame(3, 1, 0, 0xFFFF, netdev.HeaderSize+60), // NEEDS_CSUM without the feature, csum past the end
		frame(4, 0xFE, 0, 0, netdev.HeaderSize+60),   // reserved flags
		frame(5, 0, 0x80|1, 0, netdev.HeaderSize+60), // ECN on TCPv4 without TSO
	}
	// 6: a frame above the maximum, in one buffer of the area.
	h.desc(tx.desc, 6, tx.buf(0), netdev.HeaderSize+netdev.MaxFrame+1, 0, 0)
	heads = append(heads, 6)
	before := dev.Counters() // the guest has not run yet
	h.add("virtio-net malformed headers", net0, wantHealthy, func() {
		h.initDev(net0, virtio.FeatureVersion1, rx, tx)
		h.scribbleConfig(net0)
		h.offer(net0, tx, heads...)
	}, func() error {
		if err := h.waitUsed(tx, uint16(len(heads))); err != nil {
			return err
		}
		c := dev.Counters()
		if c.TxDrops-before.TxDrops != uint64(len(heads)) || c.TxPackets != before.TxPackets {
			return fmt.Errorf("%d dropped and %d sent of %d malformed frames", c.TxDrops-before.TxDrops, c.TxPackets-before.TxPackets, len(heads))
		}
		return nil
	})
}

// vsockHeader encodes a virtio-vsock packet header (§5.10.6).
func vsockHeader(src, dst uint64, srcPort, dstPort, length uint32, typ, op uint16) []byte {
	b := make([]byte, vsock.HeaderSize)
	binary.LittleEndian.PutUint64(b[0:], src)
	binary.LittleEndian.PutUint64(b[8:], dst)
	binary.LittleEndian.PutUint32(b[16:], srcPort)
	binary.LittleEndian.PutUint32(b[20:], dstPort)
	binary.LittleEndian.PutUint32(b[24:], length)
	binary.LittleEndian.PutUint16(b[28:], typ)
	binary.LittleEndian.PutUint16(b[30:], op)
	binary.LittleEndian.PutUint32(b[36:], 1<<16) // buf_alloc
	return b
}

func hostileVsock(h *hostileRun) {
	vs := h.devs[vsockID]
	dev := h.m.vsockDevice()
	rx, tx := h.queue(vsock.QueueRx, 8), h.queue(vsock.QueueTx, 16)
	for i := range uint16(8) {
		h.desc(rx.desc, i, rx.buf(int(i)), 0x400, dWrite, 0)
	}
	const guest, host = 3, vsock.HostCID
	pkts := [][]byte{
		vsockHeader(guest, host, 1000, 2000, 0, vsock.TypeStream, vsock.OpRequest)[:10], // short
		vsockHeader(99, host, 1000, 2000, 0, vsock.TypeStream, vsock.OpRequest),         // not this guest's CID
		vsockHeader(guest, 7, 1000, 2000, 0, vsock.TypeStream, vsock.OpRequest),         // not for the host
		vsockHeader(guest, host, 1001, 2000, 0, vsock.TypeSeqpacket, vsock.OpRequest),   // no seqpacket
		vsockHeader(guest, host, 1002, 2000, 0xFFFFFFFF, vsock.TypeStream, vsock.OpRW),  // length past the buffer
		vsockHeader(guest, host, 1003, 2000, 0, vsock.TypeStream, vsock.OpRW),           // no such connection
		vsockHeader(guest, host, 1004, 2000, 0, vsock.TypeStream, 0x7777),               // no such op
		vsockHeader(guest, host, 1005, 2000, 0, 0xFFFF, vsock.OpRST),                    // bad type, RST
	}
	for i, p := range pkts {
		h.poke(tx.buf(i), p)
		h.desc(tx.desc, uint16(i), tx.buf(i), uint32(len(p)), 0, 0)
	}
	before := dev.Counters() // the guest has not run yet
	h.add("virtio-vsock malformed headers", vs, wantHealthy, func() {
		h.initDev(vs, virtio.FeatureVersion1, rx, tx)
		// guest_cid is read-only (§5.10.4): the packets below still need
		// this guest's CID as their source.
		h.scribbleConfig(vs)
		h.offer(vs, rx, 0, 1, 2, 3, 4, 5, 6, 7)
		heads := make([]uint16, len(pkts))
		for i := range heads {
			heads[i] = uint16(i)
		}
		h.offer(vs, tx, heads...)
	}, func() error {
		if err := h.waitUsed(tx, uint16(len(pkts))); err != nil {
			return err
		}
		// The refusals come back as RST packets on the receive queue.
		if err := poll("RSTs on the receive queue", func() bool { return h.usedIdx(rx) > 0 }); err != nil {
			return err
		}
		var b [vsock.HeaderSize]byte
		h.m.Memory().ReadAt(b[:], int64(rx.buf(int(firstUsedHead(h, rx)))))
		if op := binary.LittleEndian.Uint16(b[30:]); op != vsock.OpRST {
			return fmt.Errorf("the first reply is op %d, want RST", op)
		}
		c := dev.Counters()
		if c.BadPackets-before.BadPackets < 5 || c.Connections != 0 {
			return fmt.Errorf("counters %+v (before %+v)", c, before)
		}
		return nil
	})
}

func firstUsedHead(h *hostileRun, q *hqueue) uint32 {
	id, _ := h.usedElem(q, 0)
	return id
}

func hostileBalloon(h *hostileRun) {
	b := h.devs[balloonID]
	dev := h.m.Balloon()
	inflate, deflate := h.queue(0, 8), h.queue(1, 8)
	pfns := func(q *hqueue, n int, v ...uint32) {
		var buf []byte
		for _, p := range v {
			buf = binary.LittleEndian.AppendUint32(buf, p)
		}
		h.poke(q.buf(n), buf)
	}
	// Page numbers past RAM, in the PCI hole, on the APIC, the last one.
	pfns(inflate, 0, 0xFFFFFFFF, 0x10000000, 0xC0000, 0xFEE00, hostileRAMEnd>>12)
	h.desc(inflate.desc, 0, inflate.buf(0), 20, 0, 0)
	// Six bytes: one and a half page numbers.
	pfns(inflate, 1, 0xFFFFFFF0, 0xFFFFFFF1)
	h.desc(inflate.desc, 1, inflate.buf(1), 6, 0, 0)
	// A writable buffer where the device only reads.
	h.desc(inflate.desc, 2, inflate.buf(2), 64, dWrite, 0)
	pfns(deflate, 0, 0xFFFFFFFF, 0)
	h.desc(deflate.desc, 0, deflate.buf(0), 8, 0, 0)
	before := dev.Counters() // the guest has not run yet
	h.add("virtio-balloon malformed page lists", b, wantHealthy, func() {
		h.initDev(b, virtio.FeatureVersion1, inflate, deflate)
		// The configuration: actual pages, then writes past its end.
		h.a.st32(b.bar+barDevCfg+4, 0xFFFFFFFF)
		h.a.st64(b.bar+barDevCfg+6, ^uint64(0))
		h.a.st64(b.bar+barDevCfg+0xFF8, ^uint64(0))
		h.offer(b, inflate, 0, 1, 2)
		h.offer(b, deflate, 0)
	}, func() error {
		if err := h.waitUsed(inflate, 3); err != nil {
			return err
		}
		if err := h.waitUsed(deflate, 1); err != nil {
			return err
		}
		c := dev.Counters()
		if c.BadPFNs-before.BadPFNs < 5 {
			return fmt.Errorf("%d bad page numbers counted, want at least 5 (%+v)", c.BadPFNs-before.BadPFNs, c)
		}
		return nil
	})
}

// stormRounds is how many rounds a storm attack runs: n, or n/20 in a lab
// host under TCG, where every exit costs about a millisecond: the full
// storms (tens of thousands of MMIO and port exits) took 1-2 minutes of
// the suite there, and with two lab vCPUs they broke the lab host in most
// runs (lab.DefaultCPUs says how). A twentieth is still hundreds of exits
// against one device in a second.
func stormRounds(n uint32) uint32 {
	if os.Getenv("GOVISOR_LAB") == "1" && os.Getenv("GOVISOR_LAB_QEMU") != "kvm" {
		return n / 20
	}
	return n
}
