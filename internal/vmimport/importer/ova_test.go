package importer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/diskimage/imagetest"
	"github.com/govisor/govisor/internal/diskimage/ova"
	"github.com/govisor/govisor/internal/diskimage/ova/ovatest"
	"github.com/govisor/govisor/internal/diskimage/vmdk"
	"github.com/govisor/govisor/internal/vmimport"
)

// vmwareOVF is a descriptor as VMware exports one: a streamOptimized disk
// (%d: its file size, then its capacity in MiB), a blank 1 MiB disk that
// no file backs and no item attaches, and two NICs.
const vmwareOVF = `<?xml version="1.0" encoding="UTF-8"?>
<Envelope vmw:buildId="build-1" xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf">
  <References>
    <File ovf:href="web-disk1.vmdk" ovf:id="file1" ovf:size="%d"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="%d" ovf:capacityAllocationUnits="byte * 2^20" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
    <Disk ovf:capacity="1" ovf:capacityAllocationUnits="byte * 2^20" ovf:diskId="blank"/>
  </DiskSection>
  <NetworkSection>
    <Info>The list of logical networks</Info>
    <Network ovf:name="VM Network"/>
  </NetworkSection>
  <VirtualSystem ovf:id="web01">
    <Info>A virtual machine</Info>
    <Name>web 01</Name>
    <OperatingSystemSection ovf:id="101" vmw:osType="ubuntu64Guest">
      <Info>The kind of installed guest operating system</Info>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:VirtualSystemType>vmx-13</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:ElementName>2 virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>2</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:ElementName>2048MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>2048</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>VM Network</rasd:Connection>
        <rasd:ElementName>Network adapter 1</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:Connection>backend</rasd:Connection>
        <rasd:InstanceID>6</rasd:InstanceID>
        <rasd:ResourceSubType>E1000</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
`

// buildVMwareOVA writes dir/web.ova as VMware exports one (descriptor,
// manifest, then a streamOptimized VMDK made by govisor's writer, kept as
// dir/src.vmdk) and returns its path and the disk's contents; corrupt
// flips a byte of the archived disk after its digest is taken.
func buildVMwareOVA(t *testing.T, dir string, corrupt bool) (string, []byte) {
	t.Helper()
	const sizeMiB = 6
	want := pattern(sizeMiB*mib, 9)
	vp := filepath.Join(dir, "src.vmdk")
	img, err := vmdk.Create(vp, int64(len(want)), vmdk.CreateOptions{Subformat: "streamOptimized"})
	if err != nil {
		t.Fatal(err)
	}
	img.WriteAt(want, 0)
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	disk, err := os.ReadFile(vp)
	if err != nil {
		t.Fatal(err)
	}
	ovfText := []byte(fmt.Sprintf(vmwareOVF, len(disk), sizeMiB))
	mf := fmt.Sprintf("SHA256(web.ovf)= %x\nSHA256(web-disk1.vmdk)= %x\n", sha256.Sum256(ovfText), sha256.Sum256(disk))
	if corrupt {
		disk[len(disk)/2] ^= 1
	}
	p := filepath.Join(dir, "web.ova")
	ovatest.WriteTar(t, p, ovatest.Member{Name: "web.ovf", Data: ovfText}, ovatest.Member{Name: "web.mf", Data: []byte(mf)}, ovatest.Member{Name: "web-disk1.vmdk", Data: disk})
	return p, want
}

