package agent

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/client"
	"github.com/govisor/govisor/internal/cluster/store"
	"github.com/govisor/govisor/internal/hostnet"
	"github.com/govisor/govisor/internal/hostnet/hostnettest"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/node"
)

func TestNormalizeNetwork(t *testing.T) {
	for _, tc := range []struct {
		in         api.Network
		field      string
		bridge     string
		cidr       string
		wantErrSub string
	}{
		{in: api.Network{Name: "lan"}, bridge: "gv-lan"},
		{in: api.Network{Name: "lan", Bridge: "br0", CIDR: "169.254.1.1/16"}, bridge: "br0", cidr: "169.254.1.1/16"},
		{in: api.Network{Name: "v6", CIDR: "fe80::1/64"}, bridge: "gv-v6", cidr: "fe80::1/64"},
		{in: api.Network{Name: "Bad_Name"}, field: "name"},
		{in: api.Network{Name: "lan", Kind: "vxlan"}, field: "kind"},
		{in: api.Network{Name: "averyverylongname"}, field: "bridge", wantErrSub: "longer than 15"},
		{in: api.Network{Name: "lan", Bridge: "a/b"}, field: "bridge"},
		{in: api.Network{Name: "lan", CIDR: "169.254.1.1"}, field: "cidr"},
		{in: api.Network{Name: "lan", CIDR: "169.254.0.0/16"}, field: "cidr", wantErrSub: "169.254.0.1"},
		{in: api.Network{Name: "lan", UsedBy: []string{"x"}}, bridge: "gv-lan"},
	} {
		got, err := normalizeNetwork(tc.in)
		var fe *FieldError
		switch {
		case tc.field != "":
			if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(fe.Msg, tc.wantErrSub) {
				t.Errorf("%+v: err %v, want field %s (%q)", tc.in, err, tc.field, tc.wantErrSub)
			}
		case err != nil:
			t.Errorf("%+v: %v", tc.in, err)
		case got.Bridge != tc.bridge || got.CIDR != tc.cidr || got.Kind != api.NetworkBridge || got.UsedBy != nil:
			t.Errorf("%+v: got %+v", tc.in, got)
		}
	}
}

func TestNormalizeNICs(t *testing.T) {
	derived := derivedMAC("vm1", 0)
	if derived != derivedMAC("vm1", 0) || derived == derivedMAC("vm1", 1) || derived == derivedMAC("vm2", 0) {
		t.Fatalf("derived MACs are not stable and distinct: %s", derived)
	}
	if !strings.HasPrefix(derived, "02:") {
		t.Errorf("derived MAC %s is not locally administered unicast", derived)
	}
	for _, tc := range []struct {
		nics  []api.NICSpec
		field string
		macs  []string
	}{
		{nics: []api.NICSpec{{Network: "lan"}}, macs: []string{derived}},
		{nics: []api.NICSpec{{Network: "lan", MAC: "02:AA:BB:CC:DD:EE"}}, macs: []string{"02:aa:bb:cc:dd:ee"}},
		{nics: []api.NICSpec{{Network: "a"}, {Network: "b"}}, macs: []string{derived, derivedMAC("vm1", 1)}},
		{nics: []api.NICSpec{{}}, field: "nics[0].network"},
		{nics: []api.NICSpec{{Network: "lan"}, {Network: "lan", MAC: "zz"}}, field: "nics[1].mac"},
		{nics: []api.NICSpec{{Network: "lan", MAC: "01:00:5e:00:00:01"}}, field: "nics[0].mac"},
		{nics: []api.NICSpec{{Network: "lan", MAC: "00:00:00:00:00:00:00:01"}}, field: "nics[0].mac"},
		{nics: []api.NICSpec{{Network: "a", MAC: derived}, {Network: "b"}, {Network: "c", MAC: derived}}, field: "nics[2].mac"},
		{nics: make([]api.NICSpec, maxNICs+1), field: "nics"},
	} {
		s := api.VMSpec{Name: "vm1", NICs: tc.nics}
		err := normalizeNICs(&s)
		var fe *FieldError
		if tc.field != "" {
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Errorf("%+v: err %v, want field %s", tc.nics, err, tc.field)
			}
			continue
		}
		if err != nil {
			t.Errorf("%+v: %v", tc.nics, err)
			continue
		}
		var macs []string
		for _, n := range s.NICs {
			macs = append(macs, n.MAC)
		}
		if !slices.Equal(macs, tc.macs) {
			t.Errorf("%+v: MACs %v, want %v", tc.nics, macs, tc.macs)
		}
	}
}

