package cli

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

// vsockPattern is what each side sends (the same function as in
// guest/vsockpeer, which runs in the guest).
func vsockPattern(seed string) []byte {
	b := make([]byte, 1<<20)
	for i := range b {
		b[i] = byte((i*7 + len(seed)*13 + int(seed[0])) % 251)
	}
	return b
}

// TestLinuxVsock boots Linux with virtio-vsock and exchanges 1 MiB each way
// between a host process and a guest process, in both directions of
// connection: the host connects through the Unix socket (CONNECT <port>),
// and the guest connects to host port 6000 (reaching <uds>_6000).
func TestLinuxVsock(t *testing.T) {
	t.Parallel() // each boots Linux: minutes on kvm_pvm
	kernel, initrd := kvmtest.LinuxGuest(t)
	dir := t.TempDir()
	peer := kvmtest.Binary(t, "vsockpeer", "github.com/govisor/govisor/guest/vsockpeer")
	peerBin, _ := os.ReadFile(peer)
	base, err := os.ReadFile(initrd)
	if err != nil {
		t.Fatal(err)
	}
	for len(base)%4 != 0 {
		base = append(base, 0)
	}
	ird := filepath.Join(dir, "initrd.cpio")
	os.WriteFile(ird, append(base, kvmtest.CPIO([]kvmtest.CPIOFile{{Name: "bin/vsockpeer", Mode: 0o755, Data: peerBin}})...), 0o644)

	uds := filepath.Join(dir, "v.sock")
	hostListener, err := net.Listen("unix", uds+"_6000")
	if err != nil {
		t.Fatal(err)
	}
	defer hostListener.Close()
	guestSends := sha256.Sum256(vsockPattern("guest"))
	hostData := vsockPattern("host")
	hostSends := sha256.Sum256(hostData)
	errs := make(chan error, 2)
	// Guest-initiated: the guest sends first, then reads.
	go func() {
		c, err := hostListener.Accept()
		if err != nil {
			errs <- err
			return
		}
		defer c.Close()
		in := make([]byte, 1<<20)
		if _, err := io.ReadFull(c, in); err != nil {
			errs <- fmt.Errorf("guest-initiated: read: %w", err)
			return
		}
		if sha256.Sum256(in) != guestSends {
			errs <- fmt.Errorf("guest-initiated: the host received corrupted data")
			return
		}
		_, err = c.Write(hostData)
		errs <- err
	}()

	script := "vsockpeer serve 5000 & sleep 2; vsockpeer connect 6000; wait; echo VSOCK-DONE"
	cmd := exec.Command(govisorBin(t), "run", "--kernel", kernel, "--initrd", ird, "--memory", "256M",
		"--vsock", "cid=3,uds="+uds, "--cmdline", kvmtest.LinuxCmdline+` run="`+script+`"`)
	con, stderr, _ := followConsole(t, cmd, func(line string) {
		if strings.Contains(line, "VSOCK-LISTENING") {
			// Host-initiated: the host sends first, then reads.
			go func() {
				c, err := net.Dial("unix", uds)
				if err != nil {
					errs <- err
					return
				}
				defer c.Close()
				fmt.Fprintf(c, "CONNECT 5000\n")
				line, err := bufio.NewReader(io.LimitReader(c, 64)).ReadString('\n')
				if err != nil || !strings.HasPrefix(line, "OK ") {
					errs <- fmt.Errorf("host-initiated: handshake %q: %v", line, err)
					return
				}
				if _, err := c.Write(hostData); err != nil {
					errs <- err
					return
				}
				in := make([]byte, 1<<20)
				if _, err := io.ReadFull(c, in); err != nil {
					errs <- fmt.Errorf("host-initiated: read: %w", err)
					return
				}
				if sha256.Sum256(in) != guestSends {
					errs <- fmt.Errorf("host-initiated: the host received corrupted data")
					return
				}
				errs <- nil
			}()
		}
	})
	for i := 0; i < 2; i++ {
		select {
		case err := <-errs:
			if err != nil {
				t.Errorf("%v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("a vsock exchange did not finish")
		}
	}
	want := fmt.Sprintf("VSOCK-RX %x", hostSends)
	if strings.Count(con, want) != 2 || !strings.Contains(con, "VSOCK-DONE") {
		t.Fatalf("the guest did not receive the host's 1 MiB in both directions (want 2 x %q); console:\n%s\nstderr:\n%s", want, con, stderr)
	}
}
