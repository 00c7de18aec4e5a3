package virtqueue_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/govisor/govisor/internal/virtio/virtqueue"
	"github.com/govisor/govisor/internal/virtio/virtqueuetest"
)

const (
	ramBase = 0x10000
	ramSize = 1 << 20
)

func setup(t testing.TB, size uint16, eventIdx, indirect bool) (*virtqueuetest.Driver, *virtqueue.Queue) {
	t.Helper()
	mem := virtqueuetest.NewMemory(ramBase, ramSize)
	d, err := virtqueuetest.NewDriver(mem, size)
	if err != nil {
		t.Fatal(err)
	}
	q, err := virtqueue.New(mem, d.Config(eventIdx, indirect))
	if err != nil {
		t.Fatal(err)
	}
	return d, q
}

func alloc(t testing.TB, d *virtqueuetest.Driver, n uint64) uint64 {
	t.Helper()
	a, err := d.Alloc(n)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestNewValidates(t *testing.T) {
	mem := virtqueuetest.NewMemory(ramBase, ramSize)
	good := virtqueue.Config{Size: 8, Desc: ramBase, Avail: ramBase + 0x1000, Used: ramBase + 0x2000}
	tests := []struct {
		name string
		mod  func(c *virtqueue.Config)
		ok   bool
	}{
		{"good", func(c *virtqueue.Config) {}, true},
		{"avail 2-aligned", func(c *virtqueue.Config) { c.Avail += 2 }, true},
		{"size 0", func(c *virtqueue.Config) { c.Size = 0 }, false},
		{"size 6", func(c *virtqueue.Config) { c.Size = 6 }, false},
		{"desc misaligned", func(c *virtqueue.Config) { c.Desc += 8 }, false},
		{"avail odd", func(c *virtqueue.Config) { c.Avail++ }, false},
		{"used misaligned", func(c *virtqueue.Config) { c.Used += 2 }, false},
		{"desc outside RAM", func(c *virtqueue.Config) { c.Desc = 0 }, false},
		{"used past end", func(c *virtqueue.Config) { c.Used = ramBase + ramSize - 8 }, false},
		{"avail overflows", func(c *virtqueue.Config) { c.Avail = ^uint64(1) }, false},
		{"huge size past RAM", func(c *virtqueue.Config) { c.Size = 32768; c.Desc = ramBase + ramSize/2 + 16 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.mod(&c)
			_, err := virtqueue.New(mem, c)
			if (err == nil) != tt.ok {
				t.Fatalf("New(%+v) = %v, want ok=%v", c, err, tt.ok)
			}
			if err != nil && !errors.Is(err, virtqueue.ErrBadQueue) {
				t.Fatalf("error %v is not ErrBadQueue", err)
			}
		})
	}
}

func TestPopPushDirect(t *testing.T) {
	d, q := setup(t, 8, false, false)
	in := alloc(t, d, 16)
	out := alloc(t, d, 64)
	d.Mem.Write(in, []byte("hello, device!!!"))
	head, err := d.AddChain([]virtqueuetest.Desc{{Addr: in, Len: 16}, {Addr: out, Len: 32, Write: true}, {Addr: out + 32, Len: 32, Write: true}})
	if err != nil {
		t.Fatal(err)
	}
	var c virtqueue.Chain
	ok, err := q.Pop(&c)
	if !ok || err != nil {
		t.Fatalf("Pop = %v, %v", ok, err)
	}
	if c.Head != head || len(c.Readable) != 1 || len(c.Writable) != 2 || c.ReadLen != 16 || c.WriteLen != 64 {
		t.Fatalf("chain %+v", c)
	}
	buf := make([]byte, 16)
	if _, err := c.ReadAt(buf, 0); err != nil || string(buf) != "hello, device!!!" {
		t.Fatalf("ReadAt = %q, %v", buf, err)
	}
	msg := bytes.Repeat([]byte{0xAB}, 40)
	d.Mem.ClearDirty()
	if n, err := c.WriteAt(msg, 10); n != 40 || err != nil {
		t.Fatalf("WriteAt = %d, %v", n, err)
	}
	if !d.Mem.Dirty(out) {
		t.Fatal("WriteAt did not mark its bytes dirty")
	}
	if _, err := c.WriteAt(msg, -1); err == nil {
		t.Fatal("WriteAt at a negative offset succeeded")
	}
	if _, err := c.ReadAt(buf, -1); err == nil {
		t.Fatal("ReadAt at a negative offset succeeded")
	}
	if _, err := c.WriteAt(msg, 30); err == nil {
		t.Fatal("WriteAt past the writable part succeeded")
	}
	d.Mem.ClearDirty()
	if err := q.Push(&c, 50); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 40)
	d.Mem.Read(out+10, got)
	if !bytes.Equal(got, msg) {
		t.Fatalf("guest buffer %x", got)
	}
	if !d.Mem.Dirty(out) || !d.Mem.Dirty(d.UsedAddr) {
		t.Fatal("device writes not marked dirty")
	}
	u, ok := d.GetUsed()
	if !ok || u.Head != head || u.Len != 50 {
		t.Fatalf("used %+v %v", u, ok)
	}
	if ok, err := q.Pop(&c); ok || err != nil {
		t.Fatalf("second Pop = %v, %v", ok, err)
	}
}

