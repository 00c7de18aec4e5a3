package cli

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

// listenInNetns opens a TCP listener inside the named network namespace:
// a locked thread joins the namespace and never leaves it (the runtime
// ends a thread that exits locked), and the socket stays in the namespace.
func listenInNetns(t *testing.T, ns, addr string) net.Listener {
	t.Helper()
	type res struct {
		l   net.Listener
		err error
	}
	c := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread dies with the goroutine
		f, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			c <- res{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			c <- res{err: fmt.Errorf("setns %s: %w", ns, err)}
			return
		}
		l, err := net.Listen("tcp", addr)
		c <- res{l, err}
	}()
	r := <-c
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { r.l.Close() })
	return r.l
}

// seqReader reads the guest's counter lines from a TCP connection and
// checks that each is the previous plus one.
type seqReader struct {
	sc     *bufio.Scanner
	last   int
	uptime float64 // the guest's /proc/uptime with the last number
	// vmm is the VMM that runs the guest now: a failure ends it and shows
	// its console and stderr, to tell a stuck guest from a lost packet.
	vmm *guestVMM
}

// guestVMM is a VMM process the TCP test started and what it printed.
type guestVMM struct {
	cmd  *exec.Cmd
	done chan string
}

// endAndShow kills the VMM (a test failure ends it anyway) and returns its
// console and stderr.
func (v *guestVMM) endAndShow() string {
	if v == nil {
		return ""
	}
	if v.cmd.Process != nil {
		v.cmd.Process.Kill()
	}
	select {
	case out := <-v.done:
		return "\n" + out
	case <-time.After(10 * time.Second):
		return "\n(the VMM's output did not arrive)"
	}
}

// upTo reads until the counter reaches n, or fails the test.
func (s *seqReader) upTo(t *testing.T, c net.Conn, n int, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Minute))
	for s.last < n {
		if !s.sc.Scan() {
			t.Fatalf("%s: the guest's TCP stream ended at %d: %v%s", what, s.last, s.sc.Err(), s.vmm.endAndShow())
		}
		f := strings.Fields(s.sc.Text())
		if len(f) != 2 {
			t.Fatalf("%s: the guest sent %q, want a number and its uptime%s", what, s.sc.Text(), s.vmm.endAndShow())
		}
		v, err := strconv.Atoi(f[0])
		if err != nil || v != s.last+1 {
			t.Fatalf("%s: the guest's counter went from %d to %q: it must only move forward by one%s", what, s.last, s.sc.Text(), s.vmm.endAndShow())
		}
		up, err := strconv.ParseFloat(f[1], 64)
		if err != nil || up < s.uptime {
			t.Fatalf("%s: the guest's clock went from %.2f s to %q: it must never go backwards%s", what, s.uptime, f[1], s.vmm.endAndShow())
		}
		s.last, s.uptime = v, up
	}
}