// FuzzNormalizeNICs feeds arbitrary NIC definitions: never a panic, and an
// accepted definition has valid, distinct unicast MACs.
func FuzzNormalizeNICs(f *testing.F) {
	f.Add("lan", "", "lan", "02:00:00:00:00:01")
	f.Add("", "zz", "x", "ff:ff:ff:ff:ff:ff")
	f.Add("a", "0200.0000.0001", "b", "02-00-00-00-00-01")
	f.Fuzz(func(t *testing.T, n1, m1, n2, m2 string) {
		s := api.VMSpec{Name: "vm", NICs: []api.NICSpec{{Network: n1, MAC: m1}, {Network: n2, MAC: m2}}}
		if normalizeNICs(&s) != nil {
			return
		}
		if s.NICs[0].MAC == s.NICs[1].MAC {
			t.Fatalf("duplicate MACs accepted: %+v", s.NICs)
		}
		for _, n := range s.NICs {
			if len(n.MAC) != 17 || n.Network == "" {
				t.Fatalf("accepted %+v", n)
			}
		}
	})
}

// FuzzNormalizeNetwork feeds arbitrary network definitions: never a panic,
// and an accepted one has a valid bridge name and a parseable CIDR.
func FuzzNormalizeNetwork(f *testing.F) {
	f.Add("lan", "", "", "169.254.0.1/16")
	f.Add("x", "bridge", "br0", "fe80::1/64")
	f.Add("a-b", "vxlan", "much-too-long-bridge", "10.0.0.0/8")
	f.Fuzz(func(t *testing.T, name, kind, bridge, cidr string) {
		n, err := normalizeNetwork(api.Network{Name: name, Kind: kind, Bridge: bridge, CIDR: cidr})
		if err != nil {
			return
		}
		if hostnet.ValidName(n.Bridge) != nil || n.Kind != api.NetworkBridge {
			t.Fatalf("accepted %+v", n)
		}
		if n.CIDR != "" {
			if _, err := netip.ParsePrefix(n.CIDR); err != nil {
				t.Fatalf("accepted CIDR %q", n.CIDR)
			}
		}
	})
}

func TestTapName(t *testing.T) {
	long := strings.Repeat("a", 63)
	for _, vm := range []string{"a", "vm1", long} {
		for i := range 3 {
			n := node.TAPName(vm, i)
			if err := hostnet.ValidName(n); err != nil || !strings.HasPrefix(n, "gv") {
				t.Errorf("node.TAPName(%q, %d) = %q: %v", vm, i, n, err)
			}
		}
	}
	if node.TAPName("vm1", 0) == node.TAPName("vm1", 1) || node.TAPName("vm1", 0) == node.TAPName("vm2", 0) {
		t.Error("TAP names collide")
	}
}

