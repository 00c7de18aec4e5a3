package importer

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/diskimage/vdi"
	"github.com/govisor/govisor/internal/vmimport"
	"github.com/govisor/govisor/internal/vmimport/exporter"
	"github.com/govisor/govisor/internal/vmimport/hyperv"
)

const mib = 1 << 20

// pattern is size bytes of random data with zero holes.
func pattern(size int64, seed uint64) []byte {
	b := make([]byte, size)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := int64(0); i < size; i += 256 << 10 {
		if r.IntN(2) == 0 {
			for j := i; j < min(size, i+100000); j++ {
				b[j] = byte(r.Uint32())
			}
		}
	}
	return b
}

// makeImage writes data into a new image of format at path.
func makeImage(t *testing.T, path, format string, data []byte, opts map[string]string) {
	t.Helper()
	img, err := diskimage.Create(path, format, int64(len(data)), diskimage.CreateOptions{Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := img.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
}

// readImage reads a whole image.
func readImage(t *testing.T, path string) []byte {
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

func importOK(t *testing.T, o Options) *Result {
	t.Helper()
	if o.OutDir == "" {
		o.OutDir = t.TempDir()
	}
	res, err := Import(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestImportVMX(t *testing.T) {
	dir := t.TempDir()
	data := pattern(5*mib, 1)
	makeImage(t, filepath.Join(dir, "web01.vmdk"), "vmdk", data, nil)
	os.WriteFile(filepath.Join(dir, "web01.vmx"), []byte(`displayName = "Web 01"
numvcpus = "2"
memsize = "1024"
scsi0.present = "TRUE"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "web01.vmdk"
ethernet0.present = "TRUE"
ethernet0.generatedAddress = "00:0c:29:01:02:03"
sound.present = "TRUE"
`), 0o644)
	var last int64
	res := importOK(t, Options{Source: "vmx", Path: filepath.Join(dir, "web01.vmx"), Progress: func(i, n int, done, total int64) {
		if i != 0 || n != 1 || done < last || total != int64(len(data)) {
			t.Errorf("progress disk %d of %d, %d of %d after %d", i, n, done, total, last)
		}
		last = done
	}})
	if res.VM.Name != "web-01" || res.VM.CPUs != 2 || res.VM.MemoryMiB != 1024 || res.VM.NICs[0].MAC != "00:0c:29:01:02:03" {
		t.Errorf("VM %+v", res.VM)
	}
	if last != int64(len(data)) {
		t.Errorf("progress ended at %d of %d", last, len(data))
	}
	if filepath.Base(res.Disks[0]) != "web-01-disk0.qcow2" || !bytes.Equal(readImage(t, res.Disks[0]), data) {
		t.Errorf("disk %s does not hold the source's data", res.Disks[0])
	}
	var rep strings.Builder
	res.VM.WriteReport(&rep)
	if !strings.Contains(rep.String(), "dropped: sound card") || !strings.Contains(rep.String(), "mapped:  scsi0:0") {
		t.Errorf("report:\n%s", rep.String())
	}
}

// TestImportVBoxChain imports a VirtualBox VM whose disk is a snapshot:
// a differencing VDI over a base VDI.
func TestImportVBoxChain(t *testing.T) {
	dir := t.TempDir()
	base := pattern(4*mib, 2)
	makeImage(t, filepath.Join(dir, "deb.vdi"), "vdi", base, nil)
	os.Mkdir(filepath.Join(dir, "Snapshots"), 0o755)
	snap := filepath.Join(dir, "Snapshots", "{s1}.vdi")
	top := bytes.Repeat([]byte{0xAB}, mib)
	img, err := vdi.Create(snap, 4*mib, vdi.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	img.WriteAt(top, mib)
	img.Close()
	parent, err := vdi.Open(filepath.Join(dir, "deb.vdi"), true)
	if err != nil {
		t.Fatal(err)
	}
	h := parent.Header()
	parent.Close()
	child, _ := vdi.Open(snap, true)
	ch := child.Header()
	child.Close()
	ch.Type = 4 // VDI_IMAGE_TYPE_DIFF
	ch.UUIDLinkage = h.UUIDCreate
	f, _ := os.OpenFile(snap, os.O_RDWR, 0)
	f.WriteAt(ch.Marshal(), 0)
	f.Close()
	os.WriteFile(filepath.Join(dir, "deb.vbox"), []byte(`<VirtualBox xmlns="http://www.virtualbox.org/"><Machine name="deb">
<MediaRegistry><HardDisks><HardDisk uuid="{b1}" location="deb.vdi" format="VDI"><HardDisk uuid="{s1}" location="Snapshots/{s1}.vdi" format="VDI"/></HardDisk></HardDisks></MediaRegistry>
<Hardware><CPU count="2"/><Memory RAMSize="256"/><Firmware type="EFI"/></Hardware>
<StorageControllers><StorageController name="SATA" type="AHCI"><AttachedDevice type="HardDisk" port="0" device="0"><Image uuid="{s1}"/></AttachedDevice></StorageController></StorageControllers>
</Machine></VirtualBox>`), 0o644)
	res := importOK(t, Options{Source: "vbox", Path: filepath.Join(dir, "deb.vbox"), Name: "deb2", Format: "raw"})
	want := bytes.Clone(base)
	copy(want[mib:], top)
	if res.VM.Firmware != vmimport.FirmwareUEFI || res.VM.Name != "deb2" || !bytes.Equal(readImage(t, res.Disks[0]), want) {
		t.Errorf("the flattened chain differs from base + snapshot (VM %+v)", res.VM)
	}
}

func TestImportHyperV(t *testing.T) {
	export := t.TempDir()
	os.MkdirAll(filepath.Join(export, "Virtual Machines"), 0o755)
	os.MkdirAll(filepath.Join(export, "Virtual Hard Disks"), 0o755)
	data := pattern(3*mib, 3)
	makeImage(t, filepath.Join(export, "Virtual Hard Disks", "web.vhdx"), "vhdx", data, nil)
	os.WriteFile(filepath.Join(export, "Virtual Machines", "9B1E3C5D.xml"), []byte(`<?xml version="1.0"?>
<configuration><properties><name type="string">web</name><subtype type="integer">1</subtype></properties>
<settings><bios><bios_guid type="string">{6F0A2B14-8C3D-4E5F-9A1B-2C3D4E5F6071}</bios_guid></bios><processors><count type="integer">3</count></processors><memory><bank><size type="integer">768</size></bank></memory></settings>
<_s_><ChannelInstanceGuid>{x}</ChannelInstanceGuid><controller0><drive0><pathname type="string">D:\VMs\web\Virtual Hard Disks\web.vhdx</pathname><type type="string">VHD</type></drive0></controller0></_s_>
</configuration>`), 0o644)
	res := importOK(t, Options{Source: "hyperv", Path: export})
	if res.VM.CPUs != 3 || res.VM.MemoryMiB != 768 || res.VM.Firmware != vmimport.FirmwareUEFI || res.VM.UUID != "6f0a2b14-8c3d-4e5f-9a1b-2c3d4e5f6071" || !bytes.Equal(readImage(t, res.Disks[0]), data) {
		t.Errorf("VM %+v or its disk differs", res.VM)
	}

	vmcx := t.TempDir()
	os.MkdirAll(filepath.Join(vmcx, "Virtual Machines"), 0o755)
	os.WriteFile(filepath.Join(vmcx, "Virtual Machines", "A.vmcx"), []byte{0, 1, 2}, 0o644)
	if _, err := Import(context.Background(), Options{Source: "hyperv", Path: vmcx, OutDir: t.TempDir()}); !errors.Is(err, hyperv.ErrVMCX) {
		t.Errorf("a .vmcx export: %v, want ErrVMCX", err)
	}
}

// TestExportImportRoundTrip exports a VM as an OVA and imports it back,
// as an OVA and unpacked as an OVF with its files.
func TestExportImportRoundTrip(t *testing.T) {
	dir := t.TempDir()
	d0, d1 := pattern(6*mib+4096, 4), pattern(2*mib, 5)
	makeImage(t, filepath.Join(dir, "a.qcow2"), "qcow2", d0, nil)
	makeImage(t, filepath.Join(dir, "b.raw"), "raw", d1, nil)
	vm := &vmimport.VM{Name: "rt", CPUs: 2, MemoryMiB: 384, Firmware: vmimport.FirmwareUEFI, UUID: "0c3e5a1f-7b2d-4e69-a8c4-5f1e2d3c4b5a",
		NICs: []vmimport.NIC{{MAC: "52:54:00:aa:bb:cc", Network: "lan"}}}
	ovaPath := filepath.Join(dir, "rt.ova")
	if err := exporter.Export(context.Background(), exporter.Options{VM: vm, Images: []string{filepath.Join(dir, "a.qcow2"), filepath.Join(dir, "b.raw")}, Out: ovaPath}); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	res := importOK(t, Options{Source: "ova", Path: ovaPath, OutDir: out})
	got := res.VM
	if got.Name != "rt" || got.CPUs != 2 || got.MemoryMiB != 384 || got.Firmware != vmimport.FirmwareUEFI || got.UUID != vm.UUID ||
		!reflect.DeepEqual(got.NICs, []vmimport.NIC{{Source: "Network adapter 1", MAC: "52:54:00:aa:bb:cc", Model: "e1000", Network: "lan"}}) {
		t.Errorf("VM came back as %+v", got)
	}
	if len(res.Disks) != 2 || !bytes.Equal(readImage(t, res.Disks[0]), d0) || !bytes.Equal(readImage(t, res.Disks[1]), d1) {
		t.Errorf("disks %q do not hold the exported data", res.Disks)
	}
	ents, _ := os.ReadDir(out)
	if len(ents) != 2 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("out folder holds %q, want the two disks only", names)
	}
	// The same name again refuses rather than overwriting.
	if _, err := Import(context.Background(), Options{Source: "ova", Path: ovaPath, OutDir: out}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second import: %v", err)
	}
	if ents2, _ := os.ReadDir(out); len(ents2) != 2 {
		t.Errorf("a failed import left files behind: %d entries", len(ents2))
	}
}

func TestImportErrors(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.vmx"), []byte("scsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"missing.vmdk\"\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "bad.vmx"), []byte("numvcpus = \"x\"\n"), 0o644)
	for name, o := range map[string]Options{
		"unknown source": {Source: "xen", Path: filepath.Join(dir, "a.vmx")},
		"missing file":   {Source: "vmx", Path: filepath.Join(dir, "none.vmx")},
		"missing disk":   {Source: "vmx", Path: filepath.Join(dir, "a.vmx")},
		"bad config":     {Source: "vmx", Path: filepath.Join(dir, "bad.vmx")},
	} {
		o.OutDir = t.TempDir()
		if _, err := Import(context.Background(), o); err == nil {
			t.Errorf("%s: no error", name)
		}
		if ents, _ := os.ReadDir(o.OutDir); len(ents) != 0 {
			t.Errorf("%s: left %d files behind", name, len(ents))
		}
	}
}

func TestDNSName(t *testing.T) {
	for in, want := range map[string]string{"Web 01": "web-01", `web01 "prod"`: "web01-prod", "": "vm", "---": "vm", strings.Repeat("a", 80): strings.Repeat("a", 63)} {
		if got := DNSName(in); got != want {
			t.Errorf("DNSName(%q) = %q, want %q", in, got, want)
		}
	}
}
