package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
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
