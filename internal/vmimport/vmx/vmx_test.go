package vmx

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/govisor/govisor/internal/vmimport"
)

func TestParseSample(t *testing.T) {
	text, err := os.ReadFile("testdata/web01.vmx")
	if err != nil {
		t.Fatal(err)
	}
	vm, err := Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	// virtualHW.version 19: SMBIOS 2.7, so the guest read uuid.bios with
	// its first three fields swapped (vmware/pyvmomi#688 shows this UUID
	// so on ESXi 6.5).
	if vm.UUID != "5c241f42-a87f-fa60-6af6-a46351ced0eb" || vm.OS != "debian11-64" {
		t.Errorf("UUID %q, OS %q", vm.UUID, vm.OS)
	}
	if vm.Name != `web01 "prod"` || vm.CPUs != 2 || vm.MemoryMiB != 2048 || vm.Firmware != vmimport.FirmwareUEFI {
		t.Errorf("got %q %d CPUs %d MiB %s", vm.Name, vm.CPUs, vm.MemoryMiB, vm.Firmware)
	}
	wantDisks := []vmimport.Disk{
		{Source: "scsi0:0", Chain: []string{"web01.vmdk"}},
		{Source: "sata0:1", Chain: []string{"web01_1-000001.vmdk"}},
	}
	if !reflect.DeepEqual(vm.Disks, wantDisks) {
		t.Errorf("disks %+v, want %+v", vm.Disks, wantDisks)
	}
	wantNICs := []vmimport.NIC{
		{Source: "ethernet0", MAC: "00:0c:29:3e:5a:01", Model: "vmxnet3", Network: "VM Network"},
		{Source: "ethernet1", MAC: "00:50:56:00:ab:cd", Model: "e1000"},
	}
	if !reflect.DeepEqual(vm.NICs, wantNICs) {
		t.Errorf("NICs %+v, want %+v", vm.NICs, wantNICs)
	}
	dropped := strings.Join(vm.Dropped, "\n")
	for _, want := range []string{"cdrom-image \"debian-12.iso\"", "sound card", "USB controller", "USB 2 controller", "VMCI device", "VMware Tools settings"} {
		if !strings.Contains(dropped, want) {
			t.Errorf("dropped lacks %q:\n%s", want, dropped)
		}
	}
	if strings.Contains(dropped, "floppy") || strings.Contains(dropped, "old.vmdk") {
		t.Errorf("dropped lists an absent device:\n%s", dropped)
	}
	if !strings.Contains(strings.Join(vm.Mapped, "\n"), "scsi0:0 (pvscsi) web01.vmdk -> virtio-blk vda") {
		t.Errorf("mapped: %q", vm.Mapped)
	}
}

func TestParse(t *testing.T) {
	cases := []struct {
		name, text string
		want       *vmimport.VM // nil: only the error matters
		err        bool
	}{
		{"defaults", `displayName = "a"`, &vmimport.VM{Name: "a", CPUs: 1, Firmware: "bios"}, false},
		{"bios", "displayName = \"a\"\r\nfirmware = \"bios\"\r\nmemsize = \"512\"\r\n", &vmimport.VM{Name: "a", CPUs: 1, MemoryMiB: 512, Firmware: "bios"}, false},
		{"ide disk without controller key", "ide0:0.present = \"TRUE\"\nide0:0.fileName = \"d.vmdk\"\n",
			&vmimport.VM{CPUs: 1, Firmware: "bios", Disks: []vmimport.Disk{{Source: "ide0:0", Chain: []string{"d.vmdk"}}},
				Mapped: []string{"ide0:0 (ide) d.vmdk -> virtio-blk vda"}}, false},
		{"controller absent", "scsi0.present = \"FALSE\"\nscsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"d.vmdk\"\n", &vmimport.VM{CPUs: 1, Firmware: "bios"}, false},
		{"no equals", "displayName \"a\"", nil, true},
		{"bad cpus", `numvcpus = "many"`, nil, true},
		{"zero cpus", `numvcpus = "0"`, nil, true},
		{"huge memory", `memsize = "99999999999"`, nil, true},
		{"bad mac", "ethernet0.present = \"TRUE\"\nethernet0.address = \"zz\"\nethernet0.addressType = \"static\"", nil, true},
	}
	for _, c := range cases {
		vm, err := Parse([]byte(c.text))
		if (err != nil) != c.err {
			t.Errorf("%s: error %v, want error %v", c.name, err, c.err)
			continue
		}
		if err != nil && !errors.Is(err, vmimport.ErrBadConfig) {
			t.Errorf("%s: error %v is not ErrBadConfig", c.name, err)
		}
		if c.want != nil && !reflect.DeepEqual(vm, c.want) {
			t.Errorf("%s: got %+v, want %+v", c.name, vm, c.want)
		}
	}
}

