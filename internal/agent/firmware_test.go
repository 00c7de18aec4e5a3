package agent

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/firmware/efivars"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/node"
)

// TestAgentBootsFirmwareVM: a VM defined with firmware: bios (as an
// imported VM is) boots its disk's own boot loader, SYSLINUX, through
// SeaBIOS in a jailed VMM, to the test guest's marker on its console.
func TestAgentBootsFirmwareVM(t *testing.T) {
	kvmtest.Require(t)
	requireCgroup2(t)
	bios := kvmtest.SeaBIOS(t)
	src := kvmtest.SyslinuxDisk(t)
	dir := t.TempDir()
	disk := filepath.Join(dir, "boot.img")
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(disk, b, 0o644); err != nil {
		t.Fatal(err)
	}
	// Where the agent finds SeaBIOS (a host with Debian's seabios has it
	// in /usr/share/seabios).
	t.Setenv("GOVISOR_FIRMWARE_DIR", filepath.Dir(bios))
	ta := startAgent(t, filepath.Join(dir, "agent"), func(c *Config) { c.Executable = govisorBin(t) })
	defer ta.Shutdown(context.Background())
	ctx := context.Background()
	s := api.VMSpec{Name: "bios", CPUs: 1, Memory: "256M", Firmware: "bios", Disks: []api.DiskSpec{{Path: disk}}, RestartPolicy: api.RestartNever}
	if _, err := ta.cli.CreateVM(ctx, s, true); err != nil {
		t.Fatal(err)
	}
	var con []byte
	for deadline := time.Now().Add(3 * time.Minute); !strings.Contains(string(con), "GUEST-READY"); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			v, _ := ta.cli.GetVM(ctx, "bios")
			t.Fatalf("no GUEST-READY from the firmware VM in 3 minutes: %+v\nconsole:\n%s", v.Status, con)
		}
		con, _ = ta.cli.Console(ctx, "bios")
	}
	t.Logf("console:\n%s", con)
}

// TestAgentBootsUEFIVM: a VM defined with firmware: uefi boots the UEFI
// test disk (GRUB on an ESP) through OVMF in a jailed VMM. Its variable
// file is made in the VM's folder and keeps what OVMF stores across the
// guest's own reboot (the VMM boots it again) and a stop and start (a new
// VMM): OVMF's monotonic counter ("MTC", one more every boot) counts every
// boot.
func TestAgentBootsUEFIVM(t *testing.T) {
	kvmtest.Require(t)
	requireCgroup2(t)
	code, _ := kvmtest.OVMF(t)
	dir := t.TempDir()
	disk := espCopy(t, dir)
	t.Setenv("GOVISOR_FIRMWARE_DIR", filepath.Dir(code))
	state := filepath.Join(dir, "agent")
	ta := startAgent(t, state, func(c *Config) { c.Executable = govisorBin(t) })
	defer ta.Shutdown(context.Background())
	ctx := context.Background()
	s := uefiSpec("efi", disk)
	if _, err := ta.cli.CreateVM(ctx, s, true); err != nil {
		t.Fatal(err)
	}
	mtc := func() uint32 { return uefiMTC(state, "efi") }
	// The ESP test guest reboots after its command (done=reboot); the
	// VMM boots it again from the same variables.
	var con []byte
	for deadline := time.Now().Add(10 * time.Minute); strings.Count(string(con), "GUEST-READY") < 2 || mtc() < 2; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			v, _ := ta.cli.GetVM(ctx, "efi")
			t.Fatalf("no two boots of the UEFI VM in 10 minutes (MTC %d): %+v\nconsole:\n%s", mtc(), v.Status, con)
		}
		con, _ = ta.cli.Console(ctx, "efi")
	}
	if _, err := ta.cli.Action(ctx, "efi", "stop", time.Minute); err != nil {
		t.Fatal(err)
	}
	before := mtc()
	if _, err := ta.cli.Action(ctx, "efi", "start", 0); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(6 * time.Minute); mtc() <= before; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			con, _ = ta.cli.Console(ctx, "efi")
			t.Fatalf("MTC still %d 6 minutes after a new start: the variables did not carry over\nconsole:\n%s", mtc(), con)
		}
	}
	if got := mtc(); got != before+1 {
		t.Errorf("MTC %d after a stop and start, want %d", got, before+1)
	}
}

