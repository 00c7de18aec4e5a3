package ovf

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/govisor/govisor/internal/vmimport"
)

func parseFile(t *testing.T, name string) *vmimport.VM {
	t.Helper()
	text, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	return vm
}

func TestParseSamples(t *testing.T) {
	cases := []struct {
		file    string
		name    string
		cpus    int
		mib     int64
		fw      string
		disks   []vmimport.Disk
		nics    []vmimport.NIC
		dropped []string
	}{
		{"testdata/vmware.ovf", "db", 4, 4096, "uefi",
			[]vmimport.Disk{
				{Source: "ovf:/disk/vmdisk1", Chain: []string{"db-disk1.vmdk"}, Capacity: 8 << 30},
				{Source: "ovf:/disk/vmdisk2", Chain: []string{"db-disk2.vmdk", "db-disk2-delta.vmdk"}, Capacity: 1 << 30},
				{Source: "ovf:/disk/vmdisk4", Capacity: 2 << 30},
			},
			[]vmimport.NIC{{Source: "Network adapter 1", MAC: "00:50:56:8a:12:34", Model: "vmxnet3", Network: "VM Network"}},
			[]string{"CD drive CD-ROM 1", "graphics controller Video card", "USB controller USB controller", "VMware Tools settings"}},
		{"testdata/vbox.ovf", "alpine", 1, 512, "uefi",
			[]vmimport.Disk{{Source: "ovf:/disk/vmdisk1", Chain: []string{"alpine-disk001.vmdk"}, Capacity: 4 << 30}},
			[]vmimport.NIC{{Source: "Ethernet adapter on 'NAT'", Model: "e1000", Network: "NAT"}},
			[]string{"sound card sound"}},
	}
	for _, c := range cases {
		vm := parseFile(t, c.file)
		// vmx-13: the guest read vmw:Config uuid swapped; VirtualBox's
		// machine UUID reads as written.
		if want := map[string]string{"testdata/vmware.ovf": "82502c42-30d3-0ecc-c38c-a86cd7c15879", "testdata/vbox.ovf": "9f6e0b3c-5d55-4c2e-8a9d-1c1c2b3a4d5e"}[c.file]; vm.UUID != want {
			t.Errorf("%s: UUID %q, want %q", c.file, vm.UUID, want)
		}
		if wantOS := map[string]string{"testdata/vmware.ovf": "debian10_64Guest"}[c.file]; vm.OS != wantOS {
			t.Errorf("%s: OS %q, want %q", c.file, vm.OS, wantOS)
		}
		if vm.Name != c.name || vm.CPUs != c.cpus || vm.MemoryMiB != c.mib || vm.Firmware != c.fw {
			t.Errorf("%s: got %q %d CPUs %d MiB %s", c.file, vm.Name, vm.CPUs, vm.MemoryMiB, vm.Firmware)
		}
		if !reflect.DeepEqual(vm.Disks, c.disks) {
			t.Errorf("%s: disks\n%+v, want\n%+v", c.file, vm.Disks, c.disks)
		}
		if !reflect.DeepEqual(vm.NICs, c.nics) {
			t.Errorf("%s: NICs %+v, want %+v", c.file, vm.NICs, c.nics)
		}
		if !reflect.DeepEqual(vm.Dropped, c.dropped) {
			t.Errorf("%s: dropped %q, want %q", c.file, vm.Dropped, c.dropped)
		}
	}
}

func TestParseErrors(t *testing.T) {
	env := func(disks, items string) string {
		return `<Envelope><References><File id="f1" href="a.vmdk"/></References><DiskSection>` + disks +
			`</DiskSection><VirtualSystem id="x"><VirtualHardwareSection>` + items + `</VirtualHardwareSection></VirtualSystem></Envelope>`
	}
	cases := map[string]string{
		"not xml":          "<Envelope",
		"no system":        "<Envelope/>",
		"bad cpus":         env("", "<Item><ResourceType>3</ResourceType><VirtualQuantity>-1</VirtualQuantity></Item>"),
		"bad units":        env("", "<Item><ResourceType>4</ResourceType><VirtualQuantity>1</VirtualQuantity><AllocationUnits>furlongs</AllocationUnits></Item>"),
		"overflow":         env(`<Disk diskId="d" fileRef="f1" capacity="9223372036854775807" capacityAllocationUnits="byte * 2^10"/>`, ""),
		"missing file":     env(`<Disk diskId="d" fileRef="f9" capacity="1"/>`, ""),
		"parent loop":      env(`<Disk diskId="d" fileRef="f1" capacity="1" parentRef="e"/><Disk diskId="e" fileRef="f1" capacity="1" parentRef="d"/>`, `<Item><ResourceType>17</ResourceType><HostResource>ovf:/disk/d</HostResource></Item>`),
		"missing parent":   env(`<Disk diskId="d" fileRef="f1" capacity="1" parentRef="z"/>`, ""),
		"duplicate disk":   env(`<Disk diskId="d" capacity="1"/><Disk diskId="d" capacity="1"/>`, ""),
		"bad mac":          env("", "<Item><ResourceType>10</ResourceType><Address>nope</Address></Item>"),
		"bzip2 compressed": `<Envelope><References><File id="f1" href="a.vmdk" compression="bzip2"/></References><VirtualSystem id="x"/></Envelope>`,
	}
	for name, text := range cases {
		if _, err := Parse([]byte(text)); !errors.Is(err, vmimport.ErrBadConfig) {
			t.Errorf("%s: error %v, want ErrBadConfig", name, err)
		}
	}
}

