package hyperv

import (
	"encoding/binary"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/govisor/govisor/internal/vmimport"
)

func sample(t testing.TB) []byte {
	text, err := os.ReadFile("testdata/web.xml")
	if err != nil {
		t.Fatal(err)
	}
	// Hyper-V writes UTF-16 with a byte order mark; the sample is kept in
	// UTF-8 for reading and encoded here.
	u := utf16.Encode([]rune(string(text)))
	b := []byte{0xff, 0xfe}
	for _, c := range u {
		b = binary.LittleEndian.AppendUint16(b, c)
	}
	return b
}

func TestParseSample(t *testing.T) {
	vm, err := Parse(sample(t))
	if err != nil {
		t.Fatal(err)
	}
	if vm.Name != "web" || vm.CPUs != 2 || vm.MemoryMiB != 2048 || vm.Firmware != vmimport.FirmwareBIOS {
		t.Errorf("got %q %d CPUs %d MiB %s", vm.Name, vm.CPUs, vm.MemoryMiB, vm.Firmware)
	}
	wantDisks := []vmimport.Disk{
		{Source: "IDE 0:0", Chain: []string{`D:\Hyper-V\web\Virtual Hard Disks\web_8F2A.avhdx`}},
		{Source: "SCSI 0:0", Chain: []string{`D:\Hyper-V\web\Virtual Hard Disks\data.vhdx`}},
	}
	if !reflect.DeepEqual(vm.Disks, wantDisks) {
		t.Errorf("disks %+v", vm.Disks)
	}
	// Generation 1: its BIOS reports SMBIOS before 2.6, so Linux read the
	// BIOS GUID with its first three fields swapped; properties/global_id
	// (the VM's ID) is not the UUID.
	if vm.UUID != "142b0a6f-3d8c-5f4e-9a1b-2c3d4e5f6071" {
		t.Errorf("UUID %q", vm.UUID)
	}
	wantNICs := []vmimport.NIC{{Source: "Network Adapter", MAC: "00:15:5d:01:02:0a", Model: "hyper-v synthetic", Network: "External LAN"}}
	if !reflect.DeepEqual(vm.NICs, wantNICs) {
		t.Errorf("NICs %+v", vm.NICs)
	}
	wantDropped := []string{"dynamic memory (the startup size is used)", `IDE 0:1: iso drive C:\iso\tools.iso`}
	if !reflect.DeepEqual(vm.Dropped, wantDropped) {
		t.Errorf("dropped %q", vm.Dropped)
	}
}

func TestParse(t *testing.T) {
	cases := map[string]struct {
		text string
		fw   string // "" expects ErrBadConfig
	}{
		"generation 2": {`<configuration><properties><name>g2</name><subtype>1</subtype></properties></configuration>`, "uefi"},
		"no name":      {`<configuration><properties/></configuration>`, ""},
		"not hyper-v":  {`<VirtualBox/>`, ""},
		"bad count":    {`<configuration><properties><name>a</name></properties><settings><processors><count>0</count></processors></settings></configuration>`, ""},
		"bad memory":   {`<configuration><properties><name>a</name></properties><settings><memory><bank><size>x</size></bank></memory></settings></configuration>`, ""},
		"bad mac":      {`<configuration><properties><name>a</name></properties><n><Connection><AltSwitchName>s</AltSwitchName></Connection><address>xyz</address></n></configuration>`, ""},
		"deep":         {strings.Repeat("<a>", 100) + strings.Repeat("</a>", 100), ""},
	}
	for name, c := range cases {
		vm, err := Parse([]byte(c.text))
		if c.fw == "" {
			if !errors.Is(err, vmimport.ErrBadConfig) {
				t.Errorf("%s: error %v, want ErrBadConfig", name, err)
			}
			continue
		}
		if err != nil || vm.Firmware != c.fw {
			t.Errorf("%s: %+v, %v", name, vm, err)
		}
	}
}

// TestParseUUID checks the UUID each generation keeps.
func TestParseUUID(t *testing.T) {
	conf := func(subtype, bios string) string {
		return `<configuration><properties><name>a</name><subtype>` + subtype + `</subtype><global_id>9B1E3C5D-2F4A-4B6C-8D7E-0F1A2B3C4D5E</global_id></properties><settings>` + bios + `</settings></configuration>`
	}
	const guid = `<bios><bios_guid type="string">{6F0A2B14-8C3D-4E5F-9A1B-2C3D4E5F6071}</bios_guid></bios>`
	cases := []struct {
		name, text, want string
		dropped          bool
	}{
		{"generation 1", conf("0", guid), "142b0a6f-3d8c-5f4e-9a1b-2c3d4e5f6071", false},
		{"generation 2", conf("1", guid), "6f0a2b14-8c3d-4e5f-9a1b-2c3d4e5f6071", false},
		{"no braces", conf("1", `<bios><bios_guid>6f0a2b14-8c3d-4e5f-9a1b-2c3d4e5f6071</bios_guid></bios>`), "6f0a2b14-8c3d-4e5f-9a1b-2c3d4e5f6071", false},
		{"none", conf("1", ""), "", false},
		{"empty", conf("1", `<bios><bios_guid type="string"></bios_guid></bios>`), "", false},
		{"bad", conf("1", `<bios><bios_guid type="string">{6F0A2B14}</bios_guid></bios>`), "", true},
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
	f.Add(sample(f))
	f.Add([]byte(`<configuration><properties><name>a</name><subtype>1</subtype></properties><settings><bios><bios_guid>{00000000-0000-0000-0000-000000000000}</bios_guid></bios></settings></configuration>`))
	f.Fuzz(func(t *testing.T, text []byte) {
		vm, err := Parse(text)
		if err != nil {
			if !errors.Is(err, vmimport.ErrBadConfig) {
				t.Fatalf("error %v is not ErrBadConfig", err)
			}
			return
		}
		if vm.Name == "" || vm.CPUs < 1 || len(vm.Disks) > vmimport.MaxDisks {
			t.Fatalf("parsed VM breaks the limits: %+v", vm)
		}
		if _, ok := vmimport.ParseUUID(vm.UUID); vm.UUID != "" && !ok {
			t.Fatalf("UUID %q", vm.UUID)
		}
	})
}
