package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/vmmapi"
)

// TestCtlDiskThroughCLI drives `govisor ctl disks|disk-attach|disk-detach`
// against a VMM running a tiny guest (which never ejects: a detached disk
// stays "detaching"), and checks the errors users see.
func TestCtlDiskThroughCLI(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	var a kvmtest.Asm
	a.Print("UP\n")
	loop := a.Len()
	a.Hlt().JmpBack(loop)
	elf := filepath.Join(dir, "idle.elf")
	if err := os.WriteFile(elf, kvmtest.PVHELF(a.B, 0x100000), 0o644); err != nil {
		t.Fatal(err)
	}
	boot, hot := filepath.Join(dir, "boot.raw"), filepath.Join(dir, "hot.raw")
	for _, p := range []string{boot, hot} {
		if err := os.WriteFile(p, make([]byte, 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(dir, "vmm.sock")
	bin := govisorBin(t)
	vmm := exec.Command(bin, "run", "--kernel", elf, "--boot", "pvh", "--memory", "64M", "--disk", "path="+boot, "--api-sock", sock)
	if err := vmm.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vmm.Process.Kill(); vmm.Wait() }) // only the VMM this test started
	// ctl returns stdout (the JSON) and stderr (errors) apart.
	ctl := func(args ...string) (string, string, int) {
		cmd := exec.Command(bin, append([]string{"ctl", "--api-sock", sock}, args...)...)
		cmd.Dir = dir // disk-attach makes a relative path absolute
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			return stdout.String(), stderr.String(), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return stdout.String(), stderr.String(), 0
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if out, errOut, code := ctl("info"); code == 0 && strings.Contains(out, `"running"`) {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("VMM not running: %s%s", out, errOut)
		}
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"disk-attach"}, 2, "disk-attach needs an image"},
		{[]string{"disk-attach", "missing.raw"}, 2, "missing.raw"},
		{[]string{"disk-attach", "hot.raw,queues=2"}, 2, "only readonly and format"},
		{[]string{"disk-attach", "hot.raw,format=vmdk"}, 1, "vmdk"},
		{[]string{"disk-attach", "hot.raw,readonly"}, 0, `"name": "vdb"`},
		{[]string{"disks"}, 0, `"path": "` + hot + `"`},
		{[]string{"disk-attach", "boot.raw"}, 1, "already uses this image"},
		{[]string{"disk-detach"}, 2, "disk-detach needs the disk's name"},
		{[]string{"disk-detach", "vda"}, 1, "attached at boot"},
		{[]string{"disk-detach", "vdz"}, 1, "no such disk"},
		{[]string{"snapshot", filepath.Join(dir, "snap")}, 0, `"state"`},
		{[]string{"disk-detach", "vdb"}, 0, `"detaching"`},
	} {
		out, errOut, code := ctl(tc.args...)
		if code != tc.code || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("ctl %v: exit %d, %s%s; want exit %d with %q", tc.args, code, out, errOut, tc.code, tc.want)
		}
	}
	out, errOut, _ := ctl("disks")
	var ds []vmmapi.Disk
	if err := json.Unmarshal([]byte(out), &ds); err != nil || len(ds) != 2 || ds[0].Name != "vda" || ds[1].State != "detaching" || !ds[1].ReadOnly {
		t.Errorf("disks at the end: %s (%v)\nstderr: %s", out, err, errOut)
	}

	// The snapshot, taken before the detach, restores with the hot-plugged
	// disk in its slot; it can be detached there.
	vmm.Process.Kill()
	vmm.Wait()
	os.Remove(sock)
	restored := exec.Command(bin, "run", "--restore", filepath.Join(dir, "snap"), "--api-sock", sock)
	if err := restored.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { restored.Process.Kill(); restored.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if out, errOut, code := ctl("info"); code == 0 && strings.Contains(out, `"running"`) {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("restored VMM not running: %s%s", out, errOut)
		}
	}
	out, errOut, _ = ctl("disks")
	ds = nil
	if err := json.Unmarshal([]byte(out), &ds); err != nil || len(ds) != 2 || ds[1].Name != "vdb" || ds[1].Path != hot ||
		!ds[1].Hotplugged || ds[1].State != "attached" || ds[1].Slot != 2 {
		t.Errorf("disks of the restored VMM: %s (%v)\nstderr: %s", out, err, errOut)
	}
	if out, errOut, code := ctl("disk-detach", "vdb"); code != 0 || !strings.Contains(out, `"detaching"`) {
		t.Errorf("disk-detach on the restored VMM: exit %d, %s%s", code, out, errOut)
	}
}
