package vm

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/migration"
)

// startUEFI starts disk through OVMF with the variable file at varsPath
// and returns once the firmware is at work (OVMF's boot manager or GRUB on
// the console), with the machine and its console: the machine is saved
// mid-boot, with the firmware's flash and fw_cfg state in use.
func startUEFI(t *testing.T, code []byte, varsPath, disk string) (*Machine, *syncBuffer) {
	t.Helper()
	vars := openVars(t, varsPath)
	out := new(syncBuffer)
	m, err := New(Config{CPUs: 1, MemoryMiB: 256, Firmware: code, FirmwareVars: vars, Console: out,
		Disks: []Disk{{Path: disk, ReadOnly: true}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(5 * time.Millisecond) {
		if c := out.String(); strings.Contains(c, "BdsDxe") || strings.Contains(c, "GRUB") {
			return m, out
		}
		if time.Now().After(deadline) {
			stallReport(t, m)
			t.Fatalf("neither OVMF's boot manager nor GRUB on the console in 3 minutes: %q", out.String())
		}
	}
}

func openVars(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// finishBoot runs a carried-on machine until the guest's reboot and checks
// the guest got there.
func finishBoot(t *testing.T, m *Machine, out *syncBuffer) {
	t.Helper()
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.Done():
	case <-time.After(3 * time.Minute):
		m.Stop(Exit{Reason: ExitHost, Detail: "the test's time limit"})
	}
	if ex := m.Wait(); ex.Reason != ExitReset || !strings.Contains(out.String(), "GUEST-DONE") {
		t.Fatalf("the carried-on machine stopped with %s %s %v; console:\n%s", ex.Reason, ex.Detail, ex.Err, out.String())
	}
}

// TestOVMFSnapshotAndMigration: a guest booted through OVMF is
// snapshotted and restored, and migrated, each time into a machine whose
// variable file is OVMF's blank template: the guest goes on to its end
// (GUEST-DONE, then its reboot), and the destination's file holds the
// source's variables (OVMF's boot counter MTC; after a migration the whole
// store), from which a fresh boot through the carried firmware counts on.
func TestOVMFSnapshotAndMigration(t *testing.T) {
	disk := kvmtest.ESPDisk(t)
	code, srcVars := uefiVars(t)
	tmpl, err := os.ReadFile(srcVars)
	if err != nil {
		t.Fatal(err)
	}
	fresh := func(name string) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, tmpl, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	t.Run("snapshot", func(t *testing.T) {
		m, _ := startUEFI(t, code, srcVars, disk)
		dir := filepath.Join(t.TempDir(), "snap")
		if err := m.Snapshot(dir); err != nil {
			t.Fatal(err)
		}
		m.Stop(Exit{Reason: ExitHost})
		m.Wait()
		src, _ := monotonicCount(t, srcVars)
		dstVars := fresh("restored.fd")
		out := new(syncBuffer)
		r, err := RestoreSnapshotVars(dir, out, openVars(t, dstVars))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if got, _ := monotonicCount(t, dstVars); got != src {
			t.Fatalf("restored variable file: MTC %d, the source's %d", got, src)
		}
		finishBoot(t, r, out)
		bootUEFI(t, 1, code, dstVars, disk, ExitReset)
		if got, _ := monotonicCount(t, dstVars); got != src+1 {
			t.Errorf("a boot from the restored variables: MTC %d, want %d", got, src+1)
		}
	})

	t.Run("migration", func(t *testing.T) {
		m, _ := startUEFI(t, code, srcVars, disk)
		dstVars := fresh("migrated.fd")
		out := new(syncBuffer)
		// The disk is shared storage: the destination opens the source's
		// path at the handover (no Disks: those would be mirror targets).
		conn, dest := incomingLoopback(t, Config{CPUs: 1, MemoryMiB: 256, Firmware: code, FirmwareVars: openVars(t, dstVars), Console: out})
		_, err := m.MigrateTo(context.Background(), conn, migration.Options{MaxDowntime: 200 * time.Millisecond})
		conn.Close()
		r := <-dest
		if err != nil {
			t.Fatalf("migrate: %v (destination: %v)", err, r.err)
		}
		if r.err != nil {
			t.Fatalf("incoming: %v", r.err)
		}
		defer r.m.Close()
		if ex := waitExit(t, m); ex.Reason != ExitMigrated {
			t.Fatalf("source exit %v, want migrated", ex.Reason)
		}
		src, _ := os.ReadFile(srcVars)
		dst, _ := os.ReadFile(dstVars)
		if !bytes.Equal(src, dst) {
			t.Fatal("the destination's variable file differs from the source's")
		}
		// A fresh boot from carried-over variables is the snapshot case's.
		finishBoot(t, r.m, out)
	})
}
