package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/vmmapi"
)

// TestLinuxDiskHotplug boots Linux with one disk, attaches a second with
// `govisor ctl disk-attach` while the guest runs, and checks that the guest
// sees /dev/vdb appear (ACPI Device Check, acpiphp) and reads the image's
// pattern from it; then `ctl disk-detach vdb` makes the guest eject it
// (Eject Request, _EJ0): /dev/vdb disappears and the VMM closes the image.
// A second attach reuses the emptied slot.
func TestLinuxDiskHotplug(t *testing.T) {
	t.Parallel() // boots Linux: minutes on kvm_pvm
	kernel, initrd := kvmtest.LinuxGuest(t)
	dir := t.TempDir()
	bin := govisorBin(t)
	sock := filepath.Join(dir, "vmm.sock")
	boot, hot := filepath.Join(dir, "boot.raw"), filepath.Join(dir, "hot.raw")
	if err := os.WriteFile(boot, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hot, bytes.Repeat([]byte("HOTPLUG-PATTERN-"), 1<<16), 0o644); err != nil {
		t.Fatal(err)
	}
	// The guest polls /sys/block: the disk appears, is read, and goes away.
	script := "echo HP-WAITING; i=0; while [ ! -e /sys/block/vdb ] && [ $i -lt 900 ]; do sleep 1; i=$((i+1)); done; " +
		"echo HP-SERIAL=$(cat /sys/block/vdb/serial); echo HP-DATA=$(dd if=/dev/vdb bs=16 count=1 2>/dev/null); echo HP-READ-DONE; " +
		"i=0; while [ -e /sys/block/vdb ] && [ $i -lt 900 ]; do sleep 1; i=$((i+1)); done; " +
		"[ -e /sys/block/vdb ] || echo HP-GONE; ls /sys/block | tr '\\n' ' '; echo; " +
		"i=0; while [ ! -e /sys/block/vdb ] && [ $i -lt 900 ]; do sleep 1; i=$((i+1)); done; " +
		"echo HP-AGAIN=$(dd if=/dev/vdb bs=16 count=1 skip=1 2>/dev/null); sleep 1000"
	cmd := exec.Command(bin, "run", "--kernel", kernel, "--initrd", initrd, "--memory", "256M",
		"--disk", "path="+boot, "--api-sock", sock,
		"--cmdline", kvmtest.LinuxCmdline+` run="`+script+`"`)
	ctl := func(args ...string) (string, error) { return ctlStdout(bin, sock, args...) }
	var mu sync.Mutex
	var problems []string
	report := func(format string, args ...any) {
		mu.Lock()
		problems = append(problems, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	var wg sync.WaitGroup
	con, stderr, _ := followConsole(t, cmd, func(line string) {
		switch {
		case strings.Contains(line, "HP-WAITING"):
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, err := ctl("disk-attach", hot+",readonly")
				var d vmmapi.Disk
				if err != nil || json.Unmarshal([]byte(out), &d) != nil || d.Name != "vdb" || !d.Hotplugged {
					report("disk-attach: %v\n%s", err, out)
					cmd.Process.Kill()
				}
			}()
		case strings.Contains(line, "HP-READ-DONE"):
			wg.Add(1)
			go func() {
				defer wg.Done()
				if out, err := ctl("disk-detach", "vda"); err == nil {
					report("disk-detach of the boot disk succeeded: %s", out)
				}
				if out, err := ctl("disk-detach", "vdb"); err != nil {
					report("disk-detach: %v\n%s", err, out)
					cmd.Process.Kill()
				}
			}()
		case strings.Contains(line, "HP-GONE"):
			wg.Add(1)
			go func() {
				defer wg.Done()
				// The guest removes the device before it runs _EJ0: wait
				// for the VMM to see the eject.
				var out string
				for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
					var err error
					if out, err = ctl("disks"); err == nil && !strings.Contains(out, "vdb") {
						break
					}
				}
				if strings.Contains(out, "vdb") || !strings.Contains(out, "vda") {
					report("disks after the eject: %s", out)
				}
				if open := openFiles(cmd.Process.Pid, hot); open {
					report("the VMM still has %s open after the eject", hot)
				}
				// The emptied slot takes a disk again.
				if out, err := ctl("disk-attach", hot); err != nil {
					report("second disk-attach: %v\n%s", err, out)
					cmd.Process.Kill()
				}
			}()
		case strings.Contains(line, "HP-AGAIN"):
			cmd.Process.Kill()
		}
	})
	wg.Wait()
	for _, p := range problems {
		t.Error(p)
	}
	for _, want := range []string{"HP-SERIAL=vdb", "HP-DATA=HOTPLUG-PATTERN-", "HP-GONE", "HP-AGAIN=HOTPLUG-PATTERN-"} {
		if !strings.Contains(con, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	if t.Failed() {
		t.Fatalf("console:\n%s\nstderr:\n%s", con, stderr)
	}
}

// openFiles reports whether process pid has path open.
func openFiles(pid int, path string) bool {
	fds := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(fds)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(fds, e.Name())); err == nil && l == path {
			return true
		}
	}
	return false
}

