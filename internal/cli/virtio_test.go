package cli

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed: run scripts/deps.sh test", tool)
		}
	}
}

func sh(t *testing.T, okCodes []int, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		for _, c := range okCodes {
			if ee.ExitCode() == c {
				return string(out)
			}
		}
	}
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// TestLinuxVirtioBlkAndRng boots Linux with a qcow2 root-style disk (ext4),
// a read-only raw disk and virtio-rng. The guest writes a file and syncs
// (virtio-blk FLUSH), checks that the read-only disk refuses writes and
// reads the hardware RNG; then the VMM is killed with SIGKILL while the
// file system is still mounted, and the host finds the flushed file intact.
func TestLinuxVirtioBlkAndRng(t *testing.T) {
	t.Parallel() // each boots Linux: minutes on kvm_pvm
	kernel, initrd := kvmtest.LinuxGuest(t)
	need(t, "mkfs.ext4", "e2fsck", "debugfs")
	dir := t.TempDir()
	bin := govisorBin(t)
	rawFS := filepath.Join(dir, "fs.raw")
	sh(t, nil, "truncate", "-s", "32M", rawFS)
	sh(t, nil, "mkfs.ext4", "-q", "-F", rawFS)
	disk := filepath.Join(dir, "disk.qcow2")
	sh(t, nil, bin, "image", "convert", "-O", "qcow2", rawFS, disk)
	ro := filepath.Join(dir, "ro.raw")
	if err := os.WriteFile(ro, bytes.Repeat([]byte("READONLY"), 128*1024), 0o644); err != nil {
		t.Fatal(err)
	}
	script := "mount -t ext4 /dev/vda /mnt && echo GOVISOR-DISK-DATA > /mnt/hello && sync && echo WROTE-OK; " +
		"dd if=/dev/zero of=/dev/vdb bs=512 count=1 conv=fsync 2>/dev/null && echo RO-WRITTEN || echo RO-REFUSED; " +
		"echo RNG=$(head -c 16 /dev/hwrng | wc -c); echo SERIAL=$(cat /sys/block/vda/serial); echo CRASH-POINT; sleep 1000"
	cmd := exec.Command(bin, "run", "--kernel", kernel, "--initrd", initrd, "--memory", "256M",
		"--disk", "path="+disk, "--disk", "path="+ro+",readonly", "--rng",
		"--cmdline", kvmtest.LinuxCmdline+` run="`+script+`"`)
	con, stderr, _ := followConsole(t, cmd, func(line string) {
		if strings.Contains(line, "CRASH-POINT") {
			cmd.Process.Signal(syscall.SIGKILL)
		}
	})
	for _, want := range []string{"WROTE-OK", "RO-REFUSED", "RNG=16", "SERIAL=vda", "CRASH-POINT"} {
		if !strings.Contains(con, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	if t.Failed() {
		t.Fatalf("console:\n%s\nstderr:\n%s", con, stderr)
	}
	// After the crash: the qcow2 metadata is consistent (leaks are allowed
	// after a crash, corruption is not), the file system replays its journal,
	// and the synced file is there.
	sh(t, []int{3}, bin, "image", "check", disk)
	after := filepath.Join(dir, "after.raw")
	sh(t, nil, bin, "image", "convert", "-O", "raw", disk, after)
	sh(t, []int{1}, "e2fsck", "-fy", after)
	if got := sh(t, nil, "debugfs", "-R", "cat /hello", after); !strings.Contains(got, "GOVISOR-DISK-DATA") {
		t.Fatalf("file after crash: %q", got)
	}
	if b, _ := os.ReadFile(ro); !bytes.Equal(b[:8], []byte("READONLY")) {
		t.Fatal("the read-only disk was written")
	}
}
