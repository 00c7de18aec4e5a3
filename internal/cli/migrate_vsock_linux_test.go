package cli

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

// initrdWithVsockPeer returns the test initramfs with guest/vsockpeer added
// as /bin/vsockpeer.
func initrdWithVsockPeer(t *testing.T, initrd, dir string) string {
	t.Helper()
	peer := kvmtest.Binary(t, "vsockpeer", "github.com/govisor/govisor/guest/vsockpeer")
	peerBin, err := os.ReadFile(peer)
	if err != nil {
		t.Fatal(err)
	}
	base, err := os.ReadFile(initrd)
	if err != nil {
		t.Fatal(err)
	}
	for len(base)%4 != 0 {
		base = append(base, 0)
	}
	ird := filepath.Join(dir, "initrd.cpio")
	if err := os.WriteFile(ird, append(base, kvmtest.CPIO([]kvmtest.CPIOFile{{Name: "bin/vsockpeer", Mode: 0o755, Data: peerBin}})...), 0o644); err != nil {
		t.Fatal(err)
	}
	return ird
}

// hostCounter is the host's side of a guest's counting connection
// (vsockpeer count-*): it checks that each number is the previous plus one
// and echoes it back.
type hostCounter struct {
	name  string
	last  atomic.Int64
	ended chan error // the connection ended or misbehaved
}

func echoCounter(name string, c net.Conn, r *bufio.Reader) *hostCounter {
	h := &hostCounter{name: name, ended: make(chan error, 1)}
	go func() {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				h.ended <- fmt.Errorf("%s: the connection ended after %d: %v", name, h.last.Load(), err)
				return
			}
			n, err := strconv.Atoi(strings.TrimSpace(line))
			if err != nil || int64(n) != h.last.Load()+1 {
				h.ended <- fmt.Errorf("%s: the guest sent %q after %d: the counter must go up by one", name, line, h.last.Load())
				return
			}
			h.last.Store(int64(n))
			if _, err := fmt.Fprintf(c, "%d\n", n); err != nil {
				h.ended <- fmt.Errorf("%s: echo %d: %v", name, n, err)
				return
			}
		}
	}()
	return h
}