// TestLinuxMigrationKeepsTCP boots Linux in a test-made network namespace
// on a bridge, with a guest process writing a counter to its disk and
// streaming it over TCP to the host. The VM is live-migrated, its disk
// mirrored (no shared storage), to a second VMM process on another TAP of
// the bridge, then snapshotted there and restored into a third process.
// The TCP connection stays open throughout, the counter only moves forward
// by one, the guest's clock never goes backwards, the source VMMs end, and
// the disk holds every number sent.
func TestLinuxMigrationKeepsTCP(t *testing.T) {
	t.Parallel() // boots Linux: minutes on kvm_pvm
	kernel, initrd := kvmtest.LinuxGuest(t)
	need(t, "ip")
	ns := fmt.Sprintf("gvmig%d", os.Getpid())
	sh(t, nil, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	sh(t, nil, "ip", "-n", ns, "link", "set", "lo", "up")
	sh(t, nil, "ip", "-n", ns, "link", "add", "gvbr0", "type", "bridge")
	sh(t, nil, "ip", "-n", ns, "addr", "add", "169.254.77.1/16", "dev", "gvbr0")
	sh(t, nil, "ip", "-n", ns, "link", "set", "gvbr0", "up")
	for _, tap := range []string{"gvtapa", "gvtapb"} {
		sh(t, nil, "ip", "-n", ns, "tuntap", "add", "dev", tap, "mode", "tap")
		sh(t, nil, "ip", "-n", ns, "link", "set", tap, "master", "gvbr0")
		sh(t, nil, "ip", "-n", ns, "link", "set", tap, "up")
	}
	l := listenInNetns(t, ns, "169.254.77.1:7000")

	dir := t.TempDir()
	bin := govisorBin(t)
	const mac = "02:00:00:00:77:02"
	script := "ip link set eth0 up && ip addr add 169.254.77.2/16 dev eth0 && echo NET-UP; " +
		"i=0; while :; do i=$((i+1)); echo $i | dd of=/dev/vda bs=512 seek=$i conv=notrunc,fsync 2>/dev/null; read up _ < /proc/uptime; echo $i $up; " +
		// Every tenth number on the console too: a failure then tells a
		// guest that stopped from a network that did.
		"[ $((i % 10)) = 0 ] && echo GUEST-COUNTER $i $up >/dev/console; usleep 50000; done | " +
		"nc 169.254.77.1 7000; echo NC-ENDED"
	vmm := func(name string, args ...string) (*exec.Cmd, chan string) {
		cmd := exec.Command("ip", append([]string{"netns", "exec", ns, bin, "run"}, args...)...)
		// A migrated source writes vmmapi.MigratedFile where it runs:
		// the test's folder, not the package's source folder.
		cmd.Dir = dir
		done := make(chan string, 1)
		go func() {
			con, stderr, err := followConsole(t, cmd, nil)
			done <- fmt.Sprintf("%s exit %v\nconsole:\n%s\nstderr:\n%s", name, err, con, stderr)
		}()
		return cmd, done
	}
	// The source's disk is a raw file; the destination's a blank qcow2 image
	// the migration mirrors it into (the hosts share no storage).
	srcDisk, dstDisk := filepath.Join(dir, "src.raw"), filepath.Join(dir, "dst.qcow2")
	for _, d := range []struct{ path, format string }{{srcDisk, "raw"}, {dstDisk, "qcow2"}} {
		img, err := diskimage.Create(d.path, d.format, 8<<20, diskimage.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		img.Close()
	}
	srcSock := filepath.Join(dir, "src.sock")
	srcCmd, srcDone := vmm("source", "--kernel", kernel, "--initrd", initrd, "--memory", "256M", "--api-sock", srcSock,
		"--disk", "path="+srcDisk, "--net", "tap=gvtapa,mac="+mac, "--cmdline", kvmtest.LinuxCmdline+` run="`+script+`"`)
	type accepted struct {
		c   net.Conn
		err error
	}
	acc := make(chan accepted, 1)
	go func() { c, err := l.Accept(); acc <- accepted{c, err} }()
	var conn net.Conn
	select {
	case a := <-acc:
		if a.err != nil {
			t.Fatal(a.err)
		}
		conn = a.c
	case out := <-srcDone:
		t.Fatalf("the guest never connected:\n%s", out)
	}
	defer conn.Close()
	seq := &seqReader{sc: bufio.NewScanner(conn), vmm: &guestVMM{srcCmd, srcDone}}
	seq.upTo(t, conn, 20, "before migration")

	// Live migration to a VMM on the other TAP.
	dstSock := filepath.Join(dir, "dst.sock")
	dst, dstDone := vmm("destination", "--incoming", "127.0.0.1:7100", "--memory", "256M", "--api-sock", dstSock,
		"--disk", "path="+dstDisk, "--net", "tap=gvtapb,mac="+mac)
	defer func() {
		if dst.Process != nil {
			dst.Process.Kill()
		}
	}()
	var out []byte
	var err error
	for deadline := time.Now().Add(time.Minute); ; {
		// The source dials from inside the namespace, where 127.0.0.1 is the destination's.
		out, err = exec.Command(bin, "ctl", "--api-sock", srcSock, "migrate", "-q", "--mirror-disks", "127.0.0.1:7100").CombinedOutput()
		if err == nil || time.Now().After(deadline) || !strings.Contains(string(out), "refused") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("ctl migrate: %v\n%s", err, out)
	}
	t.Logf("migration: %s", out)
	select {
	case o := <-srcDone:
		if !strings.Contains(o, "source exit <nil>") {
			t.Fatalf("the source VMM did not end cleanly after the migration:\n%s", o)
		}
	case <-time.After(time.Minute):
		t.Fatal("the source VMM still runs a minute after the migration")
	}
	seq.vmm = &guestVMM{dst, dstDone}
	seq.upTo(t, conn, seq.last+20, "after migration")

	// Pause the destination, snapshot it, end it, restore into a new
	// process. Paused first: a guest that ran on after its snapshot would
	// have sent numbers (and TCP bytes) the restored guest sends again.
	snap := filepath.Join(dir, "snap")
	if out, err := exec.Command(bin, "ctl", "--api-sock", dstSock, "pause").CombinedOutput(); err != nil {
		t.Fatalf("ctl pause: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "ctl", "--api-sock", dstSock, "snapshot", snap).CombinedOutput(); err != nil {
		t.Fatalf("ctl snapshot: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "ctl", "--api-sock", dstSock, "stop").CombinedOutput(); err != nil {
		t.Fatalf("ctl stop: %v\n%s", err, out)
	}
	select {
	case <-dstDone:
	case <-time.After(time.Minute):
		t.Fatal("the destination VMM still runs a minute after ctl stop")
	}
	restored, restDone := vmm("restored", "--restore", snap)
	defer func() {
		if restored.Process != nil {
			restored.Process.Kill()
		}
	}()
	seq.vmm = &guestVMM{restored, restDone}
	seq.upTo(t, conn, seq.last+20, "after restore")
	restored.Process.Kill() // the test is over; only this process we started
	<-restDone

	// Every number the host received was written and flushed to the disk
	// first: on the source, the destination or the restored VM, all in the
	// mirrored qcow2 image now.
	img, err := diskimage.Open(dstDisk, diskimage.OpenOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	sector := make([]byte, 512)
	for i := 1; i <= seq.last; i++ {
		if _, err := img.ReadAt(sector, int64(i)*512); err != nil {
			t.Fatal(err)
		}
		if got, want := string(sector[:len(strconv.Itoa(i))+1]), strconv.Itoa(i)+"\n"; got != want {
			t.Fatalf("sector %d of the mirrored disk holds %q, want %q", i, got, want)
		}
	}
}
