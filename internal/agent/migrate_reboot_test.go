package agent

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/node"
)

// resetOnInputGuest prints marker, then polls the COM1 line status
// register and resets the machine through the i8042 (0xFE to port 0x64)
// when a byte arrives: a guest that reboots when told on its console.
func resetOnInputGuest(marker string) []byte {
	var a kvmtest.Asm
	a.Print(marker)
	waitSerialInput(&a)
	a.MovDX(0x64).MovAL(0xFE).OutAL()
	a.Hlt()
	return a.B
}

// TestMigrationRidesOverGuestReboot: a guest that reboots while it is being
// migrated (its VMM ends that migration: the reboot builds a new machine)
// is sent again and arrives; the migration succeeds, as vMotion's and
// QEMU's do over a reset.
func TestMigrationRidesOverGuestReboot(t *testing.T) {
	kvmtest.Require(t)
	ctx := context.Background()
	dirA, dirB := t.TempDir(), t.TempDir()
	ta, tb := twoHosts(t, dirA, dirB)
	s := spec("bouncer", writeGuest(t, dirA, "reset.elf", resetOnInputGuest("UP\n")), api.RestartNever)
	s.StopTimeout = "0s"
	if _, err := ta.cli.CreateVM(ctx, s, true); err != nil {
		t.Fatal(err)
	}
	v := waitVM(t, ta.cli, "bouncer", "running", func(v api.VM) bool { return v.Status.State == api.StateRunning })
	waitVMMAPI(t, ta, "bouncer")

	type result struct {
		v   api.VM
		err error
	}
	done := make(chan result, 1)
	go func() {
		// Slow enough (a few seconds) to be reset in the middle.
		got, err := ta.cli.Migrate(ctx, "bouncer", api.MigrateRequest{Host: "hostb", Bandwidth: 32 << 10})
		done <- result{got, err}
	}()
	waitVM(t, ta.cli, "bouncer", "migrating", func(v api.VM) bool {
		m := v.Status.Migration
		return m != nil && m.State == api.MigrationRunning && m.BytesSent > 0
	})
	con, err := net.Dial("unix", filepath.Join(ta.vmDir("bouncer"), node.ConsoleSock))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := con.Write([]byte("r")); err != nil {
		t.Fatal(err)
	}
	con.Close()
	r := <-done
	if r.err != nil {
		t.Fatalf("the migration failed over the guest's reboot: %v", r.err)
	}
	if r.v.Host != "hostb" || r.v.Status.State != api.StateRunning {
		t.Fatalf("after the migration: host %s, status %+v", r.v.Host, r.v.Status)
	}
	if m := r.v.Status.Migration; m == nil || m.State != api.MigrationCompleted || m.GuestReboots != 1 {
		t.Errorf("migration status %+v: want completed after 1 guest reboot", m)
	}
	waitVM(t, ta.cli, "bouncer", "gone from the source", func(api.VM) bool { return !alive(v.Status.PID) })
	// The source VMM's log shows the reboot it sent the VM over.
	log, _ := os.ReadFile(filepath.Join(ta.vmDir("bouncer"), "vmm.log"))
	if !strings.Contains(string(log), "guest rebooted") {
		t.Errorf("the source VMM's log shows no reboot: the guest was not reset during the migration:\n%s", log)
	}
	if _, err := tb.cli.Action(ctx, "bouncer", "stop", 30*time.Second); err != nil {
		t.Fatal(err)
	}
}
