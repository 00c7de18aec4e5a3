package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/client"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/vmm/vmmconfig"
)

// wantAPIError checks an API error's status code, blamed field and message.
func wantAPIError(t *testing.T, what string, err error, code int, field, msg string) {
	t.Helper()
	var ce *client.Error
	if !errors.As(err, &ce) {
		t.Errorf("%s: error %v, want an API error %d", what, err, code)
		return
	}
	if ce.StatusCode != code || ce.Field != field || !strings.Contains(ce.Message, msg) {
		t.Errorf("%s: %d %q (field %q), want %d with %q (field %q)", what, ce.StatusCode, ce.Message, ce.Field, code, msg, field)
	}
}

// consoleCount counts s in the VM's console log.
func consoleCount(t *testing.T, c *client.Client, name, s string) int {
	t.Helper()
	b, err := c.Console(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), s)
}

// vmmConfigOf reads the config a VMM process was started with: the file
// its command line names (govisor run --config FILE), relative to its
// working directory.
func vmmConfigOf(t *testing.T, pid int) vmmconfig.Config {
	t.Helper()
	proc := filepath.Join("/proc", strconv.Itoa(pid))
	// A VMM reported running may still be entering its jail (jail-exec
	// execs the VMM in the same process): its command line is briefly
	// unreadable then. One that stays so is gone.
	var argv []string
	i := -1
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(filepath.Join(proc, "cmdline"))
		argv = strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if i = slices.Index(argv, "--config"); (i >= 0 && i+1 < len(argv) && !slices.Contains(argv, "jail-exec")) || time.Now().After(deadline) {
			break
		}
	}
	if i < 0 || i+1 >= len(argv) {
		t.Fatalf("VMM %d runs %q, without --config FILE", pid, argv)
	}
	path := argv[i+1]
	if filepath.IsAbs(path) {
		// As the VMM sees it: a jailed VMM's root is its jail's.
		path = filepath.Join(proc, "root", path)
	} else {
		cwd, err := os.Readlink(filepath.Join(proc, "cwd"))
		if err != nil {
			t.Fatal(err)
		}
		path = filepath.Join(cwd, path)
	}
	c, err := vmmconfig.Load(path)
	if err != nil {
		t.Fatalf("VMM %d: %v", pid, err)
	}
	return c
}