func TestIndirect(t *testing.T) {
	d, q := setup(t, 4, false, true)
	table := alloc(t, d, 16*3)
	buf := alloc(t, d, 3*512)
	head, err := d.AddIndirect(table, []virtqueuetest.Desc{{Addr: buf, Len: 512}, {Addr: buf + 512, Len: 512}, {Addr: buf + 1024, Len: 512, Write: true}})
	if err != nil {
		t.Fatal(err)
	}
	var c virtqueue.Chain
	if ok, err := q.Pop(&c); !ok || err != nil {
		t.Fatalf("Pop = %v, %v", ok, err)
	}
	if c.Head != head || c.ReadLen != 1024 || c.WriteLen != 512 {
		t.Fatalf("chain %+v", c)
	}
}

// TestMalformed builds bad chains by hand; each must fail with an error
// and leave the queue broken, never panic.
func TestMalformed(t *testing.T) {
	const size = 4
	type desc struct {
		addr  uint64
		len   uint32
		flags uint16
		next  uint16
	}
	ok := uint64(ramBase + 0x8000)
	tests := []struct {
		name     string
		indirect bool
		descs    []desc // direct table
		table    []desc // indirect table at ramBase+0x9000
		head     uint16
		availIdx uint16
		want     error
	}{
		{name: "head out of range", descs: []desc{{ok, 8, 0, 0}}, head: 4, want: virtqueue.ErrBadRing},
		{name: "avail idx too far ahead", descs: []desc{{ok, 8, 0, 0}}, availIdx: 5, want: virtqueue.ErrBadRing},
		{name: "buffer outside RAM", descs: []desc{{0x100, 8, 0, 0}}, want: virtqueue.ErrBadChain},
		{name: "buffer runs past RAM", descs: []desc{{ramBase + ramSize - 4, 8, 0, 0}}, want: virtqueue.ErrBadChain},
		{name: "address wraps", descs: []desc{{^uint64(0) - 2, 8, 0, 0}}, want: virtqueue.ErrBadChain},
		{name: "next out of range", descs: []desc{{ok, 8, virtqueue.DescFNext, 9}}, want: virtqueue.ErrBadChain},
		{name: "self loop", descs: []desc{{ok, 8, virtqueue.DescFNext, 0}}, want: virtqueue.ErrBadChain},
		{name: "two-descriptor loop", descs: []desc{{ok, 8, virtqueue.DescFNext, 1}, {ok, 8, virtqueue.DescFNext, 0}}, want: virtqueue.ErrBadChain},
		{name: "readable after writable", descs: []desc{{ok, 8, virtqueue.DescFNext | virtqueue.DescFWrite, 1}, {ok, 8, 0, 0}}, want: virtqueue.ErrBadChain},
		{name: "indirect not negotiated", descs: []desc{{ramBase + 0x9000, 16, virtqueue.DescFIndirect, 0}}, table: []desc{{ok, 8, 0, 0}}, want: virtqueue.ErrBadChain},
		{name: "indirect with next", indirect: true, descs: []desc{{ramBase + 0x9000, 16, virtqueue.DescFIndirect | virtqueue.DescFNext, 1}, {ok, 8, 0, 0}}, table: []desc{{ok, 8, 0, 0}}, want: virtqueue.ErrBadChain},
		{name: "indirect length not multiple of 16", indirect: true, descs: []desc{{ramBase + 0x9000, 20, virtqueue.DescFIndirect, 0}}, table: []desc{{ok, 8, 0, 0}}, want: virtqueue.ErrBadChain},
		{name: "indirect empty", indirect: true, descs: []desc{{ramBase + 0x9000, 0, virtqueue.DescFIndirect, 0}}, want: virtqueue.ErrBadChain},
		{name: "indirect table too large", indirect: true, descs: []desc{{ramBase + 0x9000, 16 * (virtqueue.MaxIndirect + 1), virtqueue.DescFIndirect, 0}}, want: virtqueue.ErrBadChain},
		{name: "indirect table outside RAM", indirect: true, descs: []desc{{0x1000, 16, virtqueue.DescFIndirect, 0}}, want: virtqueue.ErrBadChain},
		{name: "nested indirect", indirect: true, descs: []desc{{ramBase + 0x9000, 16, virtqueue.DescFIndirect, 0}}, table: []desc{{ramBase + 0x9000, 16, virtqueue.DescFIndirect, 0}}, want: virtqueue.ErrBadChain},
		{name: "indirect loop", indirect: true, descs: []desc{{ramBase + 0x9000, 32, virtqueue.DescFIndirect, 0}}, table: []desc{{ok, 8, virtqueue.DescFNext, 1}, {ok, 8, virtqueue.DescFNext, 0}}, want: virtqueue.ErrBadChain},
		{name: "indirect next out of table", indirect: true, descs: []desc{{ramBase + 0x9000, 16, virtqueue.DescFIndirect, 0}}, table: []desc{{ok, 8, virtqueue.DescFNext, 1}}, want: virtqueue.ErrBadChain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, q := setup(t, size, false, tt.indirect)
			for i, x := range tt.descs {
				d.WriteDesc(d.DescAddr, uint16(i), x.addr, x.len, x.flags, x.next)
			}
			for i, x := range tt.table {
				d.WriteDesc(ramBase+0x9000, uint16(i), x.addr, x.len, x.flags, x.next)
			}
			d.Publish(tt.head)
			if tt.availIdx != 0 {
				d.SetAvailIdx(tt.availIdx)
			}
			var c virtqueue.Chain
			ok, err := q.Pop(&c)
			if ok || !errors.Is(err, tt.want) {
				t.Fatalf("Pop = %v, %v; want %v", ok, err, tt.want)
			}
			if !q.Broken() {
				t.Fatal("queue not broken")
			}
			if _, err := q.Pop(&c); !errors.Is(err, virtqueue.ErrBroken) {
				t.Fatalf("Pop on broken queue = %v", err)
			}
			if err := q.Push(&c, 0); !errors.Is(err, virtqueue.ErrBroken) {
				t.Fatalf("Push on broken queue = %v", err)
			}
		})
	}
}