// reach waits until the counter reaches n; the connection must not end.
func (h *hostCounter) reach(t *testing.T, n int64, within time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for h.last.Load() < n {
		select {
		case err := <-h.ended:
			t.Fatalf("%s: %v", what, err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s counter stuck at %d, want %d", what, h.name, h.last.Load(), n)
		}
	}
}

// TestLinuxMigrationKeepsVsock boots Linux with a guest process counting
// over two vsock connections, one the guest opened (to <uds>_6000) and one
// the host opened (CONNECT 5000), each number echoed by the host. The VM is
// live-migrated over a Unix socket to a second VMM process on this host:
// the host's sockets are handed over, both connections stay open and the
// counters go on. Then it is migrated over TCP to a third VMM: there the
// connections cannot follow, so the guest is told they were reset
// (virtio 1.2 5.10.6.6) and both ends see them end instead of hanging.
func TestLinuxMigrationKeepsVsock(t *testing.T) {
	t.Parallel() // boots Linux: minutes on kvm_pvm
	kernel, initrd := kvmtest.LinuxGuest(t)
	dir := t.TempDir()
	bin := govisorBin(t)
	ird := initrdWithVsockPeer(t, initrd, dir)

	srcUDS := filepath.Join(dir, "src.v")
	guestListener, err := net.Listen("unix", srcUDS+"_6000")
	if err != nil {
		t.Fatal(err)
	}
	defer guestListener.Close()

	type vmmProc struct {
		cmd   *exec.Cmd
		done  chan string
		lines chan string
	}
	vmm := func(name string, args ...string) *vmmProc {
		p := &vmmProc{cmd: exec.Command(bin, append([]string{"run"}, args...)...), done: make(chan string, 1), lines: make(chan string, 256)}
		go func() {
			con, stderr, err := followConsole(t, p.cmd, func(line string) {
				select {
				case p.lines <- line:
				default:
				}
			})
			p.done <- fmt.Sprintf("%s exit %v\nconsole:\n%s\nstderr:\n%s", name, err, con, stderr)
		}()
		t.Cleanup(func() {
			if p.cmd.Process != nil {
				p.cmd.Process.Kill() // only the processes this test started
			}
		})
		return p
	}
	waitLine := func(p *vmmProc, marker string, within time.Duration) string {
		t.Helper()
		timer := time.NewTimer(within)
		defer timer.Stop()
		for {
			select {
			case l := <-p.lines:
				if strings.Contains(l, marker) {
					return l
				}
			case out := <-p.done:
				t.Fatalf("the VMM ended before the guest printed %q:\n%s", marker, out)
			case <-timer.C:
				t.Fatalf("the guest did not print %q within %v", marker, within)
			}
		}
	}
	migrate := func(api, to string) {
		t.Helper()
		var out []byte
		var err error
		for deadline := time.Now().Add(time.Minute); ; {
			out, err = exec.Command(bin, "ctl", "--api-sock", api, "migrate", "-q", to).CombinedOutput()
			if err == nil || time.Now().After(deadline) || !(strings.Contains(string(out), "refused") || strings.Contains(string(out), "no such file")) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("ctl migrate %s: %v\n%s", to, err, out)
		}
		t.Logf("migration to %s: %s", to, out)
	}
	ended := func(p *vmmProc, what string) {
		t.Helper()
		select {
		case o := <-p.done:
			if !strings.Contains(o, "exit <nil>") {
				t.Fatalf("the %s VMM did not end cleanly after the migration:\n%s", what, o)
			}
		case <-time.After(time.Minute):
			t.Fatalf("the %s VMM still runs a minute after the migration", what)
		}
	}

	script := "vsockpeer count-serve 5000 & vsockpeer count-connect 6000 & wait; echo VSOCK-PEERS-DONE"
	srcAPI := filepath.Join(dir, "src.api")
	src := vmm("source", "--kernel", kernel, "--initrd", ird, "--memory", "256M", "--api-sock", srcAPI,
		"--vsock", "cid=3,uds="+srcUDS, "--cmdline", kvmtest.LinuxCmdline+` run="`+script+`"`)

	// The guest's connection to the host.
	type accepted struct {
		c   net.Conn
		err error
	}
	acc := make(chan accepted, 1)
	go func() { c, err := guestListener.Accept(); acc <- accepted{c, err} }()
	// The host's connection to the guest, once it listens.
	waitLine(src, "VSOCK-LISTENING", 20*time.Minute)
	hc, err := net.Dial("unix", srcUDS)
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	fmt.Fprintf(hc, "CONNECT 5000\n")
	hr := bufio.NewReader(hc)
	hc.SetReadDeadline(time.Now().Add(time.Minute))
	if line, err := hr.ReadString('\n'); err != nil || !strings.HasPrefix(line, "OK ") {
		t.Fatalf("CONNECT 5000: answer %q, %v", line, err)
	}
	hc.SetReadDeadline(time.Time{})
	hostInit := echoCounter("host-initiated", hc, hr)
	var gc net.Conn
	select {
	case a := <-acc:
		if a.err != nil {
			t.Fatal(a.err)
		}
		gc = a.c
	case <-time.After(5 * time.Minute):
		t.Fatal("the guest never connected to port 6000")
	}
	defer gc.Close()
	guestInit := echoCounter("guest-initiated", gc, bufio.NewReader(gc))
	guestInit.reach(t, 10, 3*time.Minute, "before migration")
	hostInit.reach(t, 10, 3*time.Minute, "before migration")

	// Same host, over a Unix socket: the connections move with the VM.
	migSock := filepath.Join(dir, "mig.sock")
	dstAPI := filepath.Join(dir, "dst.api")
	dst := vmm("destination", "--incoming", "unix:"+migSock, "--memory", "256M", "--api-sock", dstAPI,
		"--vsock", "cid=3,uds="+filepath.Join(dir, "dst.v"))
	migrate(srcAPI, "unix:"+migSock)
	ended(src, "source")
	g, h := guestInit.last.Load(), hostInit.last.Load()
	guestInit.reach(t, g+20, 3*time.Minute, "after the migration over a Unix socket")
	hostInit.reach(t, h+20, 3*time.Minute, "after the migration over a Unix socket")

	// Over TCP the sockets stay behind: the guest sees its connections
	// reset, the host sees them end.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcpAddr := l.Addr().String()
	l.Close()
	third := vmm("third", "--incoming", tcpAddr, "--memory", "256M", "--api-sock", filepath.Join(dir, "third.api"),
		"--vsock", "cid=3,uds="+filepath.Join(dir, "third.v"))
	migrate(dstAPI, tcpAddr)
	ended(dst, "destination")
	for _, c := range []*hostCounter{guestInit, hostInit} {
		select {
		case err := <-c.ended:
			t.Logf("after the TCP migration: %v", err)
		case <-time.After(2 * time.Minute):
			t.Fatalf("%s: the host's end still open two minutes after a TCP migration", c.name)
		}
	}
	for range 2 {
		line := waitLine(third, "VSOCK-COUNT-", 3*time.Minute)
		if !strings.Contains(line, "VSOCK-COUNT-END") {
			t.Fatalf("the guest printed %q, want its counting to end on the reset", line)
		}
		t.Logf("guest: %s", line)
	}
}
