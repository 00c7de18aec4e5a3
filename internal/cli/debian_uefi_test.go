//go:build debiandisk

package cli

import (
	"path/filepath"
	"testing"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

// TestDebianUEFIBoot boots the UEFI Debian disk (scripts/debian-disk.sh:
// GPT, GRUB as \EFI\BOOT\BOOTX64.EFI on a FAT ESP) through OVMF from
// virtio-blk to root's shell on ttyS0, which answers a command; there
// efibootmgr adds a boot entry (a UEFI variable, written by OVMF's runtime
// services to the VM's variable file). Booted again from the same variable
// file, the firmware starts that entry and the guest still lists it.
func TestDebianUEFIBoot(t *testing.T) {
	code, _ := kvmtest.OVMF(t)
	base := kvmtest.DebianDisk(t, "uefi")
	t.Setenv("GOVISOR_FIRMWARE_DIR", filepath.Dir(code))
	disk := debianOverlay(t, base)
	vars := filepath.Join(t.TempDir(), "vars.fd")
	args := []string{"run", "--firmware", "uefi", "--firmware-image", code, "--firmware-vars", vars,
		"--disk", "path=" + disk, "--cpus", "1", "--memory", "512M"}
	count := "efibootmgr | grep -c govisor-test | sed 's/^/ENTRIES-/'; echo DONE-$((6*7))\n"
	bootDebian(t, []string{"BdsDxe: starting Boot", "Booting `Debian GNU/Linux 12"}, []exchange{
		debianCommand,
		{"efibootmgr -c -d /dev/vda -p 1 -L govisor-test -l '\\EFI\\BOOT\\BOOTX64.EFI' >/dev/null; " + count, "ENTRIES-1\r\nDONE-42"},
	}, args...)
	bootDebian(t, []string{`BdsDxe: starting Boot`, `"govisor-test"`, "Booting `Debian GNU/Linux 12"}, []exchange{
		{count, "ENTRIES-1\r\nDONE-42"},
	}, args...)
}