// TestImportVMwareOVA imports an OVA as VMware writes it: the OVF's VM,
// the streamOptimized disk converted with its data, the blank disk made
// at its capacity, the unpacked members removed.
func TestImportVMwareOVA(t *testing.T) {
	dir := t.TempDir()
	p, want := buildVMwareOVA(t, dir, false)
	out := t.TempDir()
	res := importOK(t, Options{Source: "ova", Path: p, OutDir: out})
	vm := res.VM
	if vm.Name != "web-01" || vm.CPUs != 2 || vm.MemoryMiB != 2048 || vm.OS != "ubuntu64Guest" || vm.Firmware != vmimport.FirmwareBIOS {
		t.Errorf("VM %+v", vm)
	}
	wantNICs := []vmimport.NIC{{Source: "Network adapter 1", Model: "vmxnet3", Network: "VM Network"}, {Source: "ethernet1", Model: "e1000", Network: "backend"}}
	if !reflect.DeepEqual(vm.NICs, wantNICs) {
		t.Errorf("NICs %+v, want %+v", vm.NICs, wantNICs)
	}
	wantDisks := []string{filepath.Join(out, "web-01-disk0.qcow2"), filepath.Join(out, "web-01-disk1.qcow2")}
	if !reflect.DeepEqual(res.Disks, wantDisks) {
		t.Fatalf("disks %q, want %q", res.Disks, wantDisks)
	}
	if !bytes.Equal(readImage(t, res.Disks[0]), want) {
		t.Error("the qcow2 disk differs from the VMDK's contents")
	}
	if info, err := diskimage.InfoOf(res.Disks[1], ""); err != nil || info.Format != "qcow2" || info.VirtualSize != mib {
		t.Errorf("blank disk %+v, %v: want a 1 MiB qcow2", info, err)
	}
	if names := ovatest.Names(t, out); len(names) != 2 {
		t.Errorf("the output folder holds %q, want the two disks only", names)
	}
}

// TestImportOVAQemu checks the qcow2 an OVA import makes with qemu-img:
// it passes check and compares equal to the OVA's VMDK.
func TestImportOVAQemu(t *testing.T) {
	q := imagetest.QemuImg(t)
	dir := t.TempDir()
	p, _ := buildVMwareOVA(t, dir, false)
	res := importOK(t, Options{Source: "ova", Path: p})
	imagetest.Run(t, q, "check", "-f", "qcow2", res.Disks[0])
	imagetest.Run(t, q, "compare", "-f", "vmdk", "-F", "qcow2", filepath.Join(dir, "src.vmdk"), res.Disks[0])
}

