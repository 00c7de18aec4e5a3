package vm

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/migration"
)

// waitConsole waits until the guest prints a line starting with marker and
// returns the console; it fails the test if m stops without having printed
// it or the guest takes more than 10 minutes (kvm_pvm emulates the guest
// kernel). A guest may print the marker and stop within one poll: what it
// printed before it stopped is all in out once m is done, so the console
// is read again then.
func waitConsole(t *testing.T, m *Machine, out *syncBuffer, marker string) string {
	t.Helper()
	// The whole line: the UART delivers it byte by byte, and callers
	// check what follows the marker (HP-BACK2=... was seen cut short).
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(marker) + `[^\n]*\n`)
	deadline := time.Now().Add(10 * time.Minute)
	for {
		con := out.String()
		if re.MatchString(con) {
			return con
		}
		select {
		case <-m.Done():
			ex := m.Wait()
			if con = out.String(); re.MatchString(con) {
				return con
			}
			t.Fatalf("the guest stopped (%s %v) before printing %s; console:\n%s", ex.Reason, ex.Err, marker, con)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s from the guest in 10 minutes; console:\n%s", marker, con)
		}
	}
}

// writeSector writes s at the start of sector n of the raw image at path,
// as the host side of the test's handshake with the guest.
func writeSector(t *testing.T, path string, n int64, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte(s), n*512); err != nil {
		t.Fatal(err)
	}
}

// readSector returns the first n bytes of sector sec of the image at path.
func readSector(t *testing.T, path string, sec int64, n int) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b[sec*512 : sec*512+int64(n)])
}

// The guest's side: wait for vdb, read it, write sector 8; wait for the
// host's GO-2 in sector 16 (after the restore), read sector 8 back, write
// sector 9; wait for GO-3 in sector 17 (after the migration), read sector 9
// back; then wait for vdb to go (the host detaches it) and stay up. Reads
// drop the page cache first, so that they go through the virtio device.
// The guest's hotplug worker removes vdb before it runs _EJ0, and the
// script can see vdb gone in between: were it to end there, the guest
// could power off before it ejects the disk. So it sleeps instead, and the
// host sees the eject on a running machine (the test stops it).
const hotplugLinuxScript = "echo HP-WAITING; i=0; while [ ! -e /sys/block/vdb ] && [ $i -lt 900 ]; do sleep 1; i=$((i+1)); done; " +
	"echo HP-DATA=$(dd if=/dev/vdb bs=16 count=1 2>/dev/null); " +
	"r(){ echo 3 >/proc/sys/vm/drop_caches; dd if=/dev/vdb bs=512 skip=$1 count=1 2>/dev/null; }; " +
	"g(){ i=0; until r $1 | grep -q $2 || [ $i -gt 900 ]; do sleep 1; i=$((i+1)); done; }; " +
	"printf GUEST-WROTE-ONE | dd of=/dev/vdb bs=512 seek=8 conv=sync,notrunc,fsync 2>/dev/null && echo HP-WROTE1; " +
	"g 16 GO-2; echo HP-BACK1=$(r 8 | dd bs=15 count=1 2>/dev/null); " +
	"printf GUEST-WROTE-TWO | dd of=/dev/vdb bs=512 seek=9 conv=sync,notrunc,fsync 2>/dev/null && echo HP-WROTE2; " +
	"g 17 GO-3; echo HP-BACK2=$(r 9 | dd bs=15 count=1 2>/dev/null); " +
	"i=0; while [ -e /sys/block/vdb ] && [ $i -lt 900 ]; do sleep 1; i=$((i+1)); done; [ -e /sys/block/vdb ] || echo HP-GONE; sleep 900"