// TestPauseSnapshotRebootRestore drives a tiny guest through pause,
// resume, snapshot, reboot and restore, with the errors of each.
func TestPauseSnapshotRebootRestore(t *testing.T) {
	kvmtest.Require(t)
	bin := govisorBin(t)
	dir := t.TempDir()
	ta := startAgent(t, dir, func(c *Config) { c.Executable = bin })
	defer ta.Shutdown(context.Background())
	ctx := context.Background()
	k := writeGuest(t, dir, "idle.elf", idleGuest("UP\n"))
	s := spec("pv", k, api.RestartNever)
	s.StopTimeout = "0s"
	if _, err := ta.cli.CreateVM(ctx, s, true); err != nil {
		t.Fatal(err)
	}
	v := waitVM(t, ta.cli, "pv", "running", func(v api.VM) bool { return v.Status.State == api.StateRunning })
	waitVM(t, ta.cli, "pv", "booted", func(api.VM) bool { return consoleCount(t, ta.cli, "pv", "UP\n") == 1 })
	// The API socket appears shortly after the process.
	waitVMMAPI(t, ta, "pv")

	// Pause and resume, each only from the state before.
	got, err := ta.cli.Pause(ctx, "pv")
	if err != nil || got.Status.State != api.StatePaused || got.Status.PID != v.Status.PID {
		t.Fatalf("pause: %+v, %v", got.Status, err)
	}
	if info, err := ta.vmm("pv").Info(ctx); err != nil || info.State != "paused" {
		t.Errorf("VMM after pause: %+v, %v", info, err)
	}
	_, err = ta.cli.Pause(ctx, "pv")
	wantAPIError(t, "pause twice", err, 409, "", "it is paused; it must be running")
	if got, err = ta.cli.Resume(ctx, "pv"); err != nil || got.Status.State != api.StateRunning {
		t.Fatalf("resume: %+v, %v", got.Status, err)
	}
	_, err = ta.cli.Resume(ctx, "pv")
	wantAPIError(t, "resume twice", err, 409, "", "it is running; it must be paused")

	// Snapshots: one in the VM's folder, one at a given path.
	snap, err := ta.cli.Snapshot(ctx, "pv", api.SnapshotRequest{Name: "s1"})
	if err != nil || snap.Name != "s1" || snap.SizeBytes <= 0 {
		t.Fatalf("snapshot: %+v, %v", snap, err)
	}
	other := filepath.Join(dir, "elsewhere")
	if _, err := ta.cli.Snapshot(ctx, "pv", api.SnapshotRequest{Name: "s2", Path: other}); err != nil {
		t.Fatal(err)
	}
	_, err = ta.cli.Snapshot(ctx, "pv", api.SnapshotRequest{Name: "s1"})
	wantAPIError(t, "snapshot name taken", err, 409, "", `already has a snapshot "s1"`)
	_, err = ta.cli.Snapshot(ctx, "pv", api.SnapshotRequest{Name: "Bad Name"})
	wantAPIError(t, "snapshot bad name", err, 400, "name", "DNS label")
	_, err = ta.cli.Snapshot(ctx, "pv", api.SnapshotRequest{Name: "s3", Path: "rel/dir"})
	wantAPIError(t, "snapshot relative path", err, 400, "path", "absolute")
	_, err = ta.cli.Snapshot(ctx, "pv", api.SnapshotRequest{Name: "s3", Path: other})
	wantAPIError(t, "snapshot existing path", err, 400, "path", "already exists")
	list, err := ta.cli.Snapshots(ctx, "pv")
	if err != nil || len(list) != 2 || list[0].Name != "s1" || list[1].Name != "s2" || list[1].Path != other {
		t.Fatalf("snapshots: %+v, %v", list, err)
	}

	// Reboot: a new VMM boots the guest again (it prints UP again).
	if got, err = ta.cli.Reboot(ctx, "pv", 30*time.Second); err != nil || got.Status.State != api.StateRunning || got.Status.PID == v.Status.PID {
		t.Fatalf("reboot: %+v, %v", got.Status, err)
	}
	waitVM(t, ta.cli, "pv", "booted again", func(api.VM) bool { return consoleCount(t, ta.cli, "pv", "UP\n") == 2 })

	// Restore: a new VMM resumes the snapshot; the guest does not boot.
	before := got.Status.PID
	if got, err = ta.cli.Restore(ctx, "pv", "s1", 30*time.Second); err != nil || got.Status.State != api.StateRunning || got.Status.PID == before {
		t.Fatalf("restore: %+v, %v", got.Status, err)
	}
	if c := vmmConfigOf(t, got.Status.PID); c.Restore != snap.Path {
		t.Errorf("restored VMM runs %+v", c)
	}
	_, err = ta.cli.Restore(ctx, "pv", "nope", 0)
	wantAPIError(t, "restore unknown snapshot", err, 400, "snapshot", "no such snapshot")

	// A stopped VM can be neither paused, resumed, rebooted nor snapshotted;
	// it can be restored, which starts it.
	if _, err := ta.cli.Action(ctx, "pv", "stop", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	_, err = ta.cli.Pause(ctx, "pv")
	wantAPIError(t, "pause stopped", err, 409, "", "cannot pause VM pv: it is stopped")
	_, err = ta.cli.Resume(ctx, "pv")
	wantAPIError(t, "resume stopped", err, 409, "", "cannot resume VM pv: it is stopped")
	_, err = ta.cli.Reboot(ctx, "pv", 0)
	wantAPIError(t, "reboot stopped", err, 409, "", "cannot reboot VM pv: it is stopped")
	_, err = ta.cli.Snapshot(ctx, "pv", api.SnapshotRequest{Name: "s4"})
	wantAPIError(t, "snapshot stopped", err, 409, "", "cannot snapshot VM pv: it is stopped")
	_, err = ta.cli.Pause(ctx, "ghost")
	wantAPIError(t, "pause unknown VM", err, 404, "", "not found")
	if got, err = ta.cli.Restore(ctx, "pv", "s2", 30*time.Second); err != nil || got.Status.State != api.StateRunning || got.Desired != api.PowerRunning {
		t.Fatalf("restore a stopped VM: %+v, %v", got, err)
	}
	if n := consoleCount(t, ta.cli, "pv", "UP\n"); n != 2 {
		t.Errorf("the guest printed UP %d times; restores must not boot it", n)
	}
	if _, err := ta.cli.Action(ctx, "pv", "stop", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := ta.cli.DeleteVM(ctx, "pv"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("a snapshot at a user's path went with the VM: %v", err)
	}
}
