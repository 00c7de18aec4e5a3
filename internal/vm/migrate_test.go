package vm

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/migration"
)

// TestLiveMigrationLoopback migrates two busy vCPUs (one counting in guest
// memory, one dirtying a 4 MiB buffer) to a new machine over loopback TCP:
// the counter only moves forward, the source stops, the destination runs.
func TestLiveMigrationLoopback(t *testing.T) {
	for _, prebuilt := range []bool{false, true} {
		t.Run(map[bool]string{false: "built-at-handover", true: "prebuilt"}[prebuilt], func(t *testing.T) {
			testLiveMigration(t, prebuilt)
		})
	}
}

func testLiveMigration(t *testing.T, prebuilt bool) {
	prebuiltCPUs := 0
	if prebuilt {
		prebuiltCPUs = 2
	}
	m := newFlat(t, 2, countingGuest(), nil)
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	waitCounter(t, m, 1000)
	read := counter
	conn, dest := incomingLoopback(t, Config{MemoryMiB: 64, CPUs: prebuiltCPUs, DebugExit: true})
	before := read(m)
	stats, err := m.MigrateTo(context.Background(), conn, migration.Options{MaxDowntime: 50 * time.Millisecond})
	conn.Close()
	if err != nil {
		t.Fatalf("migrate: %v", err)
	}
	r := <-dest
	if r.err != nil {
		t.Fatalf("incoming: %v", r.err)
	}
	defer r.m.Close()
	if ex := waitExit(t, m); ex.Reason != ExitMigrated {
		t.Fatalf("source exit %v, want migrated", ex.Reason)
	}
	last := read(m)
	t.Logf("rounds %d, %d bytes, %d pages (%d zero), downtime %v, total %v", stats.Rounds, stats.BytesSent,
		stats.PagesSent, stats.ZeroPages, stats.Downtime, stats.Total)
	got := read(r.m)
	if got < before || got != last {
		t.Fatalf("destination counter %d; source counted %d at the start and stopped at %d", got, before, last)
	}
	if err := r.m.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { r.m.Stop(Exit{Reason: ExitHost}); r.m.Wait() }()
	waitCounter(t, r.m, last+1000)
}

// incomingResult is what a destination's Incoming returned.
type incomingResult struct {
	m   *Machine
	err error
}

// incomingLoopback runs Incoming with cfg behind a loopback TCP listener
// and returns the source's connection to it and the destination's result.
func incomingLoopback(t *testing.T, cfg Config) (net.Conn, chan incomingResult) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	dest := make(chan incomingResult, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			dest <- incomingResult{err: err}
			return
		}
		dm, err := Incoming(context.Background(), c, cfg) // closes c when done
		dest <- incomingResult{dm, err}
	}()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return conn, dest
}

// TestMigrationFailureKeepsSource cuts the connection during migration: the
// source guest must keep running.
func TestMigrationFailureKeepsSource(t *testing.T) {
	m := newFlat(t, 1, countingGuest(), nil)
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { m.Stop(Exit{Reason: ExitHost}); m.Wait() }()
	src, dst := net.Pipe()
	go func() {
		buf := make([]byte, 4096)
		dst.Read(buf) // take the handshake, then vanish
		dst.Close()
	}()
	if _, err := m.MigrateTo(context.Background(), src, migration.Options{}); err == nil {
		t.Fatal("migration to a vanished peer succeeded")
	}
	waitCounter(t, m, counter(m))
	if m.Paused() {
		t.Fatal("the source is left paused")
	}
}

// TestMigrationEndsWhenGuestStops: a guest that stops while its memory is
// being sent (here as a reboot does: the VMM closes the machine at once to
// boot a new one) ends the migration with an error saying so, and Close
// waits for it before unmapping the memory it reads (before, the sender
// read unmapped memory and the VMM died of SIGSEGV: a UEFI guest rebooting
// during its migration through the agent).
func TestMigrationEndsWhenGuestStops(t *testing.T) {
	m := newFlat(t, 1, countingGuest(), nil)
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	src, dst := net.Pipe() // the destination takes the handshake, then reads nothing: the send blocks
	defer dst.Close()
	go func() {
		buf := make([]byte, 4096)
		dst.Read(buf)
	}()
	errc := make(chan error, 1)
	go func() {
		_, err := m.MigrateTo(context.Background(), src, migration.Options{})
		errc <- err
	}()
	time.Sleep(200 * time.Millisecond) // the migration is under way
	m.Stop(Exit{Reason: ExitReset, Detail: "the guest rebooted"})
	m.Close()
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "the guest stopped during the migration") {
			t.Fatalf("migration of a guest that stopped: %v", err)
		}
		t.Logf("migration: %v", err)
	default:
		t.Fatal("Close returned before the migration did")
	}
}
