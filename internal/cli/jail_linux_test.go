package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/govisor/govisor/internal/jail"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/vmm"
	"github.com/govisor/govisor/internal/vmmapi"
)

// jailHost readies the lab host for jails: cgroup v2 mounted (the lab's
// initramfs does not mount it), as a systemd host has it.
func jailHost(t *testing.T) {
	t.Helper()
	kvmtest.Require(t)
	if os.Geteuid() != 0 {
		t.Fatal("jail tests run as root (in the lab host)")
	}
	if !jail.CgroupV2() {
		if err := unix.Mount("cgroup2", jail.CgroupRoot, "cgroup2", 0, ""); err != nil {
			t.Fatalf("mount cgroup2 on %s: %v", jail.CgroupRoot, err)
		}
	}
}

// busyGuest writes a tiny PVH guest that prints UP and then counts in
// memory for ever.
func busyGuest(t *testing.T, dir string) string {
	var a kvmtest.Asm
	a.Print("UP\n")
	a.SpinForever(func(*kvmtest.Asm) {}, func(a *kvmtest.Asm) { a.IncMem64(0x3000) })
	elf := filepath.Join(dir, "busy.elf")
	if err := os.WriteFile(elf, kvmtest.PVHELF(a.B, 0x100000), 0o644); err != nil {
		t.Fatal(err)
	}
	return elf
}

// startJailed starts `govisor run --jail` with args; the process it
// returns is the jail's parent, whose one child is the VMM.
func startJailed(t *testing.T, env []string, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(govisorBin(t), append([]string{"run", "--jail"}, args...)...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if pid, err := childPID(cmd.Process.Pid); err == nil {
			syscall.Kill(pid, syscall.SIGKILL) // the VMM this test started
		}
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd, out
}

// childPID is the one child of pid (the jailed VMM of a jail's parent),
// found by the parent pid of every process (a thread's children file
// lists only that thread's).
func childPID(pid int) (int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	var kids []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n))
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(b), ')')
		if f := strings.Fields(string(b[i+1:])); len(f) > 1 && f[1] == strconv.Itoa(pid) {
			kids = append(kids, n)
		}
	}
	if len(kids) != 1 {
		return 0, fmt.Errorf("process %d has children %v", pid, kids)
	}
	return kids[0], nil
}

// waitFor polls cond for up to 20 s.
func waitFor(t *testing.T, what string, cond func() bool, out *syncBuffer) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; output:\n%s", what, out.String())
		}
	}
}

// ctlInfo is `govisor ctl info` on sock, retried while the VMM starts.
func ctlInfo(t *testing.T, sock string, vmmOut *syncBuffer) vmmapi.Info {
	t.Helper()
	var info vmmapi.Info
	var out, errOut string
	var err error
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out, errOut, err = runCtl(t, sock, "info")
		if err == nil && json.Unmarshal([]byte(out), &info) == nil && info.State != "starting" || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("ctl info: %v\n%s%s\nthe VMM's output:\n%s", err, out, errOut, vmmOut.String())
	}
	return info
}

// procStatus reads the fields of /proc/PID/status.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// checkJailed asserts what issue 15 asks of a jailed VMM: unprivileged,
// filtered, in namespaces of its own, seeing none of the host's files,
// in its cgroup.
func checkJailed(t *testing.T, pid int, id, kernel string, memMiB uint64) {
	t.Helper()
	st := procStatus(t, pid)
	for _, k := range []string{"Uid", "Gid"} {
		for _, f := range strings.Fields(st[k]) {
			if f == "0" {
				t.Errorf("%s: %s: a jailed VMM has no id 0", k, st[k])
			}
		}
	}
	want := map[string]string{"Seccomp": "2", "NoNewPrivs": "1", "CapEff": "0000000000000000",
		"CapPrm": "0000000000000000", "CapBnd": "0000000000000000", "CapAmb": "0000000000000000"}
	for k, v := range want {
		if st[k] != v {
			t.Errorf("%s: %q, want %q", k, st[k], v)
		}
	}
	for _, ns := range []string{"mnt", "pid", "ipc", "uts"} {
		mine, _ := os.Readlink("/proc/self/ns/" + ns)
		its, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
		if err != nil || its == mine {
			t.Errorf("namespace %s: the VMM's %q (%v), the test's %q: want its own", ns, its, err, mine)
		}
	}
	root := fmt.Sprintf("/proc/%d/root", pid)
	exe, _ := os.Executable()
	for _, p := range []string{"/etc", "/bin", "/sbin", "/usr", "/home", exe} {
		if _, err := os.Lstat(root + p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the jailed VMM sees the host's %s (%v)", p, err)
		}
	}
	if _, err := os.Stat(root + kernel); err != nil {
		t.Errorf("the jailed VMM does not see its kernel %s: %v", kernel, err)
	}
	cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if !strings.Contains(string(cg), "/govisor/"+id+"-") {
		t.Errorf("cgroup %q, want govisor/%s-*", cg, id)
	}
	_, path, _ := strings.Cut(strings.TrimSpace(string(cg)), "::")
	mem, _ := os.ReadFile(filepath.Join(jail.CgroupRoot, path, "memory.max"))
	if want := (memMiB + jail.OverheadMiB) << 20; strings.TrimSpace(string(mem)) != strconv.FormatUint(want, 10) {
		t.Errorf("memory.max %q, want %d", mem, want)
	}
	t.Logf("jailed VMM %d: Uid %s, Seccomp %s, NoNewPrivs %s, CapEff %s, cgroup %s", pid, st["Uid"], st["Seccomp"], st["NoNewPrivs"], st["CapEff"], strings.TrimSpace(string(cg)))
}

