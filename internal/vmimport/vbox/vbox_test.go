package vbox

import (
	"errors"
	"os"
	"reflect"
	"testing"

	"github.com/govisor/govisor/internal/vmimport"
)

func TestParseSample(t *testing.T) {
	text, err := os.ReadFile("testdata/deb.vbox")
	if err != nil {
		t.Fatal(err)
	}
	vm, err := Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	if vm.Name != "deb" || vm.CPUs != 2 || vm.MemoryMiB != 1536 || vm.Firmware != vmimport.FirmwareUEFI {
		t.Errorf("got %q %d CPUs %d MiB %s", vm.Name, vm.CPUs, vm.MemoryMiB, vm.Firmware)
	}
	// SMBIOS 2.5, UUID stored big-endian: a Linux guest read the
	// machine's UUID as the file writes it.
	if vm.UUID != "3b5e2f7a-9c41-4d0e-8f2a-6e1d2c3b4a59" || vm.OS != "Debian_64" {
		t.Errorf("UUID %q, OS %q", vm.UUID, vm.OS)
	}
	wantDisks := []vmimport.Disk{
		{Source: "SATA port 0 device 0", Chain: []string{"deb.vdi", "Snapshots/{a1b2c3d4-0000-4000-8000-000000000002}.vdi", "Snapshots/{a1b2c3d4-0000-4000-8000-000000000003}.vdi"}},
		{Source: "SATA port 1 device 0", Chain: []string{"data.vmdk"}},
	}
	if !reflect.DeepEqual(vm.Disks, wantDisks) {
		t.Errorf("disks\n%+v, want\n%+v", vm.Disks, wantDisks)
	}
	wantNICs := []vmimport.NIC{
		{Source: "Adapter 0", MAC: "08:00:27:1a:2b:3c", Model: "82540EM", Network: "NAT"},
		{Source: "Adapter 1", MAC: "08:00:27:aa:bb:cc", Model: "virtio", Network: "bridged eth0"},
	}
	if !reflect.DeepEqual(vm.NICs, wantNICs) {
		t.Errorf("NICs %+v, want %+v", vm.NICs, wantNICs)
	}
	wantDropped := []string{"SATA port 2 device 0: dvd drive", "audio adapter Pulse", "USB controller OHCI", "shared folder home"}
	if !reflect.DeepEqual(vm.Dropped, wantDropped) {
		t.Errorf("dropped %q, want %q", vm.Dropped, wantDropped)
	}
}

