package agent

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/vmimport"
	"github.com/govisor/govisor/internal/vmimport/exporter"
)

// TestImportVM imports an OVA into a pool through the API, defines a VM
// from the returned definition, and checks the refusals.
func TestImportVM(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinux")
	os.WriteFile(kernel, []byte("not booted in this test"), 0o644)
	ta := startAgent(t, filepath.Join(dir, "state"), nil)
	defer ta.Close()
	ctx := context.Background()
	poolDir := filepath.Join(dir, "pool")
	if _, err := ta.cli.CreatePool(ctx, api.Pool{Name: "local", Path: poolDir}); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("imported disk data"), 1<<16)
	raw := filepath.Join(dir, "src.raw")
	os.WriteFile(raw, data, 0o644)
	ovaPath := filepath.Join(dir, "app.ova")
	vm := &vmimport.VM{Name: "App Server", CPUs: 2, MemoryMiB: 96, Firmware: vmimport.FirmwareBIOS, UUID: "0c3e5a1f-7b2d-4e69-a8c4-5f1e2d3c4b5a",
		NICs: []vmimport.NIC{{MAC: "52:54:00:01:02:03", Network: "VM Network"}}}
	if err := exporter.Export(ctx, exporter.Options{VM: vm, Images: []string{raw}, Out: ovaPath}); err != nil {
		t.Fatal(err)
	}

	res, err := ta.cli.ImportVM(ctx, "local", api.ImportRequest{Source: "ova", Path: ovaPath})
	if err != nil {
		t.Fatal(err)
	}
	if res.Spec.Name != "app-server" || res.Spec.CPUs != 2 || res.Spec.Memory != "96M" || res.Firmware != "bios" || res.Spec.Firmware != api.FirmwareBIOS ||
		len(res.Spec.NICs) != 1 || res.Spec.NICs[0].MAC != "52:54:00:01:02:03" || res.Spec.UUID != vm.UUID {
		t.Errorf("result %+v", res)
	}
	if len(res.Volumes) != 1 || res.Volumes[0].Name != "app-server-disk0.qcow2" || res.Volumes[0].Format != "qcow2" ||
		res.Spec.Disks[0] != (api.DiskSpec{Pool: "local", Volume: "app-server-disk0.qcow2"}) {
		t.Fatalf("volumes %+v, disks %+v", res.Volumes, res.Spec.Disks)
	}
	img, err := diskimage.Open(res.Volumes[0].Path, diskimage.OpenOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	img.ReadAt(got, 0)
	img.Close()
	if !bytes.Equal(got, data) {
		t.Error("the volume does not hold the exported disk's data")
	}
	vols, err := ta.cli.ListVolumes(ctx, "local")
	if err != nil || len(vols) != 1 || vols[0].Progress != nil {
		t.Errorf("after the import the pool lists %+v, %v: want the volume, done", vols, err)
	}
	// The definition is one the agent takes as it is (firmware bios), but
	// for its NICs: this test defines no network.
	s := res.Spec
	s.NICs = nil
	if v, err := ta.cli.CreateVM(ctx, s, false); err != nil {
		t.Fatalf("define the imported VM: %v", err)
	} else if v.Spec.UUID != vm.UUID {
		t.Errorf("the defined VM's UUID is %q, want the source's %q", v.Spec.UUID, vm.UUID)
	}

	apiErrors(t, []apiErrorCase{
		{"taken", func() error {
			_, err := ta.cli.ImportVM(ctx, "local", api.ImportRequest{Source: "ova", Path: ovaPath})
			return err
		}, 409, "", "already exists"},
		{"unknown source", func() error {
			_, err := ta.cli.ImportVM(ctx, "local", api.ImportRequest{Source: "xen", Path: ovaPath})
			return err
		}, 400, "source", "use one of"},
		{"relative path", func() error {
			_, err := ta.cli.ImportVM(ctx, "local", api.ImportRequest{Source: "ova", Path: "app.ova"})
			return err
		}, 400, "path", "absolute"},
		{"bad name", func() error {
			_, err := ta.cli.ImportVM(ctx, "local", api.ImportRequest{Source: "ova", Path: ovaPath, Name: "Bad Name"})
			return err
		}, 400, "name", "DNS label"},
		{"not an OVA", func() error {
			_, err := ta.cli.ImportVM(ctx, "local", api.ImportRequest{Source: "ova", Path: raw, Name: "x"})
			return err
		}, 400, "path", "archive"},
		{"unknown pool", func() error {
			_, err := ta.cli.ImportVM(ctx, "ghost", api.ImportRequest{Source: "ova", Path: ovaPath})
			return err
		}, 404, "", "no storage pool ghost"},
	})
	if ents, _ := os.ReadDir(poolDir); len(ents) != 1 {
		t.Errorf("pool directory holds %d files, want the one volume", len(ents))
	}
	// The same source again is a copy: it does not take the defined VM's
	// UUID, and the report says so.
	cp, err := ta.cli.ImportVM(ctx, "local", api.ImportRequest{Source: "ova", Path: ovaPath, Name: "copy"})
	if err != nil {
		t.Fatal(err)
	}
	if cp.Spec.UUID != "" || !slices.ContainsFunc(cp.Dropped, func(d string) bool { return strings.Contains(d, "VM app-server has it") }) {
		t.Errorf("a copy's import: uuid %q, dropped %q", cp.Spec.UUID, cp.Dropped)
	}
}

// TestImportTracker checks that the volume an import converts is listed
// with its progress while it is made, and no longer once done.
func TestImportTracker(t *testing.T) {
	ps := &poolService{}
	tr := &importTracker{ps: ps, pool: api.Pool{Name: "p", Path: "/pool"}, format: "qcow2"}
	tr.start("/pool/vm-disk0.qcow2", 100)
	tr.progress(0, 2, 40, 100)
	got := ps.makingIn("p")
	if len(got) != 1 || got[0].Name != "vm-disk0.qcow2" || got[0].Progress == nil || got[0].Progress.DoneBytes != 40 || got[0].Progress.TotalBytes != 100 {
		t.Fatalf("making %+v", got)
	}
	tr.start("/pool/vm-disk1.qcow2", 10)
	if got := ps.makingIn("p"); len(got) != 1 || got[0].Name != "vm-disk1.qcow2" {
		t.Fatalf("after the second disk started: %+v", got)
	}
	tr.finish()
	if got := ps.makingIn("p"); len(got) != 0 {
		t.Fatalf("after the import: %+v", got)
	}
}
