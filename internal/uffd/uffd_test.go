package uffd

import (
	"bytes"
	"errors"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// open makes a userfaultfd for a test, closed at its end.
func open(t *testing.T) *FD {
	t.Helper()
	u, err := Open()
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		t.Skipf("userfaultfd not permitted here (needs root or vm.unprivileged_userfaultfd=1): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

// mapAnon maps pages of anonymous memory, unmapped at the test's end.
func mapAnon(t *testing.T, pages int) []byte {
	t.Helper()
	b, err := unix.Mmap(-1, 0, pages*int(pageSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	return b
}

// page returns page i of b.
func page(b []byte, i int) []byte { return b[i*int(pageSize) : (i+1)*int(pageSize)] }

// filled is a page of v.
func filled(v byte) []byte { return bytes.Repeat([]byte{v}, int(pageSize)) }

// TestCopyResolvesFault: a goroutine reading a missing page waits until the
// handler copies the page in, then sees its contents.
func TestCopyResolvesFault(t *testing.T) {
	u := open(t)
	mem := mapAnon(t, 4)
	if err := u.Register(mem); err != nil {
		t.Fatal(err)
	}
	got := make(chan byte, 1)
	// Load first, then send: `got <- mem[i]` may hand the channel a pointer
	// into mem and leave the load to the receiver.
	go func() { v := mem[2*int(pageSize)+123]; got <- v }()
	f, err := u.ReadFault()
	if err != nil {
		t.Fatal(err)
	}
	if want := Addr(page(mem, 2)); f.Addr != want || f.Write {
		t.Fatalf("fault %+v, want a read at %#x", f, want)
	}
	if u.ThreadIDs() && f.TID == 0 {
		t.Errorf("the kernel offers thread ids but the fault has none")
	}
	select {
	case v := <-got:
		t.Fatalf("the access finished (read %d) before the page was placed", v)
	default:
	}
	if placed, err := u.Copy(page(mem, 2), filled(0x5A)); err != nil || !placed {
		t.Fatalf("Copy = %v, %v", placed, err)
	}
	if v := <-got; v != 0x5A {
		t.Fatalf("read %#x after Copy, want 0x5a", v)
	}
}

// TestZeroPageResolvesWrite: a write to a missing page waits for ZeroPage
// and then lands on a zero page.
func TestZeroPageResolvesWrite(t *testing.T) {
	u := open(t)
	mem := mapAnon(t, 2)
	if err := u.Register(mem); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { mem[int(pageSize)+7] = 9; close(done) }()
	f, err := u.ReadFault()
	if err != nil {
		t.Fatal(err)
	}
	if f.Addr != Addr(page(mem, 1)) || !f.Write {
		t.Fatalf("fault %+v, want a write at %#x", f, Addr(page(mem, 1)))
	}
	if placed, err := u.ZeroPage(page(mem, 1)); err != nil || !placed {
		t.Fatalf("ZeroPage = %v, %v", placed, err)
	}
	<-done
	want := make([]byte, pageSize)
	want[7] = 9
	if !bytes.Equal(page(mem, 1), want) {
		t.Fatal("the page is not zero apart from the write")
	}
}

// TestPlaceExisting: Copy and ZeroPage leave a present page alone and
// report it, without error.
func TestPlaceExisting(t *testing.T) {
	u := open(t)
	mem := mapAnon(t, 2)
	copy(page(mem, 0), filled(1)) // populated before registering
	if err := u.Register(mem); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		place func() (bool, error)
		page  int
		first bool // the page is missing before this call
		want  byte
	}{
		{"copy over a present page", func() (bool, error) { return u.Copy(page(mem, 0), filled(2)) }, 0, false, 1},
		{"copy into a missing page", func() (bool, error) { return u.Copy(page(mem, 1), filled(3)) }, 1, true, 3},
		{"copy again", func() (bool, error) { return u.Copy(page(mem, 1), filled(4)) }, 1, false, 3},
		{"zero page over a present page", func() (bool, error) { return u.ZeroPage(page(mem, 1)) }, 1, false, 3},
	} {
		placed, err := c.place()
		if err != nil || placed != c.first {
			t.Errorf("%s: placed %v, err %v; want placed %v", c.name, placed, err, c.first)
		}
		if !bytes.Equal(page(mem, c.page), filled(c.want)) {
			t.Errorf("%s: page %d does not hold %d", c.name, c.page, c.want)
		}
	}
}

// TestConcurrentFaults: several goroutines wait on different pages at once
// and each gets its own page.
func TestConcurrentFaults(t *testing.T) {
	const pages = 8
	u := open(t)
	mem := mapAnon(t, pages)
	if err := u.Register(mem); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	got := make([]byte, pages)
	for i := 0; i < pages; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); v := mem[i*int(pageSize)+int(pageSize)/2]; got[i] = v }()
	}
	served := make(chan map[int]int)
	go func() {
		seen := map[int]int{} // page -> faults reported for it
		for {
			f, err := u.ReadFault()
			if err != nil {
				served <- seen
				return
			}
			i := int((f.Addr - Addr(mem)) / pageSize)
			if f.Addr < Addr(mem) || i >= pages {
				t.Errorf("fault at %#x outside the range", f.Addr)
				continue
			}
			seen[i]++
			// A fault seen twice (its thread was interrupted and retried)
			// finds the page present: Copy reports it and wakes.
			if _, err := u.Copy(page(mem, i), filled(byte(0x10+i))); err != nil {
				t.Error(err)
			}
		}
	}()
	wg.Wait()
	u.Close()
	seen := <-served
	for i := 0; i < pages; i++ {
		if got[i] != byte(0x10+i) {
			t.Errorf("page %d read %#x, want %#x", i, got[i], 0x10+i)
		}
		if seen[i] == 0 {
			t.Errorf("no fault reported for page %d", i)
		}
	}
}

// TestKernelAccessFault: an access the kernel makes for the process (a
// read(2) into registered memory) waits and is reported like a user one.
func TestKernelAccessFault(t *testing.T) {
	u := open(t)
	mem := mapAnon(t, 1)
	if err := u.Register(mem); err != nil {
		t.Fatal(err)
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	if _, err := unix.Write(p[1], []byte("hello")); err != nil {
		t.Fatal(err)
	}
	type result struct {
		n   int
		err error
	}
	done := make(chan result)
	go func() { n, err := unix.Read(p[0], mem[100:200]); done <- result{n, err} }()
	f, err := u.ReadFault()
	if err != nil {
		t.Fatal(err)
	}
	if f.Addr != Addr(mem) || !f.Write {
		t.Fatalf("fault %+v, want the kernel's write at %#x", f, Addr(mem))
	}
	if _, err := u.ZeroPage(mem); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.err != nil || r.n != 5 || string(mem[100:105]) != "hello" {
		t.Fatalf("read(2) = %d, %v; memory %q", r.n, r.err, mem[100:105])
	}
}

// TestClose: Close ends a blocked ReadFault, later calls fail with
// ErrClosed, and a second Close is harmless.
func TestClose(t *testing.T) {
	u := open(t)
	mem := mapAnon(t, 1)
	if err := u.Register(mem); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { _, err := u.ReadFault(); done <- err }()
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("ReadFault after Close: %v, want ErrClosed", err)
	}
	if _, err := u.Copy(mem, filled(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Copy after Close: %v, want ErrClosed", err)
	}
	if err := u.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// Closing disarmed the range: the page is an ordinary zero page now.
	if mem[0] != 0 {
		t.Fatal("memory not zero after Close")
	}
}

// TestRangeChecks: ranges must be whole pages.
func TestRangeChecks(t *testing.T) {
	u := open(t)
	mem := mapAnon(t, 2)
	for _, c := range []struct {
		name string
		b    []byte
	}{
		{"empty", mem[:0]},
		{"unaligned start", mem[1 : pageSize+1]},
		{"partial page", mem[:pageSize+1]},
	} {
		if err := u.Register(c.b); err == nil {
			t.Errorf("Register(%s) succeeded", c.name)
		}
		if _, err := u.ZeroPage(c.b); err == nil {
			t.Errorf("ZeroPage(%s) succeeded", c.name)
		}
	}
	if _, err := u.Copy(mem[:pageSize], make([]byte, 10)); err == nil {
		t.Error("Copy of a short source succeeded")
	}
}

// TestWakeAndUnregister: Wake alone makes a waiting access retry (and fault
// again, the page still being missing); after Unregister the retried access
// is an ordinary fault and sees a zero page.
func TestWakeAndUnregister(t *testing.T) {
	u := open(t)
	mem := mapAnon(t, 1)
	if err := u.Register(mem); err != nil {
		t.Fatal(err)
	}
	got := make(chan byte, 1)
	go func() { v := mem[10]; got <- v }()
	if _, err := u.ReadFault(); err != nil {
		t.Fatal(err)
	}
	if err := u.Wake(mem); err != nil {
		t.Fatal(err)
	}
	f, err := u.ReadFault()
	if err != nil {
		t.Fatal(err)
	}
	if f.Addr != Addr(mem) {
		t.Fatalf("fault after Wake at %#x, want %#x", f.Addr, Addr(mem))
	}
	if err := u.Unregister(mem); err != nil {
		t.Fatal(err)
	}
	if v := <-got; v != 0 {
		t.Fatalf("read %#x after Unregister, want 0", v)
	}
	if _, err := u.Copy(mem, filled(1)); err == nil {
		t.Fatal("Copy into an unregistered range succeeded")
	}
}