// TestJailedVMMSnapshotRestore runs a tiny guest jailed, checks the jail,
// the console and the API, snapshots it, and restores the snapshot in a
// second jail.
func TestJailedVMMSnapshotRestore(t *testing.T) {
	jailHost(t)
	dir := t.TempDir()
	elf := busyGuest(t, t.TempDir()) // outside the VM's folder: bound in read-only
	sock := filepath.Join(dir, "api.sock")
	parent, out := startJailed(t, nil, "--jail-dir", dir, "--jail-id", "snap-src", "--kernel", elf, "--boot", "pvh",
		"--memory", "64M", "--cpus", "2", "--api-sock", sock)
	waitFor(t, "the guest's UP on the console", func() bool { return strings.Contains(out.String(), "UP") }, out)
	if info := ctlInfo(t, sock, out); info.State != "running" || info.CPUs != 2 {
		t.Fatalf("info %+v\n%s", info, out.String())
	}
	pid, err := childPID(parent.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	checkJailed(t, pid, "snap-src", elf, 64)

	snap := filepath.Join(dir, "snap")
	if _, errOut, err := runCtl(t, sock, "snapshot", snap); err != nil {
		t.Fatalf("ctl snapshot: %v\n%s\n%s", err, errOut, out.String())
	}
	syscall.Kill(pid, syscall.SIGKILL)
	parent.Wait()

	parent2, out2 := startJailed(t, nil, "--jail-dir", dir, "--jail-id", "snap-dst", "--restore", snap, "--api-sock", sock)
	if info := ctlInfo(t, sock, out2); info.State != "running" || info.CPUs != 2 || info.MemoryMiB != 64 {
		t.Fatalf("restored info %+v\n%s", info, out2.String())
	}
	pid2, err := childPID(parent2.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	checkJailed(t, pid2, "snap-dst", snap, 64)
	if _, errOut, err := runCtl(t, sock, "stop"); err != nil {
		t.Fatalf("ctl stop: %v\n%s", err, errOut)
	}
	if err := parent2.Wait(); err != nil {
		t.Fatalf("restored jailed VMM after stop: %v\n%s", err, out2.String())
	}
	if left, _ := filepath.Glob(jail.CgroupDir("snap-*")); len(left) > 0 {
		t.Errorf("the jails' cgroups outlived them: %v", left)
	}
	if left, _ := filepath.Glob(jail.RootDir("snap-*")); len(left) > 0 {
		t.Errorf("the jails' roots outlived them: %v", left)
	}
}

// TestJailedVMMMigrate live-migrates a tiny guest between two jailed
// VMMs over loopback TCP, pre-copy and post-copy (the destination's
// userfaultfd comes from the jail's own /dev/userfaultfd: its uid may not
// call userfaultfd(2) for kernel faults).
func TestJailedVMMMigrate(t *testing.T) {
	jailHost(t)
	t.Run("pre-copy", func(t *testing.T) { jailedMigrate(t, false) })
	t.Run("post-copy", func(t *testing.T) { jailedMigrate(t, true) })
}

func jailedMigrate(t *testing.T, postCopy bool) {
	var a kvmtest.Asm
	a.Print("UP\n")
	loop := a.Len()
	a.IncMem64(0x3000)
	if postCopy {
		a.IncPages(0x400000, 1024) // rewrites 4 MiB: it cannot meet 1 ms
	}
	a.Cpuid().JmpBack(loop) // a CPUID exit each round (kvmtest.Asm SpinForever says why): rounds that rewrite 4 MiB are long
	elf := filepath.Join(t.TempDir(), "busy.elf")
	if err := os.WriteFile(elf, kvmtest.PVHELF(a.B, 0x100000), 0o644); err != nil {
		t.Fatal(err)
	}
	id := "pre"
	if postCopy {
		id = "post"
	}
	srcDir, dstDir := t.TempDir(), t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	srcSock, dstSock := filepath.Join(srcDir, "api.sock"), filepath.Join(dstDir, "api.sock")
	src, srcOut := startJailed(t, nil, "--jail-dir", srcDir, "--jail-id", "mig-src-"+id, "--kernel", elf, "--boot", "pvh",
		"--memory", "64M", "--cpus", "2", "--api-sock", srcSock)
	dst, dstOut := startJailed(t, nil, "--jail-dir", dstDir, "--jail-id", "mig-dst-"+id, "--incoming", addr,
		"--memory", "64M", "--cpus", "2", "--api-sock", dstSock)
	ctlInfo(t, srcSock, srcOut)
	ctlInfo(t, dstSock, dstOut)
	args := []string{"migrate", addr, "--max-downtime-ms", "50"}
	if postCopy {
		// 2 MiB/s: the full copy takes about 2 s, in which the guest
		// surely runs and dirties a page (in a TCG lab the copy's own
		// threads can starve it for a fast copy's 300 ms: a CI run saw
		// no dirty page then, so pre-copy converged and no post-copy
		// happened), and one dirty page then cannot meet 1 ms.
		args = []string{"migrate", addr, "--max-downtime", "1ms", "--post-copy", "--bandwidth", "2M"}
	}
	out, errOut, err := runCtl(t, srcSock, args...)
	if err != nil {
		t.Fatalf("migrate: %v\n%s%s\nsource:\n%s\ndestination:\n%s", err, out, errOut, srcOut.String(), dstOut.String())
	}
	var res vmmapi.MigrateResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.BytesSent == 0 {
		t.Fatalf("migrate result %+v, %v: %s", res, err, out)
	}
	if postCopy && res.PostCopyPages == 0 {
		t.Fatalf("no pages went after the handover: %+v", res)
	}
	if err := src.Wait(); err != nil {
		t.Fatalf("source after migrating: %v\n%s", err, srcOut.String())
	}
	if info := ctlInfo(t, dstSock, dstOut); info.State != "running" || info.CPUs != 2 {
		t.Fatalf("destination info %+v\n%s", info, dstOut.String())
	}
	pid, err := childPID(dst.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	st := procStatus(t, pid)
	if st["Seccomp"] != "2" || strings.HasPrefix(st["Uid"], "0") {
		t.Errorf("destination VMM: Seccomp %s, Uid %s", st["Seccomp"], st["Uid"])
	}
	runCtl(t, dstSock, "stop")
	dst.Wait()
}

// TestJailedVMMSeccompViolation: a jailed VMM that makes a syscall off
// its allow-list (the test-only hook) is ended, and govisor run says so,
// naming the syscall.
func TestJailedVMMSeccompViolation(t *testing.T) {
	jailHost(t)
	dir := t.TempDir()
	elf := busyGuest(t, dir)
	cmd, out := startJailed(t, []string{vmm.TestSeccompViolation + "=1"}, "--jail-dir", dir, "--jail-id", "sigsys",
		"--kernel", elf, "--boot", "pvh", "--memory", "64M")
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 128+int(syscall.SIGSYS) {
		t.Fatalf("exit %v, want status %d\n%s", err, 128+int(syscall.SIGSYS), out.String())
	}
	want := "killed by its seccomp filter (SIGSYS): syscall 163 (acct)"
	if !strings.Contains(out.String(), want) {
		t.Fatalf("output lacks %q:\n%s", want, out.String())
	}
	if strings.Contains(out.String(), "the filter let it through") {
		t.Fatalf("the forbidden syscall ran:\n%s", out.String())
	}
}
