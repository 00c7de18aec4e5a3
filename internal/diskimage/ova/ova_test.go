package ova

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/diskimage/qcow2"
	"github.com/govisor/govisor/internal/diskimage/vmdk"
)

const sampleOVF = `<?xml version="1.0" encoding="UTF-8"?>
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

type tarFile struct {
	name string
	data []byte
}

func writeTar(t *testing.T, path string, files []tarFile) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Typeflag: tar.TypeReg})
		tw.Write(f.data)
	}
	tw.Close()
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// buildOVA writes an OVA like VMware exports: OVF, manifest, then a
// streamOptimized VMDK made by govisor's writer holding want.
func buildOVA(t *testing.T, dir string, corrupt bool) (string, []byte) {
	t.Helper()
	const sizeMiB = 6
	want := make([]byte, sizeMiB<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for range 5 {
		off := r.IntN(len(want) - 100000)
		for i := off; i < off+100000; i++ {
			want[i] = byte(r.Uint32() % 5)
		}
	}
	vp := filepath.Join(dir, "src.vmdk")
	img, err := vmdk.Create(vp, int64(len(want)), vmdk.CreateOptions{Subformat: "streamOptimized"})
	if err != nil {
		t.Fatal(err)
	}
	img.WriteAt(want, 0)
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	disk, _ := os.ReadFile(vp)
	ovf := []byte(fmt.Sprintf(sampleOVF, len(disk), sizeMiB))
	mf := fmt.Sprintf("SHA256(web.ovf)= %x\nSHA256(web-disk1.vmdk)= %x\n", sha256.Sum256(ovf), sha256.Sum256(disk))
	if corrupt {
		disk[len(disk)/2] ^= 1
	}
	p := filepath.Join(dir, "web.ova")
	writeTar(t, p, []tarFile{{"web.ovf", ovf}, {"web.mf", []byte(mf)}, {"web-disk1.vmdk", disk}})
	return p, want
}

func TestImport(t *testing.T) {
	dir := t.TempDir()
	p, want := buildOVA(t, dir, false)
	out := filepath.Join(dir, "out")
	vm, err := Import(p, out)
	if err != nil {
		t.Fatal(err)
	}
	if vm.Name != "web 01" || vm.CPUs != 2 || vm.MemoryMiB != 2048 || vm.OS != "ubuntu64Guest" {
		t.Fatalf("vm %+v", vm)
	}
	wantNICs := []NIC{{"vmxnet3", "VM Network"}, {"e1000", "backend"}}
	if len(vm.NICs) != 2 || vm.NICs[0] != wantNICs[0] || vm.NICs[1] != wantNICs[1] {
		t.Fatalf("nics %+v", vm.NICs)
	}
	if len(vm.Disks) != 2 || vm.Disks[0] != filepath.Join(out, "web_01-disk0.qcow2") {
		t.Fatalf("disks %v", vm.Disks)
	}
	img, err := qcow2.Open(vm.Disks[0], diskimage.OpenOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	got := make([]byte, img.VirtualSize())
	img.ReadAt(got, 0)
	if !bytes.Equal(got, want) {
		t.Fatalf("qcow2 disk differs from the VMDK's contents (size %d)", len(got))
	}
	blank, err := qcow2.Open(vm.Disks[1], diskimage.OpenOptions{ReadOnly: true})
	if err != nil || blank.VirtualSize() != 1<<20 {
		t.Fatalf("blank disk: %v", err)
	}
	blank.Close()
	// Temporary extracted files are gone.
	entries, _ := os.ReadDir(out)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".ova-") {
			t.Fatalf("left behind %s", e.Name())
		}
	}
}

func TestImportRejects(t *testing.T) {
	dir := t.TempDir()
	p, _ := buildOVA(t, dir, true)
	if _, err := Import(p, filepath.Join(dir, "out")); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("corrupt disk: %v", err)
	}
	for name, files := range map[string][]tarFile{
		"escape":      {{"../evil.ovf", []byte("x")}},
		"subdir":      {{"a/b.vmdk", []byte("x")}},
		"no ovf":      {{"x.vmdk", []byte("x")}},
		"bad mf":      {{"a.ovf", []byte("<Envelope/>")}, {"a.mf", []byte("MD5(a.ovf)= 00")}},
		"missing mf":  {{"a.ovf", []byte("<Envelope/>")}, {"a.mf", []byte(fmt.Sprintf("SHA1(b.vmdk)= %040x", 0))}},
		"bad xml":     {{"a.ovf", []byte("<Envelope")}},
		"no system":   {{"a.ovf", []byte("<Envelope/>")}},
		"gzip ref":    {{"a.ovf", []byte(`<Envelope><References><File id="f" href="d.vmdk.gz" compression="gzip"/></References><VirtualSystem id="x"/></Envelope>`)}},
		"missing ref": {{"a.ovf", []byte(`<Envelope><References><File id="f" href="d.vmdk"/></References><DiskSection><Disk diskId="d" fileRef="f" capacity="1"/></DiskSection><VirtualSystem id="x"/></Envelope>`)}},
	} {
		op := filepath.Join(dir, "t.ova")
		writeTar(t, op, files)
		if _, err := Import(op, filepath.Join(dir, "out2")); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// A delta disk (parentRef) converts only with its parent: Import
	// points at govisor import, which does that.
	op := filepath.Join(dir, "delta.ova")
	writeTar(t, op, []tarFile{{"a.ovf", []byte(`<Envelope><References><File id="f" href="b.vmdk"/><File id="g" href="d.vmdk"/></References>` +
		`<DiskSection><Disk diskId="b" fileRef="f" capacity="1"/><Disk diskId="d" fileRef="g" parentRef="b" capacity="1"/></DiskSection><VirtualSystem id="x"/></Envelope>`)}})
	if _, err := Import(op, filepath.Join(dir, "out3")); !errors.Is(err, ErrBadOVF) || !strings.Contains(err.Error(), "b.vmdk <- d.vmdk") {
		t.Errorf("delta disk: %v", err)
	}
}

func TestParseManifest(t *testing.T) {
	m, err := parseManifest("SHA1(a.ovf)= " + strings.Repeat("AB", 20) + "\r\nSHA256 (b c.vmdk) = " + strings.Repeat("01", 32) + "\n")
	if err != nil || m["a.ovf"].Algo != "SHA1" || m["a.ovf"].Digest != strings.Repeat("ab", 20) || m["b c.vmdk"].Algo != "SHA256" {
		t.Fatalf("%+v %v", m, err)
	}
	if _, err := parseManifest("SHA256(a)= abcd"); err == nil {
		t.Fatal("short digest accepted")
	}
}

func FuzzParseOVF(f *testing.F) {
	f.Add([]byte(fmt.Sprintf(sampleOVF, 100, 6)))
	f.Add([]byte(`<Envelope><VirtualSystem id="x"><VirtualHardwareSection><Item><ResourceType>4</ResourceType><VirtualQuantity>1</VirtualQuantity><AllocationUnits>byte * 2^62</AllocationUnits></Item></VirtualHardwareSection></VirtualSystem></Envelope>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := parseOVF(data)
		if err != nil {
			return
		}
		if d.VM.MemoryMiB < 0 || d.VM.CPUs < 0 {
			t.Fatalf("negative resources %+v", d.VM)
		}
		for _, dk := range d.Disks {
			if dk.Capacity < 0 {
				t.Fatalf("negative capacity %+v", dk)
			}
		}
	})
}

func FuzzManifest(f *testing.F) {
	f.Add("SHA256(a.vmdk)= " + strings.Repeat("0", 64))
	f.Add("SHA1(x)=" + strings.Repeat("f", 40) + "\nSHA512(y)= " + strings.Repeat("1", 128))
	f.Fuzz(func(t *testing.T, text string) {
		parseManifest(text)
	})
}
