package cli

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/vmmapi"
)

// TestSnapshotRestoreThroughCLI runs a busy tiny guest with an API socket,
// snapshots it with `govisor ctl`, kills the VMM, and restores the snapshot
// in a new process that runs on until stopped through its own socket.
func TestSnapshotRestoreThroughCLI(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	var a kvmtest.Asm
	a.Print("UP\n")
	a.SpinForever(func(*kvmtest.Asm) {}, func(a *kvmtest.Asm) { a.IncMem64(0x3000) })
	elf := filepath.Join(dir, "busy.elf")
	os.WriteFile(elf, kvmtest.PVHELF(a.B, 0x100000), 0o644)
	sock := filepath.Join(dir, "vmm.sock")
	bin := govisorBin(t)

	start := func(args ...string) (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.Command(bin, args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill() }) // only the VMM this test started
		return cmd, &out
	}
	ctl := func(args ...string) vmmapi.Info {
		t.Helper()
		var info vmmapi.Info
		var out, errOut string
		var err error
		for deadline := time.Now().Add(10 * time.Second); ; {
			// JSON on stdout only: stderr may carry progress and warnings.
			out, errOut, err = runCtl(t, sock, args...)
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("govisor ctl %v: %v\n%s%s", args, err, out, errOut)
		}
		if err := json.Unmarshal([]byte(out), &info); err != nil {
			t.Fatalf("ctl output %q: %v\nstderr: %s", out, err, errOut)
		}
		return info
	}

	vmm, out := start("run", "--kernel", elf, "--boot", "pvh", "--memory", "64M", "--cpus", "2", "--api-sock", sock)
	info := ctl("info")
	for deadline := time.Now().Add(10 * time.Second); info.State == "starting" && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		info = ctl("info")
	}
	if info.State != "running" || info.CPUs != 2 {
		t.Fatalf("info = %+v", info)
	}
	if info := ctl("pause"); info.State != "paused" {
		t.Fatalf("after pause: %+v", info)
	}
	if info := ctl("resume"); info.State != "running" {
		t.Fatalf("after resume: %+v", info)
	}
	snap := filepath.Join(dir, "snap")
	if info := ctl("snapshot", snap); info.State != "running" {
		t.Fatalf("after snapshot the VM should run on: %+v", info)
	}
	vmm.Process.Kill()
	vmm.Wait()

	vmm2, out2 := start("run", "--restore", snap, "--api-sock", sock)
	info = ctl("info")
	for deadline := time.Now().Add(10 * time.Second); info.State == "starting" && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		info = ctl("info")
	}
	if info.State != "running" || info.CPUs != 2 || info.MemoryMiB != 64 {
		t.Fatalf("restored VM info = %+v\n%s", info, out2.String())
	}
	ctl("stop")
	done := make(chan error, 1)
	go func() { done <- vmm2.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("restored VMM after stop: %v\n%s", err, out2.String())
		}
	case <-time.After(30 * time.Second):
		vmm2.Process.Kill()
		t.Fatal("restored VMM did not stop")
	}
	if out2.String() != "" {
		t.Errorf("the restored guest must not boot again; output %q (first run: %q)", out2.String(), out.String())
	}
}

// TestMigrateThroughCLI live-migrates a busy tiny guest between two
// `govisor run` processes on loopback with `govisor ctl migrate`.
func TestMigrateThroughCLI(t *testing.T) {
	kvmtest.Require(t)
	t.Run("pre-copy", func(t *testing.T) { migrateThroughCLI(t, false) })
	// A guest that rewrites 4 MiB in a loop cannot meet 1 ms: it switches
	// to post-copy, and the destination VMM keeps the connection open
	// while the rest of the memory follows.
	t.Run("post-copy", func(t *testing.T) { migrateThroughCLI(t, true) })
}

func migrateThroughCLI(t *testing.T, postCopy bool) {
	dir := t.TempDir()
	var a kvmtest.Asm
	a.Print("UP\n")
	loop := a.Len()
	a.IncMem64(0x3000)
	if postCopy {
		a.IncPages(0x400000, 1024)
	}
	a.Cpuid().JmpBack(loop) // a CPUID exit each round (kvmtest.Asm SpinForever says why): rounds that rewrite 4 MiB are long
	elf := filepath.Join(dir, "busy.elf")
	os.WriteFile(elf, kvmtest.PVHELF(a.B, 0x100000), 0o644)
	bin := govisorBin(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	srcSock, dstSock := filepath.Join(dir, "src.sock"), filepath.Join(dir, "dst.sock")
	src := exec.Command(bin, "run", "--kernel", elf, "--boot", "pvh", "--memory", "64M", "--cpus", "2", "--api-sock", srcSock)
	dst := exec.Command(bin, "run", "--incoming", addr, "--memory", "64M", "--cpus", "2", "--api-sock", dstSock)
	var srcOut, dstOut bytes.Buffer
	src.Stdout, src.Stderr = &srcOut, &srcOut
	dst.Stdout, dst.Stderr = &dstOut, &dstOut
	for _, c := range []*exec.Cmd{src, dst} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		defer c.Process.Kill()
	}
	// ctl returns stdout, where the JSON result is; stderr carries the
	// migration's progress lines and goes into failure messages only.
	ctl := func(sock string, args ...string) ([]byte, string) {
		t.Helper()
		var out, errOut string
		var err error
		for deadline := time.Now().Add(10 * time.Second); ; {
			out, errOut, err = runCtl(t, sock, args...)
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("ctl %v: %v\n%s%s\nsource:\n%s\ndestination:\n%s", args, err, out, errOut, srcOut.String(), dstOut.String())
		}
		return []byte(out), errOut
	}
	ctl(srcSock, "info")
	var res vmmapi.MigrateResult
	args := []string{"migrate", addr, "--max-downtime-ms", "50"}
	if postCopy {
		// 2 MiB/s: the full copy takes about 2 s, in which the guest
		// surely runs and dirties a page (in a TCG lab the copy's own
		// threads can starve it for a fast copy's 300 ms: a CI run saw
		// no dirty page then, so pre-copy converged and no post-copy
		// happened), and one dirty page then cannot meet 1 ms.
		args = []string{"migrate", addr, "--max-downtime", "1ms", "--post-copy", "--bandwidth", "2M"}
	}
	out, errOut := ctl(srcSock, args...)
	if err := json.Unmarshal(out, &res); err != nil || res.BytesSent == 0 {
		t.Fatalf("migrate result %+v, %v\nstdout: %s\nstderr: %s", res, err, out, errOut)
	}
	if postCopy && res.PostCopyPages == 0 {
		t.Fatalf("no pages went after the handover: %+v", res)
	}
	t.Logf("migration: %+v", res)
	done := make(chan error, 1)
	go func() { done <- src.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("source after migration: %v\n%s", err, srcOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("source VMM still running after migrating away")
	}
	var info vmmapi.Info
	out, errOut = ctl(dstSock, "info")
	if err := json.Unmarshal(out, &info); err != nil || info.State != "running" || info.CPUs != 2 {
		t.Fatalf("destination info %+v, %v\nstdout: %s\nstderr: %s", info, err, out, errOut)
	}
	ctl(dstSock, "stop")
	if err := dst.Wait(); err != nil {
		t.Fatalf("destination: %v\n%s", err, dstOut.String())
	}
}