// TestNetworks runs an agent in a network namespace of its own: a network
// makes a bridge with a link-local address; a VM with a NIC gets a TAP on
// the bridge while it runs (kept across an agent restart, which adopts the
// VMM) and loses it when it stops; the API refuses what it must.
func TestNetworks(t *testing.T) {
	if !hostnettest.Enter(t) {
		return
	}
	kvmtest.Require(t)
	dir := t.TempDir()
	kernel := writeGuest(t, dir, "idle.elf", idleGuest("IDLE-UP\n"))
	bin := govisorBin(t)
	ta := startAgent(t, filepath.Join(dir, "state"), func(c *Config) { c.Executable = bin })
	ctx := context.Background()

	n, err := ta.cli.CreateNetwork(ctx, api.Network{Name: "lan", CIDR: "169.254.50.1/16"})
	if err != nil {
		t.Fatal(err)
	}
	if n.Bridge != "gv-lan" || n.Kind != api.NetworkBridge {
		t.Fatalf("network %+v", n)
	}
	// The agent's reconciler makes the bridge: give it a moment on a busy host.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		br, err := hostnet.Get("gv-lan")
		if err == nil && br.Kind == "bridge" && br.Up && len(br.Addrs) > 0 && br.Addrs[0].String() == "169.254.50.1/16" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bridge %+v, %v", br, err)
		}
	}

	// API errors, each leaving nothing behind.
	s := spec("vm1", kernel, api.RestartNever)
	bad := s
	bad.NICs = []api.NICSpec{{Network: "nowhere"}}
	apiErrors(t, []apiErrorCase{
		{"vm on unknown network", func() error { _, err := ta.cli.CreateVM(ctx, bad, false); return err }, 400, "nics[0].network", "no network"},
		{"network taken", func() error { _, err := ta.cli.CreateNetwork(ctx, api.Network{Name: "lan"}); return err }, 409, "", "already exists"},
		{"bridge taken", func() error {
			_, err := ta.cli.CreateNetwork(ctx, api.Network{Name: "other", Bridge: "gv-lan"})
			return err
		}, 409, "", "already network lan"},
		{"bridge conflicts", func() error {
			_, err := ta.cli.CreateNetwork(ctx, api.Network{Name: "lo-net", Bridge: "lo"})
			return err
		}, 409, "", "not a bridge"},
		{"bad cidr", func() error {
			_, err := ta.cli.CreateNetwork(ctx, api.Network{Name: "x", CIDR: "nope"})
			return err
		}, 400, "cidr", "169.254.0.1/16"},
		{"unknown field", func() error {
			_, err := ta.cli.Do(ctx, http.MethodPost, "/v1/networks", strings.NewReader(`{"name":"x","vlan":3}`), nil)
			return err
		}, 400, "vlan", "unknown field"},
		{"get unknown", func() error { _, err := ta.cli.GetNetwork(ctx, "ghost"); return err }, 404, "", "no network ghost"},
		{"delete unknown", func() error { return ta.cli.DeleteNetwork(ctx, "ghost") }, 404, "", "no network ghost"},
	})
	if _, err := ta.cli.GetVM(ctx, "vm1"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("a refused VM exists: %v", err)
	}
	if nets, _ := ta.cli.ListNetworks(ctx); len(nets) != 1 {
		t.Fatalf("networks after refused creates: %+v", nets)
	}

	s.NICs = []api.NICSpec{{Network: "lan"}}
	v, err := ta.cli.CreateVM(ctx, s, true)
	if err != nil {
		t.Fatal(err)
	}
	if v.Spec.NICs[0].MAC != derivedMAC("vm1", 0) {
		t.Errorf("stored MAC %q, want the derived %s", v.Spec.NICs[0].MAC, derivedMAC("vm1", 0))
	}
	waitVM(t, ta.cli, "vm1", "running", func(v api.VM) bool { return v.Status.State == api.StateRunning })
	tap := node.TAPName("vm1", 0)
	checkTAP := func(when string) {
		t.Helper()
		l, err := hostnet.Get(tap)
		if err != nil || l.Master != "gv-lan" || !l.Up || l.TAP == nil || !l.TAP.VnetHdr {
			t.Fatalf("%s: TAP %s: %+v, %v", when, tap, l, err)
		}
	}
	checkTAP("running")
	var ce *client.Error
	if err := ta.cli.DeleteNetwork(ctx, "lan"); !errors.As(err, &ce) || ce.StatusCode != 409 || !strings.Contains(ce.Message, "vm1") {
		t.Fatalf("delete of a network in use: %v", err)
	}
	if n, err := ta.cli.GetNetwork(ctx, "lan"); err != nil || !slices.Equal(n.UsedBy, []string{"vm1"}) {
		t.Errorf("network usedBy: %+v, %v", n, err)
	}

	// An agent restart adopts the VMM, which keeps its TAP.
	if err := ta.Close(); err != nil {
		t.Fatal(err)
	}
	ta = startAgent(t, filepath.Join(dir, "state"), func(c *Config) { c.Executable = bin })
	time.Sleep(600 * time.Millisecond) // a few reconcile passes (ResyncEvery is 250ms)
	waitVM(t, ta.cli, "vm1", "running", func(v api.VM) bool { return v.Status.State == api.StateRunning })
	checkTAP("after an agent restart")

	if _, err := ta.cli.Action(ctx, "vm1", "stop", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	waitVM(t, ta.cli, "vm1", "stopped", func(v api.VM) bool { return v.Status.State == api.StateStopped })
	waitGone(t, tap)
	if err := ta.cli.DeleteVM(ctx, "vm1"); err != nil {
		t.Fatal(err)
	}
	if err := ta.cli.DeleteNetwork(ctx, "lan"); err != nil {
		t.Fatal(err)
	}
	waitGone(t, "gv-lan")

	// The reconciler removes what this agent made and no longer needs: the
	// bridge of a network deleted through another host's agent, and a TAP
	// left by a VM that does not run.
	if _, err := ta.cli.CreateNetwork(ctx, api.Network{Name: "tmp"}); err != nil {
		t.Fatal(err)
	}
	if err := ta.st.DeleteNetwork(ctx, "tmp", func([]store.Record) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := hostnet.EnsureTAP(hostnet.TAP{Name: "gvleftover", Owner: -1, Group: -1, Alias: ta.node.TAPAlias("ghost", 0)}); err != nil {
		t.Fatal(err)
	}
	if _, err := hostnet.EnsureTAP(hostnet.TAP{Name: "gvforeign", Owner: -1, Group: -1, Alias: "govisor:tap:0000000000000000:ghost:0"}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, "gv-tmp")
	waitGone(t, "gvleftover")
	if _, err := hostnet.Get("gvforeign"); err != nil {
		t.Errorf("another agent's TAP was removed: %v", err)
	}
	if err := ta.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// waitGone waits for the host device name to disappear.
func waitGone(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := hostnet.Get(name)
		if errors.Is(err, hostnet.ErrNotFound) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still exists: %v", name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// apiErrorCase is one call expected to fail with code, naming field, with
// msg in its message.
type apiErrorCase struct {
	name  string
	call  func() error
	code  int
	field string
	msg   string
}

func apiErrors(t *testing.T, cases []apiErrorCase) {
	t.Helper()
	for _, tc := range cases {
		err := tc.call()
		var ce *client.Error
		if !errors.As(err, &ce) {
			t.Errorf("%s: err %v, want an API error", tc.name, err)
			continue
		}
		if ce.StatusCode != tc.code || ce.Field != tc.field || !strings.Contains(ce.Message, tc.msg) {
			t.Errorf("%s: %d field %q %q; want %d field %q containing %q", tc.name, ce.StatusCode, ce.Field, ce.Message, tc.code, tc.field, tc.msg)
		}
	}
}
