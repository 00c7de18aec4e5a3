package importer

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/govisor/govisor/internal/diskimage/imagetest"
)

// TestImportVMXSnapshot imports a VMware VM running on a snapshot: its
// .vmx names the child disk, which names its parent (made by qemu-img, as
// VMware lays it out). The imported disk is the chain flattened.
func TestImportVMXSnapshot(t *testing.T) {
	q := imagetest.QemuImg(t)
	qio, err := exec.LookPath("qemu-io")
	if err != nil {
		t.Skip("SKIPPING QEMU-IO INTEROP TEST: qemu-io not installed (run scripts/deps.sh test)")
	}
	dir := t.TempDir()
	imagetest.Run(t, q, "create", "-q", "-f", "vmdk", filepath.Join(dir, "db.vmdk"), "3M")
	imagetest.Run(t, qio, "-f", "vmdk", "-c", "write -P 0x41 0 3M", filepath.Join(dir, "db.vmdk"))
	imagetest.Run(t, q, "create", "-q", "-f", "vmdk", "-b", "db.vmdk", "-F", "vmdk", filepath.Join(dir, "db-000001.vmdk"))
	imagetest.Run(t, qio, "-f", "vmdk", "-c", "write -P 0x42 1M 128k", filepath.Join(dir, "db-000001.vmdk"))
	os.WriteFile(filepath.Join(dir, "db.vmx"), []byte("displayName = \"db\"\nscsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"db-000001.vmdk\"\n"), 0o644)
	res := importOK(t, Options{Source: "vmx", Path: filepath.Join(dir, "db.vmx"), Format: "raw"})
	want := bytes.Repeat([]byte{0x41}, 3<<20)
	copy(want[1<<20:], bytes.Repeat([]byte{0x42}, 128<<10))
	if !bytes.Equal(readImage(t, res.Disks[0]), want) {
		t.Error("the imported disk is not the snapshot chain flattened")
	}
}