// TestParseUUID checks which UUID each kind of VMware VM keeps.
func TestParseUUID(t *testing.T) {
	const bios = `uuid.bios = "56 4d a6 d2 17 06 63 43-dc 2d 99 59 b5 33 a7 b3"` + "\n"
	cases := []struct {
		name, text, want string
		dropped          bool
	}{
		// SMBIOS 2.4: a Linux guest reads the bytes in order
		// (yumaojun03/dmidecode#22 shows this UUID so).
		{"hardware 11", bios + `virtualHW.version = "11"`, "564da6d2-1706-6343-dc2d-9959b533a7b3", false},
		{"no hardware version", bios, "564da6d2-1706-6343-dc2d-9959b533a7b3", false},
		{"hardware 13", bios + `virtualHW.version = "13"`, "d2a64d56-0617-4363-dc2d-9959b533a7b3", false},
		{"hardware 19 kept at SMBIOS 2.4", bios + "virtualHW.version = \"19\"\nacpi.smbiosVersion2.7 = \"FALSE\"", "564da6d2-1706-6343-dc2d-9959b533a7b3", false},
		// Windows reads the first three fields little-endian on any
		// SMBIOS version.
		{"Windows on hardware 11", bios + "virtualHW.version = \"11\"\nguestOS = \"windows9srv-64\"", "d2a64d56-0617-4363-dc2d-9959b533a7b3", false},
		{"bad hardware version", bios + `virtualHW.version = "x"`, "564da6d2-1706-6343-dc2d-9959b533a7b3", false},
		{"no uuid.bios", `uuid.location = "56 4d a6 d2 17 06 63 43-dc 2d 99 59 b5 33 a7 b3"`, "", false},
		{"short uuid.bios", `uuid.bios = "56 4d a6 d2 17 06 63 43-dc 2d 99 59 b5 33 a7"`, "", true},
		{"junk uuid.bios", `uuid.bios = "not a uuid at all, not at all, no"`, "", true},
		{"zero uuid.bios", `uuid.bios = "00 00 00 00 00 00 00 00-00 00 00 00 00 00 00 00"`, "", true},
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
	if text, err := os.ReadFile("testdata/web01.vmx"); err == nil {
		f.Add(text)
	}
	f.Add([]byte("scsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"|22x.vmdk\"\nethernet0.present = \"TRUE\"\n"))
	f.Add([]byte("uuid.bios = \"56 4d a6 d2 17 06 63 43-dc 2d 99 59 b5 33 a7 b|33\"\nvirtualHW.version = \"13\"\nacpi.smbiosVersion2.7 = \"TRUE\"\n"))
	f.Fuzz(func(t *testing.T, text []byte) {
		vm, err := Parse(text)
		if err != nil {
			if !errors.Is(err, vmimport.ErrBadConfig) {
				t.Fatalf("error %v is not ErrBadConfig", err)
			}
			return
		}
		if vm.CPUs < 1 || len(vm.Disks) > vmimport.MaxDisks || (vm.Firmware != "bios" && vm.Firmware != "uefi") {
			t.Fatalf("parsed VM breaks the limits: %+v", vm)
		}
		for _, n := range vm.NICs {
			if n.MAC != "" && len(n.MAC) != 17 {
				t.Fatalf("MAC %q", n.MAC)
			}
		}
		if _, ok := vmimport.ParseUUID(vm.UUID); vm.UUID != "" && !ok {
			t.Fatalf("UUID %q", vm.UUID)
		}
	})
}
