package cli

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/vmmapi"
)

func TestParseBandwidth(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"100M", 100 << 20, true}, {"100M/s", 100 << 20, true}, {"512K", 512 << 10, true}, {"1G", 1 << 30, true},
		{"1.5M", 3 << 19, true}, {"4096", 4096, true}, {"0", 0, true},
		{"", 0, false}, {"fast", 0, false}, {"-1M", 0, false}, {"10Q", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseBandwidth(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseBandwidth(%q) = %d, %v; want %d, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "--bandwidth") {
			t.Errorf("ParseBandwidth(%q) error %q does not name the flag", tt.in, err)
		}
	}
}

func TestMigrateFlagsRequest(t *testing.T) {
	tests := []struct {
		name    string
		f       migrateFlags
		want    vmmapi.MigrateRequest
		wantErr string
	}{
		{"defaults", migrateFlags{maxDowntimeMS: 300}, vmmapi.MigrateRequest{To: "h:1", MaxDowntimeMS: 300}, ""},
		{"duration wins", migrateFlags{maxDowntimeMS: 300, maxDowntime: 50 * time.Millisecond, bandwidth: "2M"},
			vmmapi.MigrateRequest{To: "h:1", MaxDowntimeMS: 50, Bandwidth: 2 << 20}, ""},
		{"tiny downtime", migrateFlags{maxDowntime: time.Microsecond}, vmmapi.MigrateRequest{}, "--max-downtime"},
		{"bad bandwidth", migrateFlags{bandwidth: "lots"}, vmmapi.MigrateRequest{}, "--bandwidth"},
		{"TLS half given", migrateFlags{tlsCert: "c.pem", tlsCA: "ca.pem"}, vmmapi.MigrateRequest{}, "go together"},
		{"TLS paths made absolute", migrateFlags{tlsCert: "c.pem", tlsKey: "/k.pem", tlsCA: "ca.pem"},
			vmmapi.MigrateRequest{To: "h:1", TLSCert: abs(t, "c.pem"), TLSKey: "/k.pem", TLSCA: abs(t, "ca.pem")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.f.request("h:1")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("request = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func abs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestProgressLine(t *testing.T) {
	tests := []struct {
		p    vmmapi.MigrateProgress
		want []string
	}{
		{vmmapi.MigrateProgress{State: "running", BytesSent: 3 << 20, Bandwidth: 1 << 20}, []string{"full copy", "sent 3.0 MiB at 1.0 MiB/s"}},
		{vmmapi.MigrateProgress{State: "running", Round: 4, DirtyRate: 1234, RemainingPages: 56, ExpectedDowntimeMS: 7},
			[]string{"round 4", "dirty rate 1234 pages/s", "remaining 56 pages", "expected downtime 7 ms"}},
		{vmmapi.MigrateProgress{State: "running", Round: 5, Paused: true}, []string{"paused"}},
	}
	for _, tt := range tests {
		got := progressLine(tt.p)
		for _, w := range tt.want {
			if !strings.Contains(got, w) {
				t.Errorf("progressLine(%+v) = %q, lacks %q", tt.p, got, w)
			}
		}
	}
}

// dirtyGuest prints UP, then keeps incrementing one word in each page of
// [0x200000, 0x400000): 2 MiB that stay dirty while it runs. Each sweep
// ends with a write to port 0x80, so its VMM counts exits while it runs.
func dirtyGuest() []byte {
	var a kvmtest.Asm
	a.Print("UP\n")
	outer := a.Len()
	a.MovDX(0x80).OutAL()
	a.MovEAX(0x200000)
	inner := a.Len()
	a.B = append(a.B, 0xFF, 0x00)                   // inc dword [eax]
	a.B = append(a.B, 0x05, 0x00, 0x10, 0x00, 0x00) // add eax, 0x1000
	a.B = append(a.B, 0x3D, 0x00, 0x00, 0x40, 0x00) // cmp eax, 0x400000
	a.B = append(a.B, 0x72, byte(int8(inner-(a.Len()+2))))
	a.JmpBack(outer)
	return a.B
}

// vmmProc is a `govisor run` process under test.
type vmmProc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	sock string
	done chan error
}

func startVMM(t *testing.T, sock string, args ...string) *vmmProc {
	t.Helper()
	p := &vmmProc{out: &syncBuffer{}, sock: sock, done: make(chan error, 1)}
	p.cmd = exec.Command(govisorBin(t), append([]string{"run", "--api-sock", sock}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// waitAPI waits until the VMM's API answers.
func (p *vmmProc) waitAPI(t *testing.T) vmmapi.Info {
	t.Helper()
	c := vmmapi.NewClient(p.sock)
	for deadline := time.Now().Add(20 * time.Second); ; {
		info, err := c.Info(t.Context())
		if err == nil {
			return info
		}
		if time.Now().After(deadline) {
			t.Fatalf("VMM API: %v\n%s", err, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitExit waits for the process to end and returns its error.
func (p *vmmProc) waitExit(t *testing.T, what string) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: still running\n%s", what, p.out.String())
		return nil
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// runCtl runs `govisor ctl` to completion.
func runCtl(t *testing.T, sock string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(govisorBin(t), append([]string{"ctl", "--api-sock", sock}, args...)...)
	var o, e syncBuffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// guestExits returns the VM's total exits, which grow while its guest runs.
func guestExits(t *testing.T, sock string) uint64 {
	t.Helper()
	st, err := vmmapi.NewClient(sock).Stats(t.Context())
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	return st.ExitsTotal
}

// startMigrationPair starts a VMM running dirtyGuest and a destination
// VMM waiting for its migration at addr, both with their APIs up.
func startMigrationPair(t *testing.T, dir string) (src, dst *vmmProc, addr string) {
	t.Helper()
	elf := filepath.Join(dir, "dirty.elf")
	if err := os.WriteFile(elf, kvmtest.PVHELF(dirtyGuest(), 0x100000), 0o644); err != nil {
		t.Fatal(err)
	}
	src = startVMM(t, filepath.Join(dir, "src.sock"), "--kernel", elf, "--boot", "pvh", "--memory", "64M")
	src.waitAPI(t)
	addr = freeAddr(t)
	dst = startVMM(t, filepath.Join(dir, "dst1.sock"), "--incoming", addr, "--memory", "64M")
	dst.waitAPI(t)
	return src, dst, addr
}

// ctlRun is a `govisor ctl migrate` process under test.
type ctlRun struct {
	cmd      *exec.Cmd
	out, err syncBuffer
	done     chan error
}

// startCtlMigrate starts `govisor ctl migrate addr args...` against the VMM
// at sock and waits until its API shows the migration running with bytes
// sent (the API answers while PUT /migrate runs).
func startCtlMigrate(t *testing.T, sock, addr string, args ...string) (*ctlRun, vmmapi.MigrateProgress) {
	t.Helper()
	r := &ctlRun{done: make(chan error, 1)}
	r.cmd = exec.Command(govisorBin(t), append([]string{"ctl", "--api-sock", sock, "migrate", addr}, args...)...)
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.err
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	t.Cleanup(func() { r.cmd.Process.Kill() })
	c := vmmapi.NewClient(sock)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		p, err := c.MigrateProgress(t.Context())
		if err == nil && p.State == vmmapi.MigrateRunning && p.BytesSent > 0 {
			return r, p
		}
		if time.Now().After(deadline) {
			t.Fatalf("never saw the migration running with bytes sent: %+v, %v\nctl: %s %s", p, err, r.out.String(), r.err.String())
		}
	}
}

// TestMigrateProgressCancelAndRetry migrates a guest that keeps 2 MiB dirty
// under a low bandwidth limit: `govisor ctl migrate` prints progress, the
// API shows it running, and SIGINT cancels it; the source keeps running and
// a later migration to a new destination succeeds.
func TestMigrateProgressCancelAndRetry(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	src, dst1, addr1 := startMigrationPair(t, dir)

	// The API answers while the migration runs, and shows it running.
	ctl, p := startCtlMigrate(t, src.sock, addr1, "--bandwidth", "256K", "--max-downtime", "20ms")
	if p.To != addr1 || p.ElapsedMS <= 0 {
		t.Errorf("running progress %+v", p)
	}
	// Wait for the ctl's first progress line, then Ctrl-C it.
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(ctl.err.String(), "migrate: round"); {
		if time.Now().After(deadline) {
			t.Fatalf("no progress line from ctl migrate: %q", ctl.err.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctl.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-ctl.done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 130 || !strings.Contains(ctl.err.String(), "cancelled") {
			t.Fatalf("ctl migrate after Ctrl-C: %v\nstderr: %s", err, ctl.err.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("ctl migrate did not end after Ctrl-C: %s", ctl.err.String())
	}
	t.Logf("ctl stderr:\n%s", ctl.err.String())
	// `govisor ctl migration` shows how it ended.
	out, errOut, err := runCtl(t, src.sock, "migration")
	var after vmmapi.MigrateProgress
	if err != nil || json.Unmarshal([]byte(out), &after) != nil || after.State != vmmapi.MigrateCancelled || after.Error == "" {
		t.Fatalf("ctl migration after cancel: %v %q\n%s", err, out, errOut)
	}
	if _, errOut, err := runCtl(t, src.sock, "migrate-cancel"); err == nil || !strings.Contains(errOut, "no migration is running") {
		t.Fatalf("migrate-cancel with nothing running: %v %s", err, errOut)
	}
	// The source keeps running: its guest still exits to the VMM.
	if info := src.waitAPI(t); info.State != "running" {
		t.Fatalf("source after cancel: %+v", info)
	}
	before := guestExits(t, src.sock)
	for deadline := time.Now().Add(20 * time.Second); guestExits(t, src.sock) == before; {
		if time.Now().After(deadline) {
			t.Fatal("the source guest stopped running after the cancel")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The aborted destination gives up.
	if err := dst1.waitExit(t, "destination after cancel"); err == nil {
		t.Errorf("the destination of a cancelled migration exited 0\n%s", dst1.out.String())
	}

	// A later migration succeeds.
	addr2 := freeAddr(t)
	dst2 := startVMM(t, filepath.Join(dir, "dst2.sock"), "--incoming", addr2, "--memory", "64M")
	dst2.waitAPI(t)
	out, errOut, err = runCtl(t, src.sock, "migrate", addr2, "--max-downtime", "500ms", "--quiet")
	if err != nil {
		t.Fatalf("second migration: %v\n%s\nsource: %s\ndestination: %s", err, errOut, src.out.String(), dst2.out.String())
	}
	var res vmmapi.MigrateResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.BytesSent == 0 {
		t.Fatalf("result %q: %v", out, err)
	}
	if errOut != "" {
		t.Errorf("--quiet printed %q", errOut)
	}
	if err := src.waitExit(t, "source after migrating"); err != nil {
		t.Fatalf("source: %v\n%s", err, src.out.String())
	}
	if info := dst2.waitAPI(t); info.State != "running" {
		t.Fatalf("destination: %+v", info)
	}
	before = guestExits(t, dst2.sock)
	for deadline := time.Now().Add(20 * time.Second); guestExits(t, dst2.sock) == before; {
		if time.Now().After(deadline) {
			t.Fatal("the guest does not run on the destination")
		}
		time.Sleep(20 * time.Millisecond)
	}
	runCtl(t, dst2.sock, "stop")
	dst2.waitExit(t, "destination after stop")
}