func TestParse(t *testing.T) {
	machine := func(inner string) string {
		return `<VirtualBox><Machine name="m">` + inner + `</Machine></VirtualBox>`
	}
	cases := []struct {
		name, text string
		want       *vmimport.VM
	}{
		{"minimal", machine(""), &vmimport.VM{Name: "m", CPUs: 1, Firmware: "bios"}},
		{"VirtualBox 7 layout", machine(`<MediaRegistry><HardDisks><HardDisk uuid="u1" location="a.vdi"/></HardDisks></MediaRegistry>
			<Hardware><Firmware type="BIOS"/><StorageControllers><StorageController name="NVMe" type="NVMe">
			<AttachedDevice type="HardDisk" port="0" device="0"><Image uuid="{U1}"/></AttachedDevice></StorageController></StorageControllers></Hardware>`),
			&vmimport.VM{Name: "m", CPUs: 1, Firmware: "bios", Disks: []vmimport.Disk{{Source: "NVMe port 0 device 0", Chain: []string{"a.vdi"}}},
				Mapped: []string{"NVMe port 0 device 0 (NVMe) a.vdi -> virtio-blk vda"}}},
		{"no name", `<VirtualBox><Machine/></VirtualBox>`, nil},
		{"bad cpu", machine(`<Hardware><CPU count="x"/></Hardware>`), nil},
		{"bad ram", machine(`<Hardware><Memory RAMSize="-4"/></Hardware>`), nil},
		{"unknown medium", machine(`<StorageControllers><StorageController name="S"><AttachedDevice type="HardDisk"><Image uuid="z"/></AttachedDevice></StorageController></StorageControllers>`), nil},
		{"duplicate medium", machine(`<MediaRegistry><HardDisks><HardDisk uuid="u" location="a"/><HardDisk uuid="u" location="b"/></HardDisks></MediaRegistry>`), nil},
		{"medium without location", machine(`<MediaRegistry><HardDisks><HardDisk uuid="u"/></HardDisks></MediaRegistry>`), nil},
		{"bad mac", machine(`<Hardware><Network><Adapter slot="0" enabled="true" MACAddress="0800"/></Network></Hardware>`), nil},
		{"not xml", `<VirtualBox`, nil},
	}
	for _, c := range cases {
		vm, err := Parse([]byte(c.text))
		if c.want == nil {
			if !errors.Is(err, vmimport.ErrBadConfig) {
				t.Errorf("%s: error %v, want ErrBadConfig", c.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !reflect.DeepEqual(vm, c.want) {
			t.Errorf("%s: got %+v, want %+v", c.name, vm, c.want)
		}
	}
}

// TestParseUUID checks the UUID a VirtualBox machine keeps.
func TestParseUUID(t *testing.T) {
	machine := func(attrs, inner string) string {
		return `<VirtualBox><Machine name="m" uuid="{3b5e2f7a-9c41-4d0e-8f2a-6e1d2c3b4a59}" ` + attrs + `>` + inner + `</Machine></VirtualBox>`
	}
	cases := []struct {
		name, text, want string
		dropped          bool
	}{
		{"machine", machine(`OSType="Ubuntu_64"`, ""), "3b5e2f7a-9c41-4d0e-8f2a-6e1d2c3b4a59", false},
		{"Windows guest", machine(`OSType="Windows10_64"`, ""), "7a2f5e3b-419c-0e4d-8f2a-6e1d2c3b4a59", false},
		// A clone that kept its source's hardware UUID.
		{"hardware uuid", machine("", `<Hardware uuid="{c0ffee00-1234-4abc-8def-0123456789ab}"><Memory RAMSize="64"/></Hardware>`), "c0ffee00-1234-4abc-8def-0123456789ab", false},
		// VBoxManage setextradata VM VBoxInternal/Devices/efi/0/Config/DmiSystemUuid ...
		{"DmiSystemUuid", machine("", `<ExtraData><ExtraDataItem name="GUI/LastCloseAction" value="PowerOff"/>
			<ExtraDataItem name="VBoxInternal/Devices/efi/0/Config/DmiSystemUuid" value="9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"/></ExtraData>
			<Hardware><Firmware type="EFI"/></Hardware>`), "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", false},
		{"bad machine uuid", `<VirtualBox><Machine name="m" uuid="{3b5e2f7a-9c41}"/></VirtualBox>`, "", true},
		{"no uuid", `<VirtualBox><Machine name="m"/></VirtualBox>`, "", false},
	}
	for _, c := range cases {
		vm, err := Parse([]byte(c.text))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if vm.UUID != c.want || (len(vm.Dropped) == 1) != c.dropped {
			t.Errorf("%s: UUID %q, dropped %q; want %q", c.name, vm.UUID, vm.Dropped, c.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	if text, err := os.ReadFile("testdata/deb.vbox"); err == nil {
		f.Add(text)
	}
	f.Add([]byte(`<VirtualBox><Machine name="m" uuid="{x}"><Hardware uuid="{0a1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3}"/><ExtraData><ExtraDataItem name="VBoxInternal/Devices/pcbios/0/Config/DmiSystemUuid" value="zz"/></ExtraData></Machine></VirtualBox>`))
	f.Fuzz(func(t *testing.T, text []byte) {
		vm, err := Parse(text)
		if err != nil {
			if !errors.Is(err, vmimport.ErrBadConfig) {
				t.Fatalf("error %v is not ErrBadConfig", err)
			}
			return
		}
		if vm.CPUs < 1 || len(vm.Disks) > vmimport.MaxDisks || len(vm.NICs) > vmimport.MaxNICs {
			t.Fatalf("parsed VM breaks the limits: %+v", vm)
		}
		if _, ok := vmimport.ParseUUID(vm.UUID); vm.UUID != "" && !ok {
			t.Fatalf("UUID %q", vm.UUID)
		}
		for _, d := range vm.Disks {
			if len(d.Chain) == 0 || len(d.Chain) > vmimport.MaxChain {
				t.Fatalf("disk %+v", d)
			}
		}
	})
}
