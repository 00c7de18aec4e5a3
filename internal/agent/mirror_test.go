package agent

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/vmm/vmmconfig"
)

const mirrorTestSize = 4 << 20

// writeDisk makes a raw disk with a pattern at a few offsets and returns
// its content.
func writeDisk(t *testing.T, path string) []byte {
	t.Helper()
	want := make([]byte, mirrorTestSize)
	for _, off := range []int{0, 70000, 3 << 20} {
		copy(want[off:], bytes.Repeat([]byte("govisor "), 512))
	}
	if err := os.WriteFile(path, want, 0o644); err != nil {
		t.Fatal(err)
	}
	return want
}

// diskContent reads a disk image of any format.
func diskContent(t *testing.T, path string) []byte {
	t.Helper()
	img, err := diskimage.Open(path, diskimage.OpenOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	b := make([]byte, img.VirtualSize())
	if _, err := img.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMigrateMirrorsDisks live-migrates a VM whose disk is on neither a
// shared pool nor shared storage: the destination agent makes a blank
// copy, the migration mirrors the disk into it and the definition follows
// it. A VM on a shared pool moves its memory only, and a failed
// destination leaves no copies behind.
func TestMigrateMirrorsDisks(t *testing.T) {
	kvmtest.Require(t)
	ctx := context.Background()
	dirA, dirB, dirC := t.TempDir(), t.TempDir(), t.TempDir()
	ta, tb, _ := threeHosts(t, dirA, dirB, dirC)

	k := writeGuest(t, dirA, "idle.elf", idleGuest("UP\n"))
	local := filepath.Join(dirA, "local.raw")
	want := writeDisk(t, local)
	s := spec("mirrored", k, api.RestartOnFailure)
	s.StopTimeout = "0s"
	s.Disks = []api.DiskSpec{{Path: local}}
	if _, err := ta.cli.CreateVM(ctx, s, true); err != nil {
		t.Fatal(err)
	}
	first := waitVM(t, ta.cli, "mirrored", "running", func(v api.VM) bool { return v.Status.State == api.StateRunning })
	waitVMMAPI(t, ta, "mirrored")

	// A failed destination keeps no copies.
	_, err := ta.cli.Migrate(ctx, "mirrored", api.MigrateRequest{Host: "broken"})
	wantAPIError(t, "destination fails", err, 502, "", "keeps running on testhost")
	waitVM(t, ta.cli, "mirrored", "no longer migrating", func(v api.VM) bool {
		return v.Status.Migration != nil && v.Status.Migration.State == api.MigrationFailed
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		left, _ := filepath.Glob(filepath.Join(dirC, "vms", "mirrored", "disks", "*"))
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the failed destination keeps disk copies %v", left)
		}
	}

	// testhost -> hostb: the disk is copied into hostb's VM folder.
	got, err := ta.cli.Migrate(ctx, "mirrored", api.MigrateRequest{Host: "hostb"})
	if err != nil {
		t.Fatal(err)
	}
	copyB := filepath.Join(dirB, "vms", "mirrored", "disks", "vda.qcow2")
	if got.Host != "hostb" || len(got.Spec.Disks) != 1 || got.Spec.Disks[0].Path != copyB || got.Spec.Disks[0].Format != "qcow2" {
		t.Fatalf("after migration: host %s, disks %+v", got.Host, got.Spec.Disks)
	}
	if c := vmmConfigOf(t, got.Status.PID); !slices.ContainsFunc(c.Disks, func(d vmmconfig.Disk) bool { return d.Path == copyB }) {
		t.Errorf("destination VMM runs %+v", c)
	}
	// hostb -> testhost: mirrored again, from the qcow2 copy, once the
	// first source VMM has gone.
	waitVM(t, ta.cli, "mirrored", "gone from testhost", func(api.VM) bool {
		return !alive(first.Status.PID) && ta.node.Proc("mirrored") == nil
	})
	got, err = tb.cli.Migrate(ctx, "mirrored", api.MigrateRequest{Host: "testhost"})
	if err != nil {
		t.Fatal(err)
	}
	copyA := filepath.Join(dirA, "vms", "mirrored", "disks", "vda.qcow2")
	if got.Host != "testhost" || got.Spec.Disks[0].Path != copyA {
		t.Fatalf("after migrating back: host %s, disks %+v", got.Host, got.Spec.Disks)
	}
	if _, err := ta.cli.Action(ctx, "mirrored", "stop", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{copyB, copyA, local} {
		if !bytes.Equal(diskContent(t, p), want) {
			t.Errorf("%s does not hold the VM's disk", p)
		}
	}
	if err := ta.cli.DeleteVM(ctx, "mirrored"); err != nil {
		t.Fatal(err)
	}

	// On a shared pool only the memory moves.
	sharedDir := filepath.Join(t.TempDir(), "shared")
	os.MkdirAll(sharedDir, 0o755)
	if _, err := ta.cli.CreatePool(ctx, api.Pool{Name: "nfs", Kind: "shared", Path: sharedDir}); err != nil {
		t.Fatal(err)
	}
	onShared := filepath.Join(sharedDir, "disk.raw")
	writeDisk(t, onShared)
	s2 := spec("shared", k, api.RestartOnFailure)
	s2.StopTimeout = "0s"
	s2.Disks = []api.DiskSpec{{Path: onShared}}
	if _, err := ta.cli.CreateVM(ctx, s2, true); err != nil {
		t.Fatal(err)
	}
	waitVM(t, ta.cli, "shared", "running", func(v api.VM) bool { return v.Status.State == api.StateRunning })
	waitVMMAPI(t, ta, "shared")
	got, err = ta.cli.Migrate(ctx, "shared", api.MigrateRequest{Host: "hostb"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Spec.Disks[0].Path != onShared {
		t.Errorf("a disk on a shared pool moved to %s", got.Spec.Disks[0].Path)
	}
	if c := vmmConfigOf(t, got.Status.PID); len(c.Disks) != 0 {
		t.Errorf("the destination of a shared-storage migration was given disks: %+v", c.Disks)
	}
	if copies, _ := filepath.Glob(filepath.Join(dirB, "vms", "shared", "disks", "*")); len(copies) != 0 {
		t.Errorf("disk copies for a VM on shared storage: %v", copies)
	}
	if _, err := tb.cli.Action(ctx, "shared", "stop", 30*time.Second); err != nil {
		t.Fatal(err)
	}
}
