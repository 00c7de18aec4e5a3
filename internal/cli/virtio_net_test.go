package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

// TestLinuxNetAndBalloon boots Linux in a network namespace the test makes,
// with a virtio-net interface on a TAP that has a link-local address: the
// guest pings the host across it. Then the host inflates the guest's memory
// balloon through the VMM API and the guest's free memory drops.
func TestLinuxNetAndBalloon(t *testing.T) {
	t.Parallel() // each boots Linux: minutes on kvm_pvm
	kernel, initrd := kvmtest.LinuxGuest(t)
	need(t, "ip")
	ns := fmt.Sprintf("gvtest%d", os.Getpid())
	tap := "gvtap0"
	sh(t, nil, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	sh(t, nil, "ip", "-n", ns, "tuntap", "add", "dev", tap, "mode", "tap")
	sh(t, nil, "ip", "-n", ns, "addr", "add", "169.254.100.1/16", "dev", tap)
	sh(t, nil, "ip", "-n", ns, "link", "set", tap, "up")

	dir := t.TempDir()
	sock := filepath.Join(dir, "vmm.sock")
	bin := govisorBin(t)
	script := "ip link set eth0 up && ip addr add 169.254.100.2/16 dev eth0 && ping -c 3 -W 10 169.254.100.1 && echo PING-OK; " +
		"echo FREE1=$(grep MemFree /proc/meminfo); echo BALLOON-WAIT; sleep 40; echo FREE2=$(grep MemFree /proc/meminfo); echo BALLOON-DONE"
	cmd := exec.Command("ip", "netns", "exec", ns, bin, "run", "--kernel", kernel, "--initrd", initrd, "--memory", "256M",
		"--net", "tap="+tap+",mac=02:00:00:00:00:02", "--balloon", "--api-sock", sock,
		"--cmdline", kvmtest.LinuxCmdline+` run="`+script+`"`)
	con, stderr, err := followConsole(t, cmd, func(line string) {
		if strings.Contains(line, "BALLOON-WAIT") {
			if out, err := exec.Command(bin, "ctl", "--api-sock", sock, "balloon", "128").CombinedOutput(); err != nil {
				t.Errorf("ctl balloon: %v\n%s", err, out)
			}
		}
	})
	if err != nil || !strings.Contains(con, "PING-OK") || !strings.Contains(con, "BALLOON-DONE") {
		t.Fatalf("exit %v; console:\n%s\nstderr:\n%s", err, con, stderr)
	}
	free := regexp.MustCompile(`FREE(\d)=MemFree: *(\d+) kB`).FindAllStringSubmatch(con, -1)
	if len(free) != 2 {
		t.Fatalf("free memory lines: %v\n%s", free, con)
	}
	before, _ := strconv.Atoi(free[0][2])
	after, _ := strconv.Atoi(free[1][2])
	t.Logf("guest MemFree %d kB -> %d kB with a 128 MiB balloon", before, after)
	if before-after < 64*1024 {
		t.Errorf("the balloon did not take memory from the guest: MemFree %d kB -> %d kB", before, after)
	}
}
