package vm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/guestmem"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/migration"
)

// Where dirtyingGuest keeps the counters it increments, one per page.
const (
	dirtyAddr  = 0x400000
	dirtyPages = 1024
)

// dirtyingGuest increments countingGuest's counter and, in turn, the first
// dword of every page of a 4 MiB buffer, forever, on every vCPU.
func dirtyingGuest() []byte {
	var a kvmtest.Asm
	start := a.Len()
	a.IncMem64(counterAddr).IncPages(dirtyAddr, dirtyPages).JmpBack(start)
	return a.B
}

// TestPostCopyMigrationLoopback migrates a guest that dirties 4 MiB over
// loopback TCP with post-copy forced (no dirty set fits a nanosecond): the
// destination runs before its memory has all arrived, its counters start
// where the source stopped and only move forward, and the rest of its
// memory ends up the source's.
func TestPostCopyMigrationLoopback(t *testing.T) {
	for _, prebuilt := range []bool{false, true} {
		t.Run(map[bool]string{false: "built-at-handover", true: "prebuilt"}[prebuilt], func(t *testing.T) {
			cpus := 0
			if prebuilt {
				cpus = 2
			}
			// A source whose vCPUs got no CPU time during the first round
			// has nothing dirty, and pre-copy finishes: try again then.
			for try := 0; try < 3; try++ {
				if postCopyMigration(t, cpus) {
					return
				}
				t.Log("the guest dirtied nothing in the first round: the migration finished in pre-copy")
			}
			t.Fatal("the migration never switched to post-copy")
		})
	}
}

// postCopyMigration runs one migration for TestPostCopyMigrationLoopback
// and reports whether it switched to post-copy.
func postCopyMigration(t *testing.T, cpus int) bool {
	t.Helper()
	m := newFlat(t, 2, dirtyingGuest(), nil)
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	waitCounter(t, m, 2*dirtyPages)
	conn, dest := incomingLoopback(t, Config{MemoryMiB: 64, CPUs: cpus, DebugExit: true})
	before := counter(m)
	type sent struct {
		stats migration.Stats
		err   error
	}
	res := make(chan sent, 1)
	go func() {
		st, err := m.MigrateTo(context.Background(), conn, migration.Options{PostCopy: true, MaxDowntime: time.Nanosecond})
		conn.Close()
		res <- sent{st, err}
	}()
	r := <-dest
	if r.err != nil {
		t.Fatalf("incoming: %v", r.err)
	}
	defer r.m.Close()
	// The source is paused for good now; its memory is final.
	last := counter(m)
	if got := counter(r.m); got < before || got != last {
		t.Fatalf("destination counter %d; source counted %d at the start and stopped at %d", got, before, last)
	}
	if err := r.m.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { r.m.Stop(Exit{Reason: ExitHost}); r.m.Wait() }()
	waitCounter(t, r.m, last+1000)
	s := <-res
	if s.err != nil {
		t.Fatalf("migrate: %v", s.err)
	}
	if !s.stats.PostCopy {
		return false
	}
	t.Logf("post-copy: %d pages after the handover, %d of them asked for; downtime %v", s.stats.PostCopyPages, s.stats.PostCopyRequested, s.stats.Downtime)
	if ex := waitExit(t, m); ex.Reason != ExitMigrated {
		t.Fatalf("source exit %v, want migrated", ex.Reason)
	}
	if err := r.m.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := r.m.postCopyBusy("test"); err != nil {
		t.Errorf("after post-copy: %v", err)
	}
	src, dst := m.Memory().Regions(), r.m.Memory().Regions()
	for i := range src {
		for off := 0; off < len(src[i].Host); off += guestmem.PageSize {
			gpa := src[i].GPA + uint64(off)
			s, d := src[i].Host[off:off+guestmem.PageSize], dst[i].Host[off:off+guestmem.PageSize]
			switch {
			case gpa == counterAddr&^(guestmem.PageSize-1) || (gpa >= dirtyAddr && gpa < dirtyAddr+dirtyPages*guestmem.PageSize):
				// The destination counts on from the source's values
				// (each page's first qword, where the counters are: counterAddr is page-aligned).
				if sv, dv := binary.LittleEndian.Uint64(s), binary.LittleEndian.Uint64(d); dv < sv {
					t.Fatalf("the qword at %#x went back from %d to %d", gpa, sv, dv)
				}
				if !bytes.Equal(s[8:], d[8:]) {
					t.Fatalf("page %#x differs from the source's past its counter", gpa)
				}
			case !bytes.Equal(s, d):
				t.Fatalf("page %#x differs from the source's", gpa)
			}
		}
	}
	return true
}

// TestPostCopyLinkLost cuts the connection under a destination that runs in
// post-copy: neither side holds the whole VM any more, so both stop with an
// error and neither runs on (the source must not resume: its disks and
// memory are behind the destination's).
func TestPostCopyLinkLost(t *testing.T) {
	for try := 0; try < 3; try++ {
		m := newFlat(t, 2, dirtyingGuest(), nil)
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
		waitCounter(t, m, 2*dirtyPages)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dest := make(chan incomingResult, 1)
		go func() {
			c, err := l.Accept()
			if err != nil {
				dest <- incomingResult{err: err}
				return
			}
			dm, err := Incoming(context.Background(), c, Config{MemoryMiB: 64, DebugExit: true})
			if err == nil {
				c.Close() // the link drops as soon as the destination runs
			}
			dest <- incomingResult{dm, err}
		}()
		conn, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		res := make(chan error, 1)
		go func() {
			_, err := m.MigrateTo(context.Background(), conn, migration.Options{PostCopy: true, MaxDowntime: time.Nanosecond})
			conn.Close()
			res <- err
		}()
		r := <-dest
		l.Close()
		if r.err != nil {
			t.Fatalf("incoming: %v", r.err)
		}
		if err := r.m.Start(); err != nil {
			t.Fatal(err)
		}
		err = <-res
		if err == nil {
			// Everything arrived before the cut (or no post-copy at all).
			r.m.Stop(Exit{Reason: ExitHost})
			r.m.Wait()
			r.m.Close()
			t.Log("the migration completed before the link dropped; again")
			continue
		}
		if !errors.Is(err, migration.ErrPostCopy) {
			t.Fatalf("migrate: %v, want ErrPostCopy", err)
		}
		if ex := waitExit(t, m); ex.Reason != ExitError || !strings.Contains(ex.Detail, "post-copy") {
			t.Fatalf("source exit %v %q, want an error exit naming post-copy", ex.Reason, ex.Detail)
		}
		if ex := waitExit(t, r.m); ex.Reason != ExitError || !errors.Is(ex.Err, ErrPostCopyFailed) {
			t.Fatalf("destination exit %v (%v), want ErrPostCopyFailed", ex.Reason, ex.Err)
		}
		r.m.Close()
		return
	}
	t.Fatal("every migration completed before the link dropped")
}