// TestLinuxDiskHotplugAfterRestore snapshots a booted guest, restores it in
// a new VMM and hot-plugs a disk there: the restored machine re-arms the
// hotplug GPE the guest enabled before the snapshot.
func TestLinuxDiskHotplugAfterRestore(t *testing.T) {
	t.Parallel() // boots Linux: minutes on kvm_pvm
	kernel, initrd := kvmtest.LinuxGuest(t)
	dir := t.TempDir()
	bin := govisorBin(t)
	sock, snap := filepath.Join(dir, "vmm.sock"), filepath.Join(dir, "snap")
	hot := filepath.Join(dir, "hot.raw")
	if err := os.WriteFile(hot, bytes.Repeat([]byte("RESTORED-PATTERN"), 1<<16), 0o644); err != nil {
		t.Fatal(err)
	}
	script := "echo HP-WAITING; i=0; while [ ! -e /sys/block/vda ] && [ $i -lt 900 ]; do sleep 1; i=$((i+1)); done; " +
		"echo HP-DATA=$(dd if=/dev/vda bs=16 count=1 2>/dev/null); sleep 1000"
	ctl := func(args ...string) (string, error) { return ctlStdout(bin, sock, args...) }
	first := exec.Command(bin, "run", "--kernel", kernel, "--initrd", initrd, "--memory", "256M", "--api-sock", sock,
		"--cmdline", kvmtest.LinuxCmdline+` run="`+script+`"`)
	var snapErr error
	con1, stderr1, _ := followConsole(t, first, func(line string) {
		if strings.Contains(line, "HP-WAITING") {
			var out string
			if out, snapErr = ctl("snapshot", snap); snapErr != nil {
				snapErr = fmt.Errorf("%v: %s", snapErr, out)
			}
			first.Process.Kill()
		}
	})
	if snapErr != nil || !strings.Contains(con1, "HP-WAITING") {
		t.Fatalf("snapshot: %v\nconsole:\n%s\nstderr:\n%s", snapErr, con1, stderr1)
	}
	os.Remove(sock)
	second := exec.Command(bin, "run", "--restore", snap, "--api-sock", sock)
	attached := make(chan struct{})
	go func() {
		defer close(attached)
		for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if out, err := ctl("info"); err == nil && strings.Contains(out, `"running"`) {
				break
			}
		}
		if out, err := ctl("disk-attach", hot+",readonly"); err != nil {
			t.Errorf("disk-attach after restore: %v\n%s", err, out)
			second.Process.Kill()
		}
	}()
	con2, stderr2, _ := followConsole(t, second, func(line string) {
		if strings.Contains(line, "HP-DATA") {
			second.Process.Kill()
		}
	})
	<-attached
	if !strings.Contains(con2, "HP-DATA=RESTORED-PATTERN") {
		t.Fatalf("the restored guest did not read the hot-plugged disk; console:\n%s\nstderr:\n%s", con2, stderr2)
	}
}

// ctlStdout runs `govisor ctl` and returns its stdout, where the JSON is;
// stderr goes into the error only.
func ctlStdout(bin, sock string, args ...string) (string, error) {
	cmd := exec.Command(bin, append([]string{"ctl", "--api-sock", sock}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		err = fmt.Errorf("%w: %s", err, stderr.Bytes())
	}
	return string(out), err
}
