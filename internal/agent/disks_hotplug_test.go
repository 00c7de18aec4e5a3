package agent

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/client"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/node"
	"github.com/govisor/govisor/internal/vmmapi"
)

// TestDiskHotplugAPI adds and removes disks of a stopped VM (definition
// only) and of a running one, whose real VMM plugs the disk in and asks the
// guest to eject it (the idle test guest never does: the disk stays
// "detaching" in the VMM while the definition has dropped it).
func TestDiskHotplugAPI(t *testing.T) {
	kvmtest.Require(t)
	bin := govisorBin(t)
	dir := t.TempDir()
	ta := startAgent(t, filepath.Join(dir, "state"), func(c *Config) { c.Executable = bin })
	// Before t.TempDir goes: an embedded etcd whose data directory vanishes
	// ends the whole test process.
	defer ta.Shutdown(context.Background())
	ctx := context.Background()
	kernel := writeGuest(t, dir, "idle.elf", idleGuest("IDLE-UP\n"))
	img := filepath.Join(dir, "data.raw")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	status := func(err error) int {
		var ce *client.Error
		if errors.As(err, &ce) {
			return ce.StatusCode
		}
		return 0
	}

	// A VM that is defined but not started: only its definition changes.
	if _, err := ta.cli.CreateVM(ctx, spec("cold", kernel, ""), false); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method, path string
		body         any
		code         int
		disks        int
	}{
		{"POST", "/v1/vms/cold/disks", api.DiskSpec{Path: img, Format: "raw"}, 200, 1},
		{"POST", "/v1/vms/cold/disks", api.DiskSpec{Path: filepath.Join(dir, "missing.raw")}, 400, 1},
		{"POST", "/v1/vms/cold/disks", api.DiskSpec{Path: img, Format: "iso"}, 400, 1},
		{"POST", "/v1/vms/cold/disks", map[string]any{"path": img, "size": 3}, 400, 1},
		{"POST", "/v1/vms/nosuch/disks", api.DiskSpec{Path: img}, 404, 1},
		{"POST", "/v1/vms/cold/disks", api.DiskSpec{Path: img, ReadOnly: true}, 200, 2},
		{"DELETE", "/v1/vms/cold/disks/2", nil, 404, 2},
		{"DELETE", "/v1/vms/cold/disks/x", nil, 404, 2},
		{"DELETE", "/v1/vms/cold/disks/0", nil, 200, 1},
	} {
		var v api.VM
		_, err := ta.cli.Do(ctx, tc.method, tc.path, tc.body, &v)
		if tc.code == 200 && err != nil || tc.code != 200 && status(err) != tc.code {
			t.Errorf("%s %s %+v: %v, want %d", tc.method, tc.path, tc.body, err, tc.code)
		}
		got, err := ta.cli.GetVM(ctx, "cold")
		if err != nil || len(got.Spec.Disks) != tc.disks {
			t.Fatalf("after %s %s: disks %+v, %v; want %d", tc.method, tc.path, got.Spec.Disks, err, tc.disks)
		}
	}
	if got, _ := ta.cli.GetVM(ctx, "cold"); !got.Spec.Disks[0].ReadOnly {
		t.Errorf("the remaining disk is not the read-only one: %+v", got.Spec.Disks)
	}

	// A running VM with a boot disk: the VMM hot-plugs the new disk.
	boot := filepath.Join(dir, "boot.raw")
	if err := os.WriteFile(boot, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	hs := spec("hot", kernel, "")
	hs.Disks = []api.DiskSpec{{Path: boot}}
	if _, err := ta.cli.CreateVM(ctx, hs, true); err != nil {
		t.Fatal(err)
	}
	waitVM(t, ta.cli, "hot", "running", func(v api.VM) bool { return v.Status.State == api.StateRunning })
	vmm := vmmapi.NewClient(filepath.Join(ta.vmDir("hot"), node.APISock))
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if info, err := vmm.Info(t.Context()); err == nil && info.State == "running" {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the VMM API never answered: %v", err)
		}
	}
	var v api.VM
	if _, err := ta.cli.Do(ctx, "POST", "/v1/vms/hot/disks", api.DiskSpec{Path: img}, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Spec.Disks) != 2 || v.Spec.Disks[1].Path != img {
		t.Fatalf("definition after attach: %+v", v.Spec.Disks)
	}
	ds, err := vmm.Disks(t.Context())
	if err != nil || len(ds) != 2 || ds[1].Name != "vdb" || !ds[1].Hotplugged || ds[1].Path != img || ds[1].State != "attached" {
		t.Fatalf("VMM disks after attach: %+v, %v", ds, err)
	}
	if _, err := ta.cli.Do(ctx, "DELETE", "/v1/vms/hot/disks/0", nil, nil); status(err) != 409 || !strings.Contains(err.Error(), "stop the VM") {
		t.Errorf("detaching the boot disk of a running VM: %v", err)
	}
	// A snapshot carries the hot-plugged disk.
	if _, err := ta.cli.Snapshot(ctx, "hot", api.SnapshotRequest{Name: "withhot"}); err != nil {
		t.Fatalf("snapshot with a hot-plugged disk: %v", err)
	}
	var after api.VM
	if _, err := ta.cli.Do(ctx, "DELETE", "/v1/vms/hot/disks/1", nil, &after); err != nil {
		t.Fatal(err)
	}
	if after.Spec.Name != "hot" || len(after.Spec.Disks) != 1 || after.Spec.Disks[0].Path != boot {
		t.Fatalf("definition after detach: %+v", after.Spec)
	}
	ds, err = vmm.Disks(t.Context())
	if err != nil || len(ds) != 2 || ds[1].State != "detaching" {
		t.Fatalf("VMM disks after the detach request: %+v, %v", ds, err)
	}

	// Restoring the snapshot brings the hot-plugged disk back into the
	// guest, and the definition follows.
	if _, err := ta.cli.Restore(ctx, "hot", "withhot", 30*time.Second); err != nil {
		t.Fatalf("restore: %v", err)
	}
	waitVM(t, ta.cli, "hot", "the snapshot's disks in the definition", func(v api.VM) bool {
		return len(v.Spec.Disks) == 2 && v.Spec.Disks[0].Path == boot && v.Spec.Disks[1].Path == img
	})
	ds, err = vmm.Disks(t.Context())
	if err != nil || len(ds) != 2 || ds[1].Path != img || !ds[1].Hotplugged || ds[1].State != "attached" {
		t.Fatalf("restored VMM disks: %+v, %v", ds, err)
	}
	if _, err := ta.cli.Action(ctx, "hot", "stop", 30*time.Second); err != nil && !strings.Contains(err.Error(), "stopped") {
		t.Logf("stop: %v", err)
	}
}

