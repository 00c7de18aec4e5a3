package cli

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

// TestDebianLogin boots a debootstrapped Debian 12 (guest/build-debian.sh)
// from a virtio-blk root disk with systemd to its serial login prompt.
// Opt-in (`make test-debian`): on kvm_pvm this takes many minutes.
func TestDebianLogin(t *testing.T) {
	dir := os.Getenv("GOVISOR_DEBIAN")
	if dir == "" {
		t.Skip("opt-in: run `make test-debian` (sets GOVISOR_DEBIAN to the guest built by guest/build-debian.sh)")
	}
	kvmtest.Require(t)
	cmd := exec.Command(govisorBin(t), "run", "--kernel", filepath.Join(dir, "bzImage"), "--cpus", "2", "--memory", "1G",
		"--disk", "path="+filepath.Join(dir, "rootfs.ext4"), "--rng",
		"--cmdline", "console=ttyS0 root=/dev/vda rw rodata=off")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	timer := time.AfterFunc(110*time.Minute, func() { cmd.Process.Kill() })
	defer timer.Stop()
	sc := bufio.NewScanner(out)
	var tail []string
	for sc.Scan() {
		line := sc.Text()
		tail = append(tail, line)
		if len(tail) > 40 {
			tail = tail[1:]
		}
		if strings.Contains(line, "login:") {
			t.Logf("Debian 12 reached its login prompt in %v", time.Since(start).Round(time.Second))
			return
		}
	}
	t.Fatalf("no login prompt; last console lines:\n%s", strings.Join(tail, "\n"))
}
