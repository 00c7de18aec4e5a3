package ova

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestImportedDiskMatchesQemu checks the qcow2 an import produces with
// qemu-img: it must pass check and compare equal to the OVA's VMDK.
func TestImportedDiskMatchesQemu(t *testing.T) {
	q, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("SKIPPING QEMU-IMG INTEROP TEST: qemu-img not installed (run scripts/deps.sh test)")
	}
	dir := t.TempDir()
	p, _ := buildOVA(t, dir, false)
	vm, err := Import(p, filepath.Join(dir, "out"))
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"check", "-f", "qcow2", vm.Disks[0]},
		{"compare", "-f", "vmdk", "-F", "qcow2", filepath.Join(dir, "src.vmdk"), vm.Disks[0]},
	} {
		out, err := exec.Command(q, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