// TestMigrateHotpluggedDisk live-migrates, with disk mirroring, a VM that
// has a disk hot-plugged through the agent: both disks are copied (the
// hot-plugged one after the boot disk, as the definition lists them), the
// destination VMM has the copy hot-plugged in the same slot, and it can be
// detached there.
func TestMigrateHotpluggedDisk(t *testing.T) {
	kvmtest.Require(t)
	ctx := context.Background()
	dirA, dirB, dirC := t.TempDir(), t.TempDir(), t.TempDir()
	ta, tb, _ := threeHosts(t, dirA, dirB, dirC)
	k := writeGuest(t, dirA, "idle.elf", idleGuest("UP\n"))
	boot, hot := filepath.Join(dirA, "boot.raw"), filepath.Join(dirA, "hot.raw")
	wantBoot := writeDisk(t, boot)
	wantHot := bytes.Repeat([]byte("hot-plug"), mirrorTestSize/8)
	if err := os.WriteFile(hot, wantHot, 0o644); err != nil {
		t.Fatal(err)
	}
	s := spec("hotmig", k, api.RestartOnFailure)
	s.StopTimeout = "0s"
	s.Disks = []api.DiskSpec{{Path: boot}}
	if _, err := ta.cli.CreateVM(ctx, s, true); err != nil {
		t.Fatal(err)
	}
	waitVM(t, ta.cli, "hotmig", "running", func(v api.VM) bool { return v.Status.State == api.StateRunning })
	waitVMMAPI(t, ta, "hotmig")
	if _, err := ta.cli.Do(ctx, "POST", "/v1/vms/hotmig/disks", api.DiskSpec{Path: hot, Format: "raw"}, nil); err != nil {
		t.Fatal(err)
	}
	srcDisks, err := vmmapi.NewClient(filepath.Join(ta.vmDir("hotmig"), node.APISock)).Disks(t.Context())
	if err != nil || len(srcDisks) != 2 {
		t.Fatalf("source VMM disks: %+v, %v", srcDisks, err)
	}

	got, err := ta.cli.Migrate(ctx, "hotmig", api.MigrateRequest{Host: "hostb"})
	if err != nil {
		t.Fatal(err)
	}
	copyBoot := filepath.Join(dirB, "vms", "hotmig", "disks", "vda.qcow2")
	copyHot := filepath.Join(dirB, "vms", "hotmig", "disks", "vdb.qcow2")
	if got.Host != "hostb" || len(got.Spec.Disks) != 2 || got.Spec.Disks[0].Path != copyBoot || got.Spec.Disks[1].Path != copyHot {
		t.Fatalf("after migration: host %s, disks %+v", got.Host, got.Spec.Disks)
	}
	vmm := vmmapi.NewClient(filepath.Join(tb.vmDir("hotmig"), node.APISock))
	ds, err := vmm.Disks(t.Context())
	if err != nil || len(ds) != 2 || ds[0].Path != copyBoot || ds[1].Path != copyHot || !ds[1].Hotplugged ||
		ds[1].Slot != srcDisks[1].Slot || ds[1].Name != "vdb" {
		t.Fatalf("destination VMM disks %+v, %v; the source had %+v", ds, err, srcDisks)
	}
	// Detach on the destination: the VMM asks the guest (which, idle, never
	// ejects) and the definition drops the disk.
	var after api.VM
	if _, err := tb.cli.Do(ctx, "DELETE", "/v1/vms/hotmig/disks/1", nil, &after); err != nil {
		t.Fatal(err)
	}
	if len(after.Spec.Disks) != 1 || after.Spec.Disks[0].Path != copyBoot {
		t.Fatalf("definition after detach: %+v", after.Spec.Disks)
	}
	if ds, err := vmm.Disks(t.Context()); err != nil || len(ds) != 2 || ds[1].State != "detaching" {
		t.Fatalf("destination VMM disks after the detach request: %+v, %v", ds, err)
	}
	if _, err := tb.cli.Action(ctx, "hotmig", "stop", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(diskContent(t, copyBoot), wantBoot) {
		t.Error("the boot disk's copy differs")
	}
	if !bytes.Equal(diskContent(t, copyHot), wantHot) {
		t.Error("the hot-plugged disk's copy differs")
	}
}
