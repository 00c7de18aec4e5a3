package pcitransport_test

import (
	"testing"
	"time"

	"github.com/govisor/govisor/internal/pci"
	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/pcitransport"
	"github.com/govisor/govisor/internal/virtio/pcitransport/pcitest"
	"github.com/govisor/govisor/internal/virtio/rng"
	"github.com/govisor/govisor/internal/virtio/virtqueuetest"
)

func TestINTxWithoutMSIX(t *testing.T) {
	plat := &pcitest.WithINTx{Platform: pcitest.NewPlatform()}
	mem := virtqueuetest.NewMemory(0, ramSize)
	tr, err := pcitransport.New(rng.New(), mem, plat)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	if pin := tr.Config().U8(pci.RegInterruptPin); pin != 1 {
		t.Fatalf("interrupt pin %d, want INTA#", pin)
	}
	drv, err := pcitest.Probe(tr, plat.Platform, mem, barAddr)
	if err != nil {
		t.Fatal(err)
	}
	tr.ConfigWrite(drv.MSIXCap+3, []byte{0}) // MSI-X off: the driver uses INTx
	if err := drv.Init(virtio.FeatureVersion1, 1, 0); err != nil {
		t.Fatal(err)
	}
	q := drv.Queues[0]
	buf, _ := q.Alloc(8)
	q.AddChain([]virtqueuetest.Desc{{Addr: buf, Len: 8, Write: true}})
	drv.Kick(0)
	deadline := time.Now().Add(10 * time.Second)
	for !plat.Level() {
		if time.Now().After(deadline) {
			t.Fatal("INTx never asserted")
		}
		time.Sleep(time.Millisecond)
	}
	if tr.Config().U16(pci.RegStatus)&(1<<3) == 0 {
		t.Fatal("interrupt status bit clear while INTx asserted")
	}
	if isr := drv.ISR(); isr&1 == 0 {
		t.Fatalf("ISR %#x, want the queue bit", isr)
	}
	if plat.Level() {
		t.Fatal("INTx still asserted after reading ISR")
	}
	if _, ok := q.GetUsed(); !ok {
		t.Fatal("no used entry")
	}
	if plat.MSIs(1) != 0 {
		t.Fatal("MSI sent while MSI-X disabled")
	}
}
