package vmimport

import (
	"strings"
	"testing"
)

func TestParseUUID(t *testing.T) {
	for _, c := range []struct {
		in, want string // want "": not a UUID
	}{
		{"3b5e2f7a-9c41-4d0e-8f2a-6e1d2c3b4a59", "3b5e2f7a-9c41-4d0e-8f2a-6e1d2c3b4a59"},
		{"{9B1E3C5D-2F4A-4B6C-8D7E-0F1A2B3C4D5E}", "9b1e3c5d-2f4a-4b6c-8d7e-0f1a2b3c4d5e"},
		{" 422c5082-d330-cc0e-c38c-a86cd7c15879 ", "422c5082-d330-cc0e-c38c-a86cd7c15879"},
		{"3b5e2f7a9c414d0e8f2a6e1d2c3b4a59", ""}, // no dashes
		{"3b5e2f7a-9c41-4d0e-8f2a-6e1d2c3b4a5", ""},
		{"3b5e2f7a-9c41-4d0e-8f2a-6e1d2c3b4a5g", ""},
		{"3b5e2f7a9-c41-4d0e-8f2a-6e1d2c3b4a59", ""},
		{"{3b5e2f7a-9c41-4d0e-8f2a-6e1d2c3b4a59", ""},
		{"", ""},
	} {
		u, ok := ParseUUID(c.in)
		if ok != (c.want != "") || (ok && FormatUUID(u) != c.want) {
			t.Errorf("ParseUUID(%q) = %s, %v; want %q", c.in, FormatUUID(u), ok, c.want)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"56 4d a6 d2 17 06 63 43-dc 2d 99 59 b5 33 a7 b3", "564da6d2-1706-6343-dc2d-9959b533a7b3"},
		{"42 1F 24 5C 7F A8 60 FA-6A F6 A4 63 51 CE D0 EB", "421f245c-7fa8-60fa-6af6-a46351ced0eb"},
		{"423aae68-f1f4-2096-7462-e05905ba0b71", "423aae68-f1f4-2096-7462-e05905ba0b71"},
		{"56 4d a6 d2 17 06 63 43-dc 2d 99 59 b5 33 a7", ""},
		{"56 4d a6 d2 17 06 63 43-dc 2d 99 59 b5 33 a7 zz", ""},
		{strings.Repeat("0 ", 100), ""},
	} {
		u, ok := ParseHexBytes(c.in)
		if ok != (c.want != "") || (ok && FormatUUID(u) != c.want) {
			t.Errorf("ParseHexBytes(%q) = %s, %v; want %q", c.in, FormatUUID(u), ok, c.want)
		}
	}
}

// TestGuestViews checks the byte orders against what guests showed on
// real machines: a Linux guest on VMware hardware 13 (vmware/pyvmomi#688:
// vCenter's UUID 421F245C-7FA8-60FA-... read as 5C241F42-A87F-FA60-...), a
// Linux guest on SMBIOS 2.4 VMware (yumaojun03/dmidecode#22: serial
// "VMware-56 4d a6 d2 17 06 63 43-dc 2d ..." and UUID 564da6d2-1706-...).
func TestGuestViews(t *testing.T) {
	for _, c := range []struct {
		raw            string
		wire           bool
		linux, windows string
	}{
		{"42 1f 24 5c 7f a8 60 fa-6a f6 a4 63 51 ce d0 eb", true, "5c241f42-a87f-fa60-6af6-a46351ced0eb", "5c241f42-a87f-fa60-6af6-a46351ced0eb"},
		{"56 4d a6 d2 17 06 63 43-dc 2d 99 59 b5 33 a7 b3", false, "564da6d2-1706-6343-dc2d-9959b533a7b3", "d2a64d56-0617-4363-dc2d-9959b533a7b3"},
	} {
		raw, _ := ParseHexBytes(c.raw)
		l, w := SMBIOSUUID{Raw: raw, Wire: c.wire}.GuestViews()
		if l != c.linux || w != c.windows {
			t.Errorf("%s (wire %v): Linux %s, Windows %s; want %s, %s", c.raw, c.wire, l, w, c.linux, c.windows)
		}
	}
	u, _ := ParseUUID("00112233-4455-6677-8899-aabbccddeeff")
	// DSP0134 7.2.1's example: {00112233-4455-6677-8899-AABBCCDDEEFF} is
	// stored 33 22 11 00 55 44 77 66 88 99 AA BB CC DD EE FF.
	if got := SwapUUIDFields(u); FormatUUID(got) != "33221100-5544-7766-8899-aabbccddeeff" || SwapUUIDFields(got) != u {
		t.Errorf("SwapUUIDFields: %s", FormatUUID(got))
	}
}