// TestHotplugLinuxSnapshotMigrate boots Linux once with a boot disk,
// hot-plugs a second disk, has the guest read and write it, snapshots and
// restores the machine (the guest reads back what it wrote and writes
// more through the restored device), live-migrates the restored machine
// over loopback with shared storage (the guest reads that back too), and
// detaches the disk on the destination: the guest ejects it.
func TestHotplugLinuxSnapshotMigrate(t *testing.T) {
	kernel, initrd := kvmtest.LinuxGuest(t)
	k, err := os.ReadFile(kernel)
	if err != nil {
		t.Fatal(err)
	}
	ird, err := os.ReadFile(initrd)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	boot, hot := filepath.Join(dir, "boot.raw"), filepath.Join(dir, "hot.raw")
	if err := os.WriteFile(boot, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hot, bytes.Repeat([]byte("HOTPLUG-PATTERN-"), 1<<16), 0o644); err != nil {
		t.Fatal(err)
	}

	// 1. Boot, attach, let the guest use the disk, snapshot.
	var out1 syncBuffer
	m, err := New(Config{CPUs: 1, MemoryMiB: 256, Kernel: k, Initrd: ird, Console: &out1, Disks: []Disk{{Path: boot}},
		Cmdline: fmt.Sprintf("%s run=%q", kvmtest.LinuxCmdline, hotplugLinuxScript)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	start := time.Now()
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { m.Stop(Exit{Reason: ExitHost}); m.Wait() }()
	waitConsole(t, m, &out1, "HP-WAITING")
	t.Logf("guest up after %v", time.Since(start).Round(time.Second))
	info, err := m.AttachDisk(Disk{Path: hot})
	if err != nil {
		t.Fatal(err)
	}
	con := waitConsole(t, m, &out1, "HP-WROTE1")
	if !strings.Contains(con, "HP-DATA=HOTPLUG-PATTERN-") {
		t.Fatalf("the guest did not read the hot-plugged disk; console:\n%s", con)
	}
	// Paused first, so that the guest does nothing more on this machine.
	if err := m.Pause(); err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(dir, "snap")
	if err := m.Snapshot(snap); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	m.Stop(Exit{Reason: ExitHost})
	m.Wait()
	m.Close()
	if got := readSector(t, hot, 8, 15); got != "GUEST-WROTE-ONE" {
		t.Fatalf("sector 8 of the image holds %q after the guest's write and the snapshot", got)
	}

	// 2. Restore: the guest carries on with the same /dev/vdb.
	writeSector(t, hot, 16, "GO-2")
	var out2 syncBuffer
	r, err := RestoreSnapshot(snap, &out2)
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	defer r.Close()
	if d := r.Disks(); len(d) != 2 || d[1] != info {
		t.Fatalf("restored disks %+v, want vda and %+v", d, info)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { r.Stop(Exit{Reason: ExitHost}); r.Wait() }()
	con = waitConsole(t, r, &out2, "HP-WROTE2")
	if !strings.Contains(con, "HP-BACK1=GUEST-WROTE-ONE") {
		t.Fatalf("the restored guest did not read back its write; console:\n%s", con)
	}

	// 3. Migrate the restored machine (shared storage).
	var out3 syncBuffer
	conn, dest := incomingLoopback(t, Config{MemoryMiB: 256, Console: &out3})
	if _, err := r.MigrateTo(context.Background(), conn, migration.Options{MaxDowntime: 100 * time.Millisecond}); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	conn.Close()
	res := <-dest
	if res.err != nil {
		t.Fatalf("incoming: %v", res.err)
	}
	d := res.m
	defer d.Close()
	if ex := waitExit(t, r); ex.Reason != ExitMigrated {
		t.Fatalf("source exit %v", ex.Reason)
	}
	r.Close()
	if got := readSector(t, hot, 9, 15); got != "GUEST-WROTE-TWO" {
		t.Fatalf("sector 9 of the image holds %q after the restored guest's write", got)
	}
	writeSector(t, hot, 17, "GO-3")
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { d.Stop(Exit{Reason: ExitHost}); d.Wait() }()
	con = waitConsole(t, d, &out3, "HP-BACK2")
	if !strings.Contains(con, "HP-BACK2=GUEST-WROTE-TWO") {
		t.Fatalf("the migrated guest did not read back its write; console:\n%s", con)
	}

	// 4. Detach on the destination: the guest ejects the disk.
	if err := d.DetachDisk(info.Name); err != nil {
		t.Fatal(err)
	}
	waitConsole(t, d, &out3, "HP-GONE")
	// The guest removes the device before it runs _EJ0.
	for deadline := time.Now().Add(2 * time.Minute); len(d.Disks()) != 1 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	if got := d.Disks(); len(got) != 1 || got[0].Name != "vda" {
		t.Fatalf("disks after the guest's eject: %+v", got)
	}
	if hasOpen(t, hot) {
		t.Error("the destination still has the ejected image open")
	}
}