// TestImportOVARejects: an OVA whose archive, manifest or descriptor is
// wrong is refused, and nothing is left in the output folder.
func TestImportOVARejects(t *testing.T) {
	dir := t.TempDir()
	out := t.TempDir()
	p, _ := buildVMwareOVA(t, dir, true)
	if _, err := Import(context.Background(), Options{Source: "ova", Path: p, OutDir: out}); !errors.Is(err, ova.ErrDigestMismatch) {
		t.Errorf("corrupt disk: %v, want ErrDigestMismatch", err)
	}
	const noDisk = `<Envelope><VirtualSystem id="x"><Name>x</Name></VirtualSystem></Envelope>`
	for name, c := range map[string]struct {
		files []ovatest.Member
		want  error // nil: any error
	}{
		"escape":       {[]ovatest.Member{{Name: "../evil.ovf", Data: []byte(noDisk)}}, ova.ErrBadArchive},
		"subdir":       {[]ovatest.Member{{Name: "a.ovf", Data: []byte(noDisk)}, {Name: "a/b.vmdk", Data: []byte("x")}}, ova.ErrBadArchive},
		"no ovf":       {[]ovatest.Member{{Name: "x.vmdk", Data: []byte("x")}}, ova.ErrBadArchive},
		"bad mf":       {[]ovatest.Member{{Name: "a.ovf", Data: []byte(noDisk)}, {Name: "a.mf", Data: []byte("MD5(a.ovf)= 00")}}, ova.ErrBadArchive},
		"missing mf":   {[]ovatest.Member{{Name: "a.ovf", Data: []byte(noDisk)}, {Name: "a.mf", Data: []byte(fmt.Sprintf("SHA1(b.vmdk)= %040x", 0))}}, ova.ErrDigestMismatch},
		"bad xml":      {[]ovatest.Member{{Name: "a.ovf", Data: []byte("<Envelope")}}, vmimport.ErrBadConfig},
		"no system":    {[]ovatest.Member{{Name: "a.ovf", Data: []byte("<Envelope/>")}}, vmimport.ErrBadConfig},
		"missing ref":  {[]ovatest.Member{{Name: "a.ovf", Data: []byte(`<Envelope><References><File id="f" href="d.vmdk"/></References><DiskSection><Disk diskId="d" fileRef="f" capacity="1"/></DiskSection><VirtualSystem id="x"><VirtualHardwareSection><Item><ResourceType>17</ResourceType><HostResource>ovf:/disk/d</HostResource></Item></VirtualHardwareSection></VirtualSystem></Envelope>`)}}, nil},
		"missing gzip": {[]ovatest.Member{{Name: "a.ovf", Data: []byte(`<Envelope><References><File id="f" href="d.vmdk.gz" compression="gzip"/></References><DiskSection><Disk diskId="d" fileRef="f" capacity="1"/></DiskSection><VirtualSystem id="x"><VirtualHardwareSection><Item><ResourceType>17</ResourceType><HostResource>ovf:/disk/d</HostResource></Item></VirtualHardwareSection></VirtualSystem></Envelope>`)}}, nil},
	} {
		op := filepath.Join(dir, "t.ova")
		ovatest.WriteTar(t, op, c.files...)
		_, err := Import(context.Background(), Options{Source: "ova", Path: op, OutDir: out})
		if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	if names := ovatest.Names(t, out); len(names) != 0 {
		t.Errorf("failed imports left %q", names)
	}
}

// TestImportOVADelta imports an OVA whose disk is a delta disk over a
// parent (OVF parentRef, DSP0243 9.1: a VMDK made by qemu-img naming its
// parent): the imported disk is the two flattened.
func TestImportOVADelta(t *testing.T) {
	q := imagetest.QemuImg(t)
	qio, err := exec.LookPath("qemu-io")
	if err != nil {
		t.Skip("SKIPPING QEMU-IO INTEROP TEST: qemu-io not installed (run scripts/deps.sh test)")
	}
	dir := t.TempDir()
	base, delta := filepath.Join(dir, "base.vmdk"), filepath.Join(dir, "delta.vmdk")
	imagetest.Run(t, q, "create", "-q", "-f", "vmdk", base, "3M")
	imagetest.Run(t, qio, "-f", "vmdk", "-c", "write -P 0x41 0 3M", base)
	imagetest.Run(t, q, "create", "-q", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", delta)
	imagetest.Run(t, qio, "-f", "vmdk", "-c", "write -P 0x42 1M 128k", delta)
	files := []ovatest.Member{{Name: "d.ovf", Data: []byte(`<Envelope><References><File id="f" href="base.vmdk"/><File id="g" href="delta.vmdk"/></References>` +
		`<DiskSection><Disk diskId="b" fileRef="f" capacity="3" capacityAllocationUnits="byte * 2^20"/><Disk diskId="d" fileRef="g" parentRef="b" capacity="3" capacityAllocationUnits="byte * 2^20"/></DiskSection>` +
		`<VirtualSystem id="x"><VirtualHardwareSection><Item><ResourceType>17</ResourceType><HostResource>ovf:/disk/d</HostResource></Item></VirtualHardwareSection></VirtualSystem></Envelope>`)}}
	for _, p := range []string{base, delta} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, ovatest.Member{Name: filepath.Base(p), Data: b})
	}
	p := filepath.Join(dir, "d.ova")
	ovatest.WriteTar(t, p, files...)
	res := importOK(t, Options{Source: "ova", Path: p, Format: "raw"})
	want := bytes.Repeat([]byte{0x41}, 3*mib)
	copy(want[mib:], bytes.Repeat([]byte{0x42}, 128<<10))
	if len(res.Disks) != 1 || !bytes.Equal(readImage(t, res.Disks[0]), want) {
		t.Errorf("disks %q: want the delta disk over its parent, flattened", res.Disks)
	}
}
