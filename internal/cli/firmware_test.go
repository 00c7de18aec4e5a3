package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/firmware/efivars"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

// TestRunFirmwareBIOS boots the SYSLINUX test disk as a user would:
// `govisor run --firmware bios --disk ...`, SeaBIOS then SYSLINUX then the
// test guest, which powers off, and govisor exits 0.
func TestRunFirmwareBIOS(t *testing.T) {
	bios, disk := kvmtest.SeaBIOS(t), kvmtest.SyslinuxDisk(t)
	out, errOut, code := runGovisor(t, "run", "--firmware", "bios", "--firmware-image", bios,
		"--disk", "path="+disk+",readonly", "--cpus", "2", "--memory", "256M", "-v", "--uuid", "6BA7B810-9DAD-11D1-80B4-00C04FD430C8")
	if code != 0 {
		t.Fatalf("exit %d; stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	last := -1
	// --uuid reaches the guest through SMBIOS (its DMI line, in lower case).
	for _, want := range []string{"SeaBIOS (version", "SYSLINUX", "GUEST-READY", "DMI: govisor govisor VM 6ba7b810-9dad-11d1-80b4-00c04fd430c8", "GUEST-DONE"} {
		i := strings.Index(out[last+1:], want)
		if i < 0 {
			t.Fatalf("console lacks %q after the previous marker:\n%s\nstderr:\n%s", want, out, errOut)
		}
		last += 1 + i
	}
	if !strings.Contains(errOut, "firmware, 262144 bytes") {
		t.Errorf("--verbose did not say the guest was loaded through firmware:\n%s", errOut)
	}
}

// TestRunFirmwareUEFI boots the UEFI test disk as a user would: `govisor
// run --firmware uefi --firmware-vars FILE`, OVMF then GRUB then the test
// guest, which reboots, and govisor exits 0 with --on-reboot=exit; the
// variable file was made from OVMF's template and holds what OVMF stored.
func TestRunFirmwareUEFI(t *testing.T) {
	code, _ := kvmtest.OVMF(t)
	disk := kvmtest.ESPDisk(t)
	vars := filepath.Join(t.TempDir(), "vm-vars.fd")
	// An OVMF boot to GUEST-DONE takes 3.5-4.5 minutes in a TCG lab host.
	out, errOut, rc := runGovisorFor(t, 10*time.Minute, "run", "--firmware", "uefi", "--firmware-image", code, "--firmware-vars", vars,
		"--disk", "path="+disk+",readonly", "--memory", "256M", "--on-reboot", "exit", "-v")
	if rc != 0 {
		t.Fatalf("exit %d; stdout:\n%s\nstderr:\n%s", rc, out, errOut)
	}
	last := -1
	for _, want := range []string{"GRUB: loading the test kernel", "GUEST-READY", "GUEST-DONE"} {
		i := strings.Index(out[last+1:], want)
		if i < 0 {
			t.Fatalf("console lacks %q after the previous marker:\n%s\nstderr:\n%s", want, out, errOut)
		}
		last += 1 + i
	}
	if !strings.Contains(errOut, "UEFI firmware, 3653632 bytes of code") {
		t.Errorf("--verbose did not say the guest was loaded through UEFI firmware:\n%s", errOut)
	}
	b, err := os.ReadFile(vars)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := efivars.Get(b, "BootOrder"); !ok || err != nil {
		t.Errorf("the variable file has no BootOrder (%v): OVMF's writes did not reach it", err)
	}
}

func TestRunFirmwareErrors(t *testing.T) {
	kvmtest.Require(t)
	// Stand-ins for OVMF's code and variables (4 KiB each, sizes the VMM
	// accepts): the memory limit is judged before any firmware runs.
	ovmf, ovmfVars := filepath.Join(t.TempDir(), "code.fd"), filepath.Join(t.TempDir(), "vars.fd")
	for _, p := range []string{ovmf, ovmfVars} {
		if err := os.WriteFile(p, make([]byte, 4096), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"uefi with a kernel", []string{"run", "--firmware", "uefi", "--kernel", "vmlinux"}, "exclude each other"},
		{"variables without uefi", []string{"run", "--firmware", "bios", "--firmware-vars", "vars.fd"}, "--firmware-vars needs --firmware uefi"},
		{"firmware and kernel", []string{"run", "--firmware", "bios", "--kernel", "vmlinux"}, "exclude each other"},
		{"missing image", []string{"run", "--firmware", "bios", "--firmware-image", "/nonexistent/bios.bin"}, "no such file"},
	}
	for _, c := range cases {
		_, errOut, code := runGovisor(t, c.args...)
		if code == 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("%s: exit %d, stderr %q, want it to say %q", c.name, code, errOut, c.want)
		}
	}
}
