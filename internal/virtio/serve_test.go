package virtio_test

import (
	"errors"
	"testing"

	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/virtqueue"
	"github.com/govisor/govisor/internal/virtio/virtqueuetest"
)

// serve runs ServeQueue on one queue with a handler that reports the
// writable length, and returns the driver, kick, interrupt and error
// channels and a stop function.
func serve(t *testing.T, eventIdx bool) (*virtqueuetest.Driver, chan struct{}, chan int, chan error, func()) {
	t.Helper()
	mem := virtqueuetest.NewMemory(0, 1<<20)
	d, err := virtqueuetest.NewDriver(mem, 8)
	if err != nil {
		t.Fatal(err)
	}
	q, err := virtqueue.New(mem, d.Config(eventIdx, false))
	if err != nil {
		t.Fatal(err)
	}
	kick := make(chan struct{}, 1)
	irq := make(chan int, 16)
	errs := make(chan error, 1)
	ctx := virtio.ActivateContext{
		Mem:        mem,
		Queues:     []*virtqueue.Queue{q},
		Notify:     []<-chan struct{}{kick},
		Interrupt:  func(qi int) { irq <- qi },
		NeedsReset: func(err error) { errs <- err },
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		virtio.ServeQueue(&ctx, 0, stop, func(c *virtqueue.Chain) uint32 { return uint32(c.WriteLen) })
	}()
	return d, kick, irq, errs, func() { close(stop); <-done }
}

func TestServeQueue(t *testing.T) {
	for _, eventIdx := range []bool{false, true} {
		d, kick, irq, _, stop := serve(t, eventIdx)
		buf, _ := d.Alloc(64)
		for i := range 20 {
			d.AddChain([]virtqueuetest.Desc{{Addr: buf, Len: uint32(i + 1), Write: true}})
			kick <- struct{}{}
			if q := <-irq; q != 0 {
				t.Fatalf("interrupt for queue %d", q)
			}
			u, ok := d.GetUsed()
			if !ok || u.Len != uint32(i+1) {
				t.Fatalf("request %d: used %+v %v", i, u, ok)
			}
		}
		stop()
	}
}

func TestServeQueueBadChain(t *testing.T) {
	d, kick, _, errs, stop := serve(t, true)
	defer stop()
	d.WriteDesc(d.DescAddr, 0, 1<<40, 8, 0, 0)
	d.Publish(0)
	kick <- struct{}{}
	if err := <-errs; !errors.Is(err, virtqueue.ErrBadChain) {
		t.Fatalf("NeedsReset(%v)", err)
	}
}
