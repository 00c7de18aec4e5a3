package vm

import (
	"context"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/migration"
)

// TestLiveMigrationLoopback migrates two busy vCPUs (one counting in guest
// memory, one dirtying a 4 MiB buffer) to a new machine over loopback TCP:
// the counter only moves forward, the source stops, the destination runs.
func TestLiveMigrationLoopback(t *testing.T) {
	const counter = 0x3000
	var a kvmtest.Asm
	loop := a.Len()
	a.IncMem64(counter).JmpBack(loop)
	m := newFlat(t, 2, a.B, nil)
	read := func(m *Machine) uint64 {
		var b [8]byte
		m.Memory().ReadAt(b[:], counter)
		return binary.LittleEndian.Uint64(b[:])
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); read(m) < 1000; {
		if time.Now().After(deadline) {
			t.Fatal("guest never counted")
		}
		time.Sleep(time.Millisecond)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	type result struct {
		m   *Machine
		err error
	}
	dest := make(chan result, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			dest <- result{err: err}
			return
		}
		defer c.Close()
		dm, err := Incoming(context.Background(), c, 64, nil)
		dest <- result{dm, err}
	}()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
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
	for deadline := time.Now().Add(30 * time.Second); read(r.m) <= last+1000; {
		if time.Now().After(deadline) {
			t.Fatalf("the migrated guest does not run (counter %d)", read(r.m))
		}
		time.Sleep(time.Millisecond)
	}
}

// TestMigrationFailureKeepsSource cuts the connection during migration: the
// source guest must keep running.
func TestMigrationFailureKeepsSource(t *testing.T) {
	const counter = 0x3000
	var a kvmtest.Asm
	loop := a.Len()
	a.IncMem64(counter).JmpBack(loop)
	m := newFlat(t, 1, a.B, nil)
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
	read := func() uint64 {
		var b [8]byte
		m.Memory().ReadAt(b[:], counter)
		return binary.LittleEndian.Uint64(b[:])
	}
	v := read()
	for deadline := time.Now().Add(30 * time.Second); read() == v; {
		if time.Now().After(deadline) {
			t.Fatal("the source stopped running after a failed migration")
		}
		time.Sleep(time.Millisecond)
	}
	if m.Paused() {
		t.Fatal("the source is left paused")
	}
}
