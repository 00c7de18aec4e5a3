package cli

import (
	"bytes"
	"encoding/json"
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
	loop := a.Len()
	a.IncMem64(0x3000).JmpBack(loop)
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
		return cmd, &out
	}
	ctl := func(args ...string) vmmapi.Info {
		t.Helper()
		var info vmmapi.Info
		var out []byte
		var err error
		for deadline := time.Now().Add(10 * time.Second); ; {
			out, err = exec.Command(bin, append([]string{"ctl", "--api-sock", sock}, args...)...).CombinedOutput()
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("govisor ctl %v: %v\n%s", args, err, out)
		}
		if err := json.Unmarshal(out, &info); err != nil {
			t.Fatalf("ctl output %q: %v", out, err)
		}
		return info
	}

	vmm, out := start("run", "--kernel", elf, "--boot", "pvh", "--memory", "64M", "--cpus", "2", "--api-sock", sock)
	if info := ctl("info"); info.State != "running" || info.CPUs != 2 {
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
	if info := ctl("info"); info.State != "running" || info.CPUs != 2 || info.MemoryMiB != 64 {
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