// TestMarshalRoundTrip writes a descriptor and reads it back.
func TestMarshalRoundTrip(t *testing.T) {
	vm := &vmimport.VM{Name: `a<b>&"c"`, CPUs: 3, MemoryMiB: 768, Firmware: vmimport.FirmwareUEFI, UUID: "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
		NICs: []vmimport.NIC{{MAC: "52:54:00:12:34:56", Network: "lan"}, {}}}
	text := Marshal(vm, []FileDisk{{Href: "x-disk1.vmdk", Size: 4096, Capacity: 1 << 30}, {Href: "x-disk2.vmdk", Size: 512, Capacity: 1 << 20}})
	got, err := Parse(text)
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if got.Name != vm.Name || got.CPUs != 3 || got.MemoryMiB != 768 || got.Firmware != vmimport.FirmwareUEFI || got.UUID != vm.UUID {
		t.Errorf("got %+v", got)
	}
	wantDisks := []vmimport.Disk{
		{Source: "ovf:/disk/vmdisk1", Chain: []string{"x-disk1.vmdk"}, Capacity: 1 << 30},
		{Source: "ovf:/disk/vmdisk2", Chain: []string{"x-disk2.vmdk"}, Capacity: 1 << 20},
	}
	if !reflect.DeepEqual(got.Disks, wantDisks) {
		t.Errorf("disks %+v", got.Disks)
	}
	if len(got.NICs) != 2 || got.NICs[0].MAC != "52:54:00:12:34:56" || got.NICs[0].Network != "lan" || got.NICs[1].MAC != "" {
		t.Errorf("NICs %+v", got.NICs)
	}
	if !strings.Contains(string(text), StreamOptimizedFormat) {
		t.Error("the disks are not declared streamOptimized")
	}
	vm.Firmware, vm.UUID = vmimport.FirmwareBIOS, ""
	text = Marshal(vm, nil)
	if got, _ := Parse(text); got == nil || got.Firmware != vmimport.FirmwareBIOS || got.UUID != "" {
		t.Errorf("BIOS without a UUID did not round-trip: %+v", got)
	}
	if strings.Contains(string(text), `vmw:key="uuid"`) {
		t.Error("a VM without a UUID exports one")
	}
}

