package importer

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/diskimage/vmdk/esxtest"
)

// TestImportVMXESXiSnapshots imports a VM copied from an ESXi datastore
// while on its second snapshot: the .vmx names esxi-000002.vmdk, a seSparse
// snapshot over esxi-000001.vmdk, a vmfsSparse (COWD) snapshot over the
// vmfs base esxi.vmdk + esxi-flat.vmdk. The pool gets one disk: the chain
// flattened, with no backing file.
func TestImportVMXESXiSnapshots(t *testing.T) {
	dir := t.TempDir()
	const size = 6 * mib
	base := pattern(size, 5)
	if err := esxtest.WriteBase(dir, "esxi", base, 0xa1); err != nil {
		t.Fatal(err)
	}
	d1 := map[int64][]byte{mib: bytes.Repeat([]byte{0x51}, 300*512), 5*mib - 512: bytes.Repeat([]byte{0x52}, 1024)}
	if err := esxtest.WriteDelta(dir, "esxi-000001", "esxi.vmdk", 0xa1, 0xa2, size, esxtest.Layer{Kind: "vmfsSparse", Data: d1}); err != nil {
		t.Fatal(err)
	}
	d2 := map[int64][]byte{mib + 4096: bytes.Repeat([]byte{0x61}, 8192), 3 * mib: bytes.Repeat([]byte{0x62}, 64<<10)}
	zero := [][2]int64{{mib + 64<<10, mib + 128<<10}} // over the first snapshot's data
	if err := esxtest.WriteDelta(dir, "esxi-000002", "esxi-000001.vmdk", 0xa2, 0xa3, size, esxtest.Layer{Kind: "seSparse", Data: d2, Zero: zero}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "esxi.vmx"), []byte(`.encoding = "UTF-8"
displayName = "esxi"
numvcpus = "2"
memsize = "512"
scsi0.present = "TRUE"
scsi0.virtualDev = "pvscsi"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "esxi-000002.vmdk"
`), 0o644)
	want := bytes.Clone(base)
	for _, d := range []map[int64][]byte{d1, d2} {
		for off, b := range d {
			copy(want[off:], b)
		}
	}
	clear(want[zero[0][0]:zero[0][1]])
	res := importOK(t, Options{Source: "vmx", Path: filepath.Join(dir, "esxi.vmx")})
	if len(res.Disks) != 1 || res.VM.CPUs != 2 {
		t.Fatalf("imported %+v into %v", res.VM, res.Disks)
	}
	info, err := diskimage.InfoOf(res.Disks[0], "")
	if err != nil || info.BackingFile != "" || info.VirtualSize != size {
		t.Fatalf("imported disk %+v, %v: want %d bytes and no backing file", info, err, size)
	}
	if !bytes.Equal(readImage(t, res.Disks[0]), want) {
		t.Error("the imported disk is not the ESXi snapshot chain flattened")
	}
}
