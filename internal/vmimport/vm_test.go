package vmimport

import (
	"errors"
	"strings"
	"testing"
)

func TestNormalizeMAC(t *testing.T) {
	for in, want := range map[string]string{
		"00:50:56:AA:bb:cc":    "00:50:56:aa:bb:cc",
		"00-15-5D-01-02-0A":    "00:15:5d:01:02:0a",
		"080027A1B2C3":         "08:00:27:a1:b2:c3",
		" 0800.27a1.b2c3 ":     "08:00:27:a1:b2:c3",
		"08002":                "",
		"zz0027a1b2c3":         "",
		"00:50:56:aa:bb:cc:dd": "",
	} {
		got, ok := NormalizeMAC(in)
		if got != want || ok != (want != "") {
			t.Errorf("NormalizeMAC(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestCheck(t *testing.T) {
	vm := &VM{Name: "a"}
	if err := vm.Check(); err != nil || vm.CPUs != 1 || vm.Firmware != FirmwareBIOS {
		t.Errorf("defaults: %+v, %v", vm, err)
	}
	for name, vm := range map[string]*VM{
		"cpus":     {CPUs: MaxCPUs + 1},
		"memory":   {MemoryMiB: -1},
		"disks":    {Disks: make([]Disk, MaxDisks+1)},
		"nics":     {NICs: make([]NIC, MaxNICs+1)},
		"chain":    {Disks: []Disk{{Chain: make([]string, MaxChain+1)}}},
		"capacity": {Disks: []Disk{{Capacity: -1}}},
	} {
		if err := vm.Check(); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%s: %v, want ErrBadConfig", name, err)
		}
	}
	var b strings.Builder
	(&VM{Name: "w", CPUs: 2, MemoryMiB: 64, Firmware: "uefi", Mapped: []string{"m"}, Dropped: []string{"d"}}).WriteReport(&b)
	if b.String() != "VM w: 2 CPUs, 64 MiB, firmware uefi\n  mapped:  m\n  dropped: d\n" {
		t.Errorf("report %q", b.String())
	}
}