func TestChainTooLong(t *testing.T) {
	d, q := setup(t, 4, false, false)
	buf := alloc(t, d, 64)
	for i := range uint16(4) {
		d.WriteDesc(d.DescAddr, i, buf, 8, virtqueue.DescFNext, (i+1)%4)
	}
	d.Publish(0)
	var c virtqueue.Chain
	if _, err := q.Pop(&c); !errors.Is(err, virtqueue.ErrBadChain) {
		t.Fatalf("Pop = %v", err)
	}
}

func TestZeroLengthBufferSkipped(t *testing.T) {
	d, q := setup(t, 4, false, false)
	buf := alloc(t, d, 64)
	d.AddChain([]virtqueuetest.Desc{{Addr: buf, Len: 0}, {Addr: buf, Len: 8, Write: true}})
	var c virtqueue.Chain
	if ok, err := q.Pop(&c); !ok || err != nil || len(c.Readable) != 0 || c.WriteLen != 8 {
		t.Fatalf("Pop = %v %v %+v", ok, err, c)
	}
}

func TestInterruptSuppression(t *testing.T) {
	tests := []struct {
		name       string
		eventIdx   bool
		availFlags uint16
		usedEvent  uint16
		pushes     int
		want       bool
	}{
		{"no event idx, interrupts on", false, 0, 0, 1, true},
		{"no event idx, NO_INTERRUPT", false, virtqueue.AvailFNoInterrupt, 0, 1, false},
		{"nothing pushed", false, 0, 0, 0, false},
		{"event idx reached", true, 0, 0, 1, true},
		{"event idx not reached", true, 0, 5, 2, false},
		{"event idx crossed", true, 0, 1, 3, true},
		{"event idx flags ignored", true, virtqueue.AvailFNoInterrupt, 0, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, q := setup(t, 8, tt.eventIdx, false)
			buf := alloc(t, d, 8)
			d.SetAvailFlags(tt.availFlags)
			d.SetUsedEvent(tt.usedEvent)
			var c virtqueue.Chain
			for range tt.pushes {
				d.AddChain([]virtqueuetest.Desc{{Addr: buf, Len: 8, Write: true}})
				if ok, err := q.Pop(&c); !ok || err != nil {
					t.Fatal(ok, err)
				}
				q.Push(&c, 0)
			}
			if got := q.NeedInterrupt(); got != tt.want {
				t.Fatalf("NeedInterrupt = %v, want %v", got, tt.want)
			}
			if q.NeedInterrupt() {
				t.Fatal("second NeedInterrupt without pushes = true")
			}
		})
	}
}

