package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

// consoleWatch collects a guest's serial output and wakes waiters when new
// bytes arrive. It works on bytes, not lines: a login prompt ends without a
// newline.
type consoleWatch struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	done   bool
	notify chan struct{}
}

func newConsoleWatch() *consoleWatch {
	return &consoleWatch{notify: make(chan struct{}, 1)}
}

// copyFrom reads r until EOF, also copying to log (a file for post-mortems).
func (c *consoleWatch) copyFrom(r io.Reader, log io.Writer) {
	b := make([]byte, 4096)
	for {
		n, err := r.Read(b)
		if n > 0 {
			c.mu.Lock()
			c.buf.Write(b[:n])
			c.mu.Unlock()
			if log != nil {
				log.Write(b[:n])
			}
			c.wake()
		}
		if err != nil {
			c.mu.Lock()
			c.done = true
			c.mu.Unlock()
			c.wake()
			return
		}
	}
}

func (c *consoleWatch) wake() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// waitFor blocks until marker appears in the output after offset from,
// returning the offset just past it, or an error when the output ends or
// the deadline passes first.
func (c *consoleWatch) waitFor(marker string, from int, deadline time.Time) (int, error) {
	for {
		c.mu.Lock()
		out := c.buf.Bytes()
		if from > len(out) {
			from = len(out)
		}
		i := bytes.Index(out[from:], []byte(marker))
		done := c.done
		c.mu.Unlock()
		if i >= 0 {
			return from + i + len(marker), nil
		}
		if done {
			return 0, fmt.Errorf("console ended before %q", marker)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return 0, fmt.Errorf("no %q on the console in time", marker)
		}
		t := time.NewTimer(left)
		select {
		case <-c.notify:
		case <-t.C:
		}
		t.Stop()
	}
}

// tail returns the last n lines of output.
func (c *consoleWatch) tail(n int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	lines := strings.Split(c.buf.String(), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func TestConsoleWatch(t *testing.T) {
	tests := []struct {
		name    string
		chunks  []string
		markers []string
		wantErr bool
	}{
		{"prompt without newline", []string{"Debian GNU/Linux 12\n\ngovisor-debian login: "}, []string{"login:"}, false},
		{"marker split across reads", []string{"govisor-debian lo", "gin: "}, []string{"login:"}, false},
		{"markers in order", []string{"login: root\n", "root@govisor-debian:~# echo DEBIAN-$((6*7))\nDEBIAN-42\n"},
			[]string{"login:", "root@govisor-debian", "DEBIAN-42"}, false},
		{"output ends first", []string{"Kernel panic - not syncing\n"}, []string{"login:"}, true},
		{"a marker only before the offset", []string{"DEBIAN-42 login: "}, []string{"login:", "DEBIAN-42"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pr, pw := io.Pipe()
			c := newConsoleWatch()
			go c.copyFrom(pr, nil)
			go func() {
				for _, s := range tc.chunks {
					pw.Write([]byte(s))
				}
				pw.Close()
			}()
			var err error
			off := 0
			for _, m := range tc.markers {
				if off, err = c.waitFor(m, off, time.Now().Add(time.Minute)); err != nil {
					break
				}
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v; output %q", err, tc.wantErr, c.tail(5))
			}
		})
	}
}

// TestDebianLogin boots a debootstrapped Debian 12 (guest/build-debian.sh)
// from a virtio-blk root disk with systemd to its serial login prompt, logs
// in as root and runs a command. Opt-in (`make test-debian`): on kvm_pvm
// this takes many minutes. It boots a copy of the image; the console goes to
// console.log in the guest's folder. GOVISOR_DEBIAN_CPUS sets the vCPU count
// (default 1).
func TestDebianLogin(t *testing.T) {
	dir := os.Getenv("GOVISOR_DEBIAN")
	if dir == "" {
		t.Skip("opt-in: run `make test-debian` (sets GOVISOR_DEBIAN to the guest built by guest/build-debian.sh)")
	}
	kvmtest.Require(t)
	// One vCPU by default: this host has two CPUs and guest-kernel code is
	// emulated, so a second vCPU mostly adds IPIs and contention.
	cpus := 1
	if s := os.Getenv("GOVISOR_DEBIAN_CPUS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("GOVISOR_DEBIAN_CPUS=%q: %v", s, err)
		}
		cpus = n
	}
	// Boot a sparse copy: the guest mounts its root read-write, and every
	// run should start from the image the build script made.
	disk := filepath.Join(t.TempDir(), "rootfs.ext4")
	if out, err := exec.Command("cp", "--sparse=always", filepath.Join(dir, "rootfs.ext4"), disk).CombinedOutput(); err != nil {
		t.Fatalf("copy the root disk: %v\n%s", err, out)
	}
	conLog, err := os.Create(filepath.Join(dir, "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	// Closed after the VMM is killed (cleanups run last-registered first).
	t.Cleanup(func() { conLog.Close() })
	// systemd.show_status: unit progress on the console, to see where a
	// slow boot is. rw: the root is mounted writable at once (no fsck).
	// service_watchdogs=0: journald's and udevd's 3-minute watchdogs fire
	// when emulated guest-kernel code is merely slow. dump_core=0: should
	// PID 1 crash, say so at once instead of writing its core for minutes.
	cmd := exec.Command(govisorBin(t), "run", "--kernel", filepath.Join(dir, "bzImage"),
		"--cpus", strconv.Itoa(cpus), "--memory", "1G",
		"--disk", "path="+disk, "--rng",
		"--cmdline", "console=ttyS0 root=/dev/vda rw rodata=off quiet systemd.show_status=1 systemd.service_watchdogs=0 systemd.dump_core=0")
	in, con, stderr, start := startConsoleVMM(t, cmd, conLog)
	deadline := start.Add(100 * time.Minute)
	fail := func(err error) {
		t.Helper()
		t.Fatalf("after %v: %v\nlast console lines:\n%s\nVMM stderr:\n%s", time.Since(start).Round(time.Second),
			err, con.tail(40), stderr.String())
	}

	off, err := con.waitFor("login:", 0, deadline)
	if err != nil {
		fail(err)
	}
	t.Logf("Debian 12 (%d vCPUs) reached its login prompt in %v", cpus, time.Since(start).Round(time.Second))
	// Root has no password on this test guest. The command's echo shows
	// "$((6*7))"; only a shell that ran it prints 42.
	if _, err := io.WriteString(in, "root\n"); err != nil {
		fail(err)
	}
	if off, err = con.waitFor("root@govisor-debian", off, deadline); err != nil {
		fail(err)
	}
	if _, err := io.WriteString(in, "cat /etc/debian_version; echo DEBIAN-$((6*7))\n"); err != nil {
		fail(err)
	}
	if _, err = con.waitFor("DEBIAN-42", off, deadline); err != nil {
		fail(err)
	}
	t.Logf("logged in as root and ran a command %v after start", time.Since(start).Round(time.Second))
}

// startConsoleVMM starts cmd (a `govisor run` whose console is its stdin
// and stdout) and watches its console, copied to conLog when not nil; the
// VMM is killed when the test ends. It returns the console's input, the
// watch, the VMM's stderr and when it started.
func startConsoleVMM(t *testing.T, cmd *exec.Cmd, conLog io.Writer) (io.Writer, *consoleWatch, *bytes.Buffer, time.Time) {
	t.Helper()
	stderr := new(bytes.Buffer)
	cmd.Stderr = stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	con := newConsoleWatch()
	go con.copyFrom(out, conLog)
	return in, con, stderr, start
}
