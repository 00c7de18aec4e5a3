package vmdk

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/govisor/govisor/internal/diskimage"
)

// TestQemuSnapshotChain reads a VMware-style snapshot chain that qemu-img
// and qemu-io wrote (a monolithicSparse child naming its parent) as qemu
// does, and refuses it once the parent changed.
func TestQemuSnapshotChain(t *testing.T) {
	q := qemuImg(t)
	qio, err := exec.LookPath("qemu-io")
	if err != nil {
		t.Skip("SKIPPING QEMU-IO INTEROP TEST: qemu-io not installed (run scripts/deps.sh test)")
	}
	dir := t.TempDir()
	base, child := filepath.Join(dir, "base.vmdk"), filepath.Join(dir, "base-000001.vmdk")
	run(t, q, "create", "-q", "-f", "vmdk", base, "4M")
	run(t, qio, "-f", "vmdk", "-c", "write -P 0x11 0 4M", base)
	run(t, q, "create", "-q", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", child)
	run(t, qio, "-f", "vmdk", "-c", "write -P 0x22 1M 64k", "-c", "write -z 2M 64k", child)
	back := filepath.Join(dir, "back.raw")
	run(t, q, "convert", "-f", "vmdk", "-O", "raw", child, back)
	want, _ := os.ReadFile(back)

	img, err := diskimage.Open(child, diskimage.OpenOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, img.VirtualSize())
	if _, err := img.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	img.Close()
	if !bytes.Equal(got, want) || got[0] != 0x11 || got[1<<20] != 0x22 {
		t.Fatal("govisor reads the snapshot chain differently from qemu-img")
	}

	if _, err := diskimage.Open(child, diskimage.OpenOptions{}); !errors.Is(err, diskimage.ErrUnsupported) {
		t.Errorf("writable open of a differencing disk: %v, want ErrUnsupported", err)
	}
	if img, err := diskimage.Open(child, diskimage.OpenOptions{ReadOnly: true, NoBacking: true}); err != nil {
		t.Errorf("NoBacking: %v", err)
	} else {
		img.Close()
	}
	// Writing the parent gives it a new CID: the child no longer fits.
	run(t, qio, "-f", "vmdk", "-c", "write -P 0x33 0 512", base)
	if _, err := diskimage.Open(child, diskimage.OpenOptions{ReadOnly: true}); !errors.Is(err, diskimage.ErrParent) {
		t.Errorf("open over a changed parent: %v, want ErrParent", err)
	}
	os.Remove(base)
	if _, err := diskimage.Open(child, diskimage.OpenOptions{ReadOnly: true}); !errors.Is(err, diskimage.ErrParent) {
		t.Errorf("open without the parent: %v, want ErrParent", err)
	}
}