// TestParseUUID checks which UUID a descriptor gives the VM.
func TestParseUUID(t *testing.T) {
	vmware := func(os, types, config string) string {
		return `<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf">
  <VirtualSystem ovf:id="v"><OperatingSystemSection ovf:id="1" vmw:osType="` + os + `"/>
    <VirtualHardwareSection><System><vssd:VirtualSystemType>` + types + `</vssd:VirtualSystemType></System>` + config + `</VirtualHardwareSection>
  </VirtualSystem></Envelope>`
	}
	const uuid = `<vmw:Config ovf:required="false" vmw:key="uuid" vmw:value="423aae68-f1f4-2096-7462-e05905ba0b71"/>`
	vbox := func(machine string) string {
		return `<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:vbox="http://www.virtualbox.org/ovf/machine">
  <VirtualSystem ovf:id="b"><VirtualHardwareSection/>` + machine + `</VirtualSystem></Envelope>`
	}
	cases := []struct {
		name, text, want string
		dropped          bool
	}{
		// govmomi's ovf/fixtures/external/FlexibleNicType: vmx-07,
		// SMBIOS 2.4, read in order by Linux.
		{"vmx-07", vmware("ubuntu64Guest", "vmx-07", uuid), "423aae68-f1f4-2096-7462-e05905ba0b71", false},
		{"vmx-07 on Windows", vmware("windows7Server64Guest", "vmx-07", uuid), "68ae3a42-f4f1-9620-7462-e05905ba0b71", false},
		{"several types", vmware("ubuntu64Guest", "vmx-10 vmx-13", uuid), "68ae3a42-f4f1-9620-7462-e05905ba0b71", false},
		{"vmx-17 kept at SMBIOS 2.4", vmware("other3xLinux64Guest", "vmx-17",
			uuid+`<vmw:ExtraConfig ovf:required="false" vmw:key="acpi.smbiosVersion2.7" vmw:value="FALSE"/>`), "423aae68-f1f4-2096-7462-e05905ba0b71", false},
		{"no uuid", vmware("ubuntu64Guest", "vmx-13", ""), "", false},
		{"bad uuid", vmware("ubuntu64Guest", "vmx-13", `<vmw:Config vmw:key="uuid" vmw:value="423aae68"/>`), "", true},
		{"vbox hardware uuid", vbox(`<vbox:Machine uuid="{9f6e0b3c-5d55-4c2e-8a9d-1c1c2b3a4d5e}" name="b"><Hardware uuid="{5e0f1d2c-3b4a-4958-8677-a6b5c4d3e2f1}"/></vbox:Machine>`),
			"5e0f1d2c-3b4a-4958-8677-a6b5c4d3e2f1", false},
		{"vbox override", vbox(`<vbox:Machine uuid="{9f6e0b3c-5d55-4c2e-8a9d-1c1c2b3a4d5e}" name="b"><ExtraData>
			<ExtraDataItem name="VBoxInternal/Devices/pcbios/0/Config/DmiSystemUuid" value="00112233-4455-6677-8899-aabbccddeeff"/></ExtraData></vbox:Machine>`),
			"00112233-4455-6677-8899-aabbccddeeff", false},
		{"vbox Windows", vbox(`<vbox:Machine uuid="{9f6e0b3c-5d55-4c2e-8a9d-1c1c2b3a4d5e}" name="b" OSType="Windows2019_64"/>`), "3c0b6e9f-555d-2e4c-8a9d-1c1c2b3a4d5e", false},
		{"vbox bad uuid", vbox(`<vbox:Machine uuid="{9f6e0b3c}" name="b"/>`), "", true},
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
	if v := vmxVersion("vmx-07, vmx-13 vmx-x xen-3.0-x86_64"); v != 13 {
		t.Errorf("vmxVersion: %d", v)
	}
}

func TestUnits(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"byte", 1, true}, {"", 1, true}, {"byte * 2^20", 1 << 20, true}, {"byte*2^30", 1 << 30, true},
		{"MegaBytes", 1 << 20, true}, {"GigaBytes", 1 << 30, true}, {"byte * 10^3", 1000, true},
		{"byte * 2^64", 0, false}, {"hertz * 10^6", 0, false}, {"furlongs", 0, false},
	} {
		got, err := units(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("units(%q) = %d, %v", tc.in, got, err)
		}
	}
	if _, err := scaled("9223372036854775807", "byte * 2^20"); err == nil {
		t.Error("overflow accepted")
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"testdata/vmware.ovf", "testdata/vbox.ovf"} {
		if text, err := os.ReadFile(name); err == nil {
			f.Add(text)
		}
	}
	// Memory in units that overflow an int64 of MiB.
	f.Add([]byte(`<Envelope><VirtualSystem id="x"><VirtualHardwareSection><Item><ResourceType>4</ResourceType><VirtualQuantity>1</VirtualQuantity><AllocationUnits>byte * 2^62</AllocationUnits></Item></VirtualHardwareSection></VirtualSystem></Envelope>`))
	f.Add([]byte(`<Envelope><VirtualSystem id="x"><VirtualHardwareSection><System><VirtualSystemType>vmx-13</VirtualSystemType></System><Config key="uuid" value="00112233-4455-6677-8899-aabbccddeeff"/><ExtraConfig key="acpi.smbiosVersion2.7" value="FALSE"/></VirtualHardwareSection><Machine uuid="{x}"><Hardware uuid="{00112233-4455-6677-8899-aabbccddeeff}"/><ExtraData><ExtraDataItem name="VBoxInternal/Devices/pcbios/0/Config/DmiSystemUuid" value="y"/></ExtraData></Machine></VirtualSystem></Envelope>`))
	f.Fuzz(func(t *testing.T, text []byte) {
		vm, err := Parse(text)
		if err != nil {
			if !errors.Is(err, vmimport.ErrBadConfig) {
				t.Fatalf("error %v is not ErrBadConfig", err)
			}
			return
		}
		if vm.CPUs < 1 || vm.MemoryMiB < 0 || len(vm.Disks) > vmimport.MaxDisks || vm.Name == "" {
			t.Fatalf("parsed VM breaks the limits: %+v", vm)
		}
		if _, ok := vmimport.ParseUUID(vm.UUID); vm.UUID != "" && !ok {
			t.Fatalf("UUID %q", vm.UUID)
		}
		for _, d := range vm.Disks {
			if len(d.Chain) > vmimport.MaxChain || d.Capacity < 0 {
				t.Fatalf("disk %+v", d)
			}
		}
	})
}
