package agent

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/client"
)

// TestCreatePlaced: a VM created with host=auto goes where the cluster's
// placement puts it, one created for a named host is checked by placement,
// and a refusal names the host and the reason. No VM runs (no KVM needed).
func TestCreatePlaced(t *testing.T) {
	dirA, dirB := t.TempDir(), t.TempDir()
	ta := startAgent(t, dirA, func(c *Config) { c.Executable, c.UsageEvery = "/bin/false", 200*time.Millisecond })
	t.Cleanup(func() { ta.Shutdown(context.Background()) })
	tb := startAgent(t, dirB, func(c *Config) {
		c.Executable, c.HostName, c.EtcdEndpoints, c.UsageEvery = "/bin/false", "hostb", ta.st.Endpoints(), 200*time.Millisecond
	})
	t.Cleanup(func() { tb.Shutdown(context.Background()) })
	ctx := context.Background()
	k := writeGuest(t, dirA, "idle.elf", idleGuest("UP\n"))

	// Two empty hosts of one size: spread breaks the tie by name.
	v, err := ta.cli.CreateVMOn(ctx, spec("auto1", k, ""), false, "auto")
	if err != nil || v.Host != "hostb" {
		t.Fatalf("host=auto: %+v %v; want hostb", v.Host, err)
	}
	if v, err = ta.cli.CreateVMOn(ctx, spec("named", k, ""), false, "testhost"); err != nil || v.Host != "testhost" {
		t.Fatalf("host=testhost: %+v %v", v.Host, err)
	}
	if v, err = tb.cli.CreateVM(ctx, spec("here", writeGuest(t, dirB, "idle.elf", idleGuest("UP\n")), ""), false); err != nil || v.Host != "hostb" {
		t.Fatalf("no host given, asked of hostb's agent: %+v %v", v.Host, err)
	}
	_, err = ta.cli.CreateVMOn(ctx, spec("nowhere", k, ""), false, "nosuch")
	if code := statusOf(err); code != http.StatusBadRequest || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("unknown host: %d %v", code, err)
	}

	// A dir pool lives on testhost: a VM with a disk there cannot run on
	// hostb, and placement knows it.
	if _, err := ta.cli.CreatePool(ctx, api.Pool{Name: "local", Path: filepath.Join(dirA, "pool")}); err != nil {
		t.Fatal(err)
	}
	if _, err := ta.cli.CreateVolume(ctx, "local", api.VolumeCreate{Name: "d.qcow2", Size: "16M"}); err != nil {
		t.Fatal(err)
	}
	withDisk := func(name string) api.VMSpec {
		s := spec(name, k, "")
		s.Disks = []api.DiskSpec{{Pool: "local", Volume: "d.qcow2"}}
		return s
	}
	_, err = ta.cli.CreateVMOn(ctx, withDisk("pinned"), false, "hostb")
	if code := statusOf(err); code != http.StatusConflict || !strings.Contains(err.Error(), "hostb") || !strings.Contains(err.Error(), "local") {
		t.Errorf("a disk hostb cannot reach: %d %v", code, err)
	}
	if v, err = ta.cli.CreateVMOn(ctx, withDisk("follows"), false, "auto"); err != nil || v.Host != "testhost" {
		t.Errorf("host=auto with a disk on testhost's pool: %+v %v", v.Host, err)
	}
	if _, err := ta.cli.GetVM(ctx, "pinned"); statusOf(err) != http.StatusNotFound {
		t.Errorf("a refused VM was defined anyway: %v", err)
	}

	// The host list: both ready, one leader, each host's VMs counted.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		hs, err := tb.cli.Hosts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		leaders, vms, loads := 0, map[string]int{}, 0
		for _, h := range hs {
			if h.Load != nil && h.Load.MemoryUsedMiB > 0 {
				loads++
			}
			if h.State != api.HostReady {
				t.Errorf("host %s is %q", h.Name, h.State)
			}
			if h.Leader {
				leaders++
			}
			vms[h.Name] = h.VMs
		}
		if len(hs) == 2 && leaders == 1 && vms["testhost"] == 2 && vms["hostb"] == 2 && loads == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("host list %+v: want testhost and hostb ready with 2 VMs each and their loads, one leader", hs)
		}
	}

	// Maintenance: testhost runs no VM (none was started), so it is in
	// maintenance at once; it takes no new VM, placement skips it, and
	// leaving makes it ready again.
	h, err := tb.cli.SetMaintenance(ctx, "testhost", true)
	if err != nil || h.State != api.HostMaintenance {
		t.Fatalf("enter maintenance: %+v %v", h, err)
	}
	_, err = ta.cli.CreateVM(ctx, spec("during", k, ""), false)
	if code := statusOf(err); code != http.StatusConflict || !strings.Contains(err.Error(), "maintenance") {
		t.Errorf("a VM for a host in maintenance: %d %v", code, err)
	}
	if v, err = ta.cli.CreateVMOn(ctx, withDisk("needs-testhost"), false, "auto"); statusOf(err) != http.StatusConflict {
		t.Errorf("host=auto for a VM only testhost can run, testhost in maintenance: %+v %v", v.Host, err)
	}
	if v, err = ta.cli.CreateVMOn(ctx, spec("elsewhere", k, ""), false, "auto"); err != nil || v.Host != "hostb" {
		t.Errorf("host=auto with testhost in maintenance: %+v %v", v.Host, err)
	}
	if _, err := ta.cli.SetMaintenance(ctx, "nosuch", true); statusOf(err) != http.StatusNotFound {
		t.Errorf("maintenance of an unknown host: %v", err)
	}
	if h, err = ta.cli.SetMaintenance(ctx, "testhost", false); err != nil || h.State != api.HostReady {
		t.Errorf("exit maintenance: %+v %v", h, err)
	}
}

// statusOf is the HTTP status of an API error (0 for none).
func statusOf(err error) int {
	var ae *client.Error
	if errors.As(err, &ae) {
		return ae.StatusCode
	}
	return 0
}
