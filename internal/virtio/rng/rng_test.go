package rng_test

import (
	"bytes"
	"testing"

	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/pcitransport"
	"github.com/govisor/govisor/internal/virtio/pcitransport/pcitest"
	"github.com/govisor/govisor/internal/virtio/rng"
	"github.com/govisor/govisor/internal/virtio/virtqueuetest"
)

func TestRequests(t *testing.T) {
	plat := pcitest.NewPlatform()
	mem := virtqueuetest.NewMemory(0, 4<<20)
	dev := rng.New()
	tr, err := pcitransport.New(dev, mem, plat)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	drv, err := pcitest.Probe(tr, plat, mem, 0xE0000000)
	if err != nil {
		t.Fatal(err)
	}
	if err := drv.Init(virtio.FeatureVersion1|virtio.FeatureRingEventIdx|virtio.FeatureRingIndirectDesc, 1, 0); err != nil {
		t.Fatal(err)
	}
	q := drv.Queues[0]
	tests := []struct {
		name     string
		lens     []uint32
		indirect bool
		want     uint32
	}{
		{"one buffer", []uint32{32}, false, 32},
		{"three buffers", []uint32{8, 1, 100}, false, 109},
		{"indirect", []uint32{16, 16}, true, 32},
		{"capped at MaxRequest", []uint32{rng.MaxRequest, 4096}, false, rng.MaxRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var descs []virtqueuetest.Desc
			for _, l := range tt.lens {
				a, err := q.Alloc(uint64(l))
				if err != nil {
					t.Fatal(err)
				}
				descs = append(descs, virtqueuetest.Desc{Addr: a, Len: l, Write: true})
			}
			if tt.indirect {
				table, _ := q.Alloc(uint64(16 * len(descs)))
				_, err = q.AddIndirect(table, descs)
			} else {
				_, err = q.AddChain(descs)
			}
			if err != nil {
				t.Fatal(err)
			}
			drv.Kick(0)
			u, err := drv.Wait(0)
			if err != nil {
				t.Fatal(err)
			}
			if u.Len != tt.want {
				t.Fatalf("used len %d, want %d", u.Len, tt.want)
			}
			first := make([]byte, min(descs[0].Len, 64))
			mem.Read(descs[0].Addr, first)
			if bytes.Equal(first, make([]byte, len(first))) && len(first) >= 8 {
				t.Fatal("buffer not filled")
			}
		})
	}
}

func TestDeviceDescription(t *testing.T) {
	d := rng.New()
	if d.DeviceID() != virtio.IDEntropy || len(d.QueueMaxSizes()) != 1 || d.Features()&virtio.FeatureVersion1 == 0 {
		t.Fatal("wrong device description")
	}
	b := []byte{1, 2, 3}
	d.ReadConfig(0, b)
	if !bytes.Equal(b, []byte{0, 0, 0}) {
		t.Fatalf("config reads %v", b)
	}
	if err := d.RestoreState(d.SaveState()); err != nil {
		t.Fatal(err)
	}
	d.Reset() // not active: no effect
}