func TestKeepUUID(t *testing.T) {
	raw, _ := ParseHexBytes("56 4d a6 d2 17 06 63 43-dc 2d 99 59 b5 33 a7 b3")
	s := SMBIOSUUID{Field: "uuid.bios", Raw: raw, Why: "virtual hardware 11: SMBIOS 2.4"}
	linux := &VM{OS: "debian11-64"}
	linux.KeepUUID(s)
	if linux.UUID != "564da6d2-1706-6343-dc2d-9959b533a7b3" || len(linux.Mapped) != 1 ||
		linux.Mapped[0] != "uuid.bios (virtual hardware 11: SMBIOS 2.4) -> SMBIOS UUID 564da6d2-1706-6343-dc2d-9959b533a7b3, as a Linux guest's product_uuid read it (a Windows guest read d2a64d56-0617-4363-dc2d-9959b533a7b3: give the VM that uuid to keep it)" {
		t.Errorf("Linux guest: %q, %q", linux.UUID, linux.Mapped)
	}
	win := &VM{OS: "windows9srv-64"}
	win.KeepUUID(s)
	if win.UUID != "d2a64d56-0617-4363-dc2d-9959b533a7b3" || !strings.Contains(win.Mapped[0], "a Linux guest's product_uuid read 564da6d2-") {
		t.Errorf("Windows guest: %q, %q", win.UUID, win.Mapped)
	}
	s.Wire = true
	both := &VM{}
	both.KeepUUID(s)
	if both.UUID != "d2a64d56-0617-4363-dc2d-9959b533a7b3" || strings.Contains(both.Mapped[0], "Windows") {
		t.Errorf("SMBIOS 2.6+: %q, %q", both.UUID, both.Mapped)
	}
	for _, raw := range [][16]byte{{}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}} {
		vm := &VM{}
		vm.KeepUUID(SMBIOSUUID{Field: "f", Raw: raw})
		if vm.UUID != "" || len(vm.Dropped) != 1 || len(vm.Mapped) != 0 {
			t.Errorf("%x: %+v", raw, vm)
		}
	}
	vm := &VM{}
	vm.BadUUID("uuid.bios", "zz")
	if vm.UUID != "" || len(vm.Dropped) != 1 || vm.Dropped[0] != `uuid.bios "zz": not a UUID (the VM gets a new one)` {
		t.Errorf("BadUUID: %+v", vm)
	}
	bad := &VM{UUID: "nope"}
	if err := bad.Check(); err == nil {
		t.Error("Check takes a malformed UUID")
	}
}

func TestVMwareUUID(t *testing.T) {
	for _, c := range []struct {
		hw       int
		smbios27 string
		wire     bool
	}{
		{0, "", false}, {4, "", false}, {11, "", false}, {12, "", false}, {13, "", true}, {21, "", true},
		{13, "FALSE", false}, {19, "false", false}, {11, "TRUE", true},
	} {
		if s := VMwareUUID("uuid.bios", [16]byte{1}, c.hw, c.smbios27); s.Wire != c.wire || s.Why == "" {
			t.Errorf("hardware %d, acpi.smbiosVersion2.7 %q: %+v, want wire %v", c.hw, c.smbios27, s, c.wire)
		}
	}
}

func TestKeepVBoxUUID(t *testing.T) {
	const machine, hardware, dmi = "{3b5e2f7a-9c41-4d0e-8f2a-6e1d2c3b4a59}", "{0a1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3}", "11223344-5566-4778-899a-abbccddeeff0"
	for _, c := range []struct {
		name, fw, machine, hardware string
		extra                       map[string]string
		want                        string
		dropped                     int
	}{
		{"machine", FirmwareBIOS, machine, "", nil, "3b5e2f7a-9c41-4d0e-8f2a-6e1d2c3b4a59", 0},
		{"hardware", FirmwareBIOS, machine, hardware, nil, "0a1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3", 0},
		{"override bios", FirmwareBIOS, machine, "", map[string]string{"VBoxInternal/Devices/pcbios/0/Config/DmiSystemUuid": dmi}, dmi, 0},
		{"override of the other firmware", FirmwareUEFI, machine, "", map[string]string{"VBoxInternal/Devices/pcbios/0/Config/DmiSystemUuid": dmi}, "3b5e2f7a-9c41-4d0e-8f2a-6e1d2c3b4a59", 0},
		{"override efi", FirmwareUEFI, machine, "", map[string]string{"VBoxInternal/Devices/efi/0/Config/DmiSystemUuid": dmi}, dmi, 0},
		{"bad override", FirmwareBIOS, machine, "", map[string]string{"VBoxInternal/Devices/pcbios/0/Config/DmiSystemUuid": "x"}, "3b5e2f7a-9c41-4d0e-8f2a-6e1d2c3b4a59", 1},
		{"UuidLe", FirmwareUEFI, machine, "", map[string]string{"VBoxInternal/Devices/efi/0/Config/UuidLe": "1"}, "7a2f5e3b-419c-0e4d-8f2a-6e1d2c3b4a59", 0},
		{"bad machine uuid", FirmwareBIOS, "{3b5e2f7a}", "", nil, "", 1},
		{"none", FirmwareBIOS, "", "", nil, "", 0},
	} {
		vm := &VM{Firmware: c.fw}
		vm.KeepVBoxUUID(c.machine, c.hardware, c.extra)
		if vm.UUID != c.want || len(vm.Dropped) != c.dropped {
			t.Errorf("%s: UUID %q, dropped %q; want %q, %d dropped", c.name, vm.UUID, vm.Dropped, c.want, c.dropped)
		}
	}
	// A Windows guest of VirtualBox (SMBIOS 2.5, big-endian) read it
	// swapped.
	vm := &VM{Firmware: FirmwareBIOS, OS: "Windows10_64"}
	vm.KeepVBoxUUID(machine, "", nil)
	if vm.UUID != "7a2f5e3b-419c-0e4d-8f2a-6e1d2c3b4a59" {
		t.Errorf("Windows guest: %q", vm.UUID)
	}
}