// uefiSpec is a UEFI VM booting disk (a copy of the ESP test disk).
func uefiSpec(name, disk string) api.VMSpec {
	return api.VMSpec{Name: name, CPUs: 1, Memory: "256M", Firmware: "uefi", Disks: []api.DiskSpec{{Path: disk}}, RestartPolicy: api.RestartNever}
}

// uefiMTC reads OVMF's monotonic counter (one more every boot) from the
// variable file of VM name under the agent state folder state; 0 when
// there is none yet.
func uefiMTC(state, name string) uint32 {
	b, err := os.ReadFile(filepath.Join(node.VMDir(state, name), node.UEFIVarsFile))
	if err != nil {
		return 0
	}
	v, ok, _ := efivars.Get(b, "MTC")
	if !ok || len(v.Data) != 4 {
		return 0
	}
	return binary.LittleEndian.Uint32(v.Data)
}

// espCopy copies the UEFI test disk into dir (the VM writes to its disk).
func espCopy(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(kvmtest.ESPDisk(t))
	if err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, "esp.img")
	if err := os.WriteFile(disk, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return disk
}

// TestAgentMigratesUEFIVM: a UEFI VM live-migrates between two agents with
// its variables: the destination's variable file (in its own VM folder)
// holds the source's store, OVMF's boot counter included, and the guest's
// next boot there (the test kernel reboots after its command) counts on
// from it, so the firmware on the destination uses the carried store.
func TestAgentMigratesUEFIVM(t *testing.T) {
	kvmtest.Require(t)
	requireCgroup2(t)
	code, _ := kvmtest.OVMF(t)
	t.Setenv("GOVISOR_FIRMWARE_DIR", filepath.Dir(code))
	dir := t.TempDir()
	disk := espCopy(t, dir)
	dirA, dirB := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	ta, tb := twoHosts(t, dirA, dirB)
	ctx := context.Background()
	if _, err := ta.cli.CreateVM(ctx, uefiSpec("efimove", disk), true); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		con, _ := ta.cli.Console(ctx, "efimove")
		if strings.Contains(string(con), "GUEST-READY") && uefiMTC(dirA, "efimove") >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the UEFI VM did not boot in 10 minutes (MTC %d); console:\n%s", uefiMTC(dirA, "efimove"), con)
		}
	}
	if _, err := ta.cli.Migrate(ctx, "efimove", api.MigrateRequest{Host: "hostb"}); err != nil {
		srcLog, _ := os.ReadFile(filepath.Join(ta.vmDir("efimove"), "vmm.log"))
		dstLog, _ := os.ReadFile(filepath.Join(tb.vmDir("efimove"), "vmm.log"))
		t.Fatalf("%v\nsource vmm.log:\n%s\ndestination vmm.log:\n%s", err, srcLog, dstLog)
	}
	// The source's VMM is gone: its file is final.
	src := uefiMTC(dirA, "efimove")
	if got := uefiMTC(dirB, "efimove"); got < src {
		t.Fatalf("the destination's variable file has MTC %d, the source's %d: the store did not travel", got, src)
	}
	for deadline := time.Now().Add(10 * time.Minute); uefiMTC(dirB, "efimove") <= src; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			con, _ := tb.cli.Console(ctx, "efimove")
			t.Fatalf("no boot counted on the destination in 10 minutes (MTC %d, the source's %d); console:\n%s",
				uefiMTC(dirB, "efimove"), src, con)
		}
	}
	if _, err := tb.cli.Action(ctx, "efimove", "stop", time.Minute); err != nil {
		t.Fatal(err)
	}
}
