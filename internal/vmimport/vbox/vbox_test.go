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

func FuzzParse(f *testing.F) {
	if text, err := os.ReadFile("testdata/deb.vbox"); err == nil {
		f.Add(text)
	}
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
		for _, d := range vm.Disks {
			if len(d.Chain) == 0 || len(d.Chain) > vmimport.MaxChain {
				t.Fatalf("disk %+v", d)
			}
		}
	})
}