func TestNotifySuppression(t *testing.T) {
	for _, eventIdx := range []bool{false, true} {
		d, q := setup(t, 8, eventIdx, false)
		buf := alloc(t, d, 8)
		q.DisableNotify()
		if !eventIdx && d.UsedFlags() != virtqueue.UsedFNoNotify {
			t.Fatalf("used flags %d after DisableNotify", d.UsedFlags())
		}
		d.AddChain([]virtqueuetest.Desc{{Addr: buf, Len: 8}})
		if !q.EnableNotify() {
			t.Fatal("EnableNotify missed a pending chain")
		}
		var c virtqueue.Chain
		q.Pop(&c)
		if q.EnableNotify() {
			t.Fatal("EnableNotify with nothing pending = true")
		}
		if eventIdx && d.AvailEvent() != 1 {
			t.Fatalf("avail_event = %d, want 1", d.AvailEvent())
		}
		if !eventIdx && d.UsedFlags() != 0 {
			t.Fatalf("used flags %d after EnableNotify", d.UsedFlags())
		}
		old := d.AvailIdx()
		d.AddChain([]virtqueuetest.Desc{{Addr: buf, Len: 8}})
		if !d.NeedKick(old, eventIdx) {
			t.Fatal("driver would not kick an idle device")
		}
		q.DisableNotify()
		old = d.AvailIdx()
		d.AddChain([]virtqueuetest.Desc{{Addr: buf, Len: 8}})
		if d.NeedKick(old, eventIdx) {
			t.Fatal("driver would kick a device that is already busy")
		}
	}
}

func TestWrapAround(t *testing.T) {
	d, q := setup(t, 4, true, false)
	buf := alloc(t, d, 8)
	var c virtqueue.Chain
	for i := range 70000 { // past the 16-bit index wrap
		d.AddChain([]virtqueuetest.Desc{{Addr: buf, Len: 8, Write: true}})
		ok, err := q.Pop(&c)
		if !ok || err != nil {
			t.Fatalf("iteration %d: Pop = %v, %v", i, ok, err)
		}
		q.Push(&c, uint32(i%8))
		if u, ok := d.GetUsed(); !ok || u.Len != uint32(i%8) {
			t.Fatalf("iteration %d: used %+v %v", i, u, ok)
		}
	}
}

func TestSaveRestore(t *testing.T) {
	d, q := setup(t, 8, true, true)
	buf := alloc(t, d, 8)
	var c virtqueue.Chain
	for range 3 {
		d.AddChain([]virtqueuetest.Desc{{Addr: buf, Len: 8, Write: true}})
		q.Pop(&c)
		q.Push(&c, 1)
	}
	q.NeedInterrupt()
	d.AddChain([]virtqueuetest.Desc{{Addr: buf, Len: 8, Write: true}})
	s := q.SaveState()
	q2, err := virtqueue.Restore(d.Mem, s)
	if err != nil {
		t.Fatal(err)
	}
	if got := q2.SaveState(); got != s {
		t.Fatalf("restored %+v, want %+v", got, s)
	}
	if ok, err := q2.Pop(&c); !ok || err != nil {
		t.Fatalf("Pop after restore = %v %v", ok, err)
	}
	bad := s
	bad.Config.Size = 3
	if _, err := virtqueue.Restore(d.Mem, bad); err == nil {
		t.Fatal("restore of a bad config succeeded")
	}
}

func TestSegments(t *testing.T) {
	bufs := [][]byte{[]byte("abc"), []byte("defg"), []byte("hi")}
	tests := []struct {
		off, n uint64
		want   string
	}{{0, 9, "abc|defg|hi|"}, {2, 3, "c|de|"}, {3, 4, "defg|"}, {8, 5, "i|"}, {9, 1, ""}, {1, 0, ""}}
	for _, tt := range tests {
		var got []byte
		virtqueue.Segments(bufs, tt.off, tt.n, func(b []byte, at uint64) error {
			got = append(got, b...)
			got = append(got, '|')
			return nil
		})
		if string(got) != tt.want {
			t.Errorf("Segments(%d, %d) = %q, want %q", tt.off, tt.n, got, tt.want)
		}
	}
}
