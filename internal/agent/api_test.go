package agent

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/client"
	"github.com/govisor/govisor/internal/cluster/store"
)

// TestAPIErrors checks each endpoint's errors: status code, the field named,
// and that nothing is left half-created.
func TestAPIErrors(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinux")
	os.WriteFile(kernel, []byte("not booted in this test"), 0o644)
	ta := startAgent(t, dir, nil)
	defer ta.Close()
	ctx := context.Background()
	if _, err := ta.cli.CreateVM(ctx, spec("taken", kernel, ""), false); err != nil {
		t.Fatal(err)
	}
	raw := func(body string) func() error {
		return func() error {
			_, err := ta.cli.Do(ctx, http.MethodPost, "/v1/vms", strings.NewReader(body), nil)
			return err
		}
	}
	create := func(mod func(*api.VMSpec)) func() error {
		return func() error {
			s := spec("fresh", kernel, "")
			mod(&s)
			_, err := ta.cli.CreateVM(ctx, s, false)
			return err
		}
	}
	cases := []struct {
		name  string
		call  func() error
		code  int
		field string
		msg   string
	}{
		{"unknown field", raw(`{"name":"x","kernel":"` + kernel + `","frobnicate":1}`), 400, "frobnicate", "unknown field"},
		{"wrong type", raw(`{"name":"x","kernel":"` + kernel + `","cpus":"two"}`), 400, "cpus", "want a int"},
		{"not json", raw(`name: x`), 400, "", "not a VM definition"},
		{"two objects", raw(`{"name":"x","kernel":"` + kernel + `"}{}`), 400, "", "more than one"},
		{"missing kernel", create(func(s *api.VMSpec) { s.Kernel = filepath.Join(dir, "nope") }), 400, "kernel", "no such file"},
		{"no kernel", create(func(s *api.VMSpec) { s.Kernel = "" }), 400, "kernel", "required"},
		{"relative kernel", create(func(s *api.VMSpec) { s.Kernel = "vmlinux" }), 400, "kernel", "absolute"},
		{"missing initrd", create(func(s *api.VMSpec) { s.Initrd = filepath.Join(dir, "nope.cpio") }), 400, "initrd", "no such file"},
		{"bad memory", create(func(s *api.VMSpec) { s.Memory = "lots" }), 400, "memory", "512M"},
		{"too much memory", create(func(s *api.VMSpec) { s.Memory = "64T" }), 400, "memory", "more than this host"},
		{"too many cpus", create(func(s *api.VMSpec) { s.CPUs = 1000 }), 400, "cpus", "give 1 to"},
		{"bad name", create(func(s *api.VMSpec) { s.Name = "Bad/Name" }), 400, "name", "DNS label"},
		{"bad boot", create(func(s *api.VMSpec) { s.Boot = "bios" }), 400, "boot", "linux64 or pvh"},
		{"bad policy", create(func(s *api.VMSpec) { s.RestartPolicy = "sometimes" }), 400, "restartPolicy", "on-failure"},
		{"name taken", create(func(s *api.VMSpec) { s.Name = "taken" }), 409, "", "already taken"},
		{"apply name mismatch", func() error {
			_, err := ta.cli.Do(ctx, http.MethodPut, "/v1/vms/taken", spec("other", kernel, ""), nil)
			return err
		}, 400, "name", "differs"},
		{"get unknown", func() error { _, err := ta.cli.GetVM(ctx, "ghost"); return err }, 404, "", "not found"},
		{"start unknown", func() error { _, err := ta.cli.Action(ctx, "ghost", "start", 0); return err }, 404, "", "not found"},
		{"bad action", func() error { _, err := ta.cli.Action(ctx, "taken", "dance", 0); return err }, 404, "", "no such action"},
		{"bad wait", func() error {
			_, err := ta.cli.Do(ctx, http.MethodPost, "/v1/vms/taken/stop?wait=forever", nil, nil)
			return err
		}, 400, "wait", "duration"},
		{"delete unknown", func() error { return ta.cli.DeleteVM(ctx, "ghost") }, 404, "", "not found"},
		{"console unknown", func() error { _, err := ta.cli.Console(ctx, "ghost"); return err }, 404, "", "not found"},
		{"console bad name", func() error { _, err := ta.cli.Console(ctx, "../../etc"); return err }, 404, "", "not found"},
		{"delete bad name", func() error { return ta.cli.DeleteVM(ctx, "a/b") }, 404, "", "not found"},
		{"bad events since", func() error {
			_, err := ta.cli.Do(ctx, http.MethodGet, "/v1/events?since=-3", nil, nil)
			return err
		}, 400, "since", "revision"},
		{"no such endpoint", func() error { _, err := ta.cli.Do(ctx, http.MethodGet, "/v2/x", nil, nil); return err }, 404, "", "no such endpoint"},
	}
	for _, c := range cases {
		err := c.call()
		var ae *client.Error
		if !errors.As(err, &ae) || ae.StatusCode != c.code || ae.Field != c.field || !strings.Contains(ae.Message, c.msg) {
			t.Errorf("%s: got %#v; want %d, field %q, message with %q", c.name, err, c.code, c.field, c.msg)
		}
	}
	// Nothing half-created: only the one good VM exists.
	vms, err := ta.cli.ListVMs(ctx)
	if err != nil || len(vms) != 1 || vms[0].Spec.Name != "taken" {
		t.Fatalf("VMs after the failed requests: %+v, %v", vms, err)
	}
	// A stopped VM is observed as stopped, and can be applied and deleted.
	waitVM(t, ta.cli, "taken", "stopped", func(v api.VM) bool { return v.Status.State == api.StateStopped })
	s := spec("taken", kernel, "")
	s.Cmdline = "console=ttyS0 quiet"
	for _, want := range []string{"updated", "unchanged"} {
		v, res, err := ta.cli.ApplyVM(ctx, s)
		if err != nil || res != want || v.Spec.Cmdline != s.Cmdline || v.Desired != api.PowerStopped {
			t.Fatalf("apply: %q %+v %v, want %s", res, v, err, want)
		}
	}
	if con, err := ta.cli.Console(ctx, "taken"); err != nil || len(con) != 0 {
		t.Fatalf("console of a never-started VM: %q, %v", con, err)
	}
	h, err := ta.cli.Host(ctx)
	if err != nil || h.Name != "testhost" || h.VMs != 1 || h.MemoryMiB == 0 || h.Store != "embedded" {
		t.Fatalf("host: %+v, %v", h, err)
	}
	if hs, err := ta.cli.Hosts(ctx); err != nil || len(hs) != 1 || hs[0].Name != "testhost" || hs[0].AgentID != ta.id {
		t.Fatalf("hosts: %+v, %v", hs, err)
	}
	if err := ta.cli.DeleteVM(ctx, "taken"); err != nil {
		t.Fatal(err)
	}
	// One agent per state directory.
	if _, err := New(ctx, Config{StateDir: dir, Socket: filepath.Join(dir, "second.sock")}); err == nil || !strings.Contains(err.Error(), "another govisor agent") {
		t.Fatalf("second agent on the state dir: %v", err)
	}
	if fi, err := os.Stat(ta.cfg.Socket); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v, %v", fi.Mode(), err)
	}
}

// TestTCPNeedsToken serves the API on TLS and checks bearer tokens.
func TestTCPNeedsToken(t *testing.T) {
	dir := t.TempDir()
	cr := writeCreds(t, dir, "# API tokens\ns3cret-token\n")

	// TCP without tokens is refused at start-up.
	_, err := New(context.Background(), Config{StateDir: filepath.Join(dir, "a"), Listen: "127.0.0.1:0", TLSCert: cr.cert, TLSKey: cr.key})
	if err == nil || !strings.Contains(err.Error(), "--token-file") {
		t.Fatalf("TCP without tokens: %v", err)
	}

	ta := startAgent(t, filepath.Join(dir, "b"), func(c *Config) {
		cr.serve(c)
		c.Socket = ""
	})
	defer ta.Close()
	for _, c := range []struct {
		token string
		ok    bool
	}{{"", false}, {"wrong", false}, {"s3cret-token", true}} {
		cl := cr.client(t, ta, c.token)
		for _, get := range []func() error{
			func() error { _, err := cl.Host(context.Background()); return err },
			func() error { _, err := cl.Metrics(context.Background()); return err },
			func() error { _, err := cl.ListVMs(context.Background()); return err },
		} {
			err := get()
			if c.ok && err != nil {
				t.Errorf("token %q: %v", c.token, err)
			}
			if !c.ok && !errors.Is(err, client.ErrUnauthorized) {
				t.Errorf("token %q: %v, want 401", c.token, err)
			}
		}
	}
}

// TestExternalEtcd points an agent at an etcd it does not run itself.
func TestExternalEtcd(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	etcd, err := store.Open(ctx, store.Config{DataDir: filepath.Join(dir, "etcd-member")})
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	kernel := filepath.Join(dir, "vmlinux")
	os.WriteFile(kernel, []byte("not booted in this test"), 0o644)
	ta := startAgent(t, filepath.Join(dir, "agent"), func(c *Config) { c.EtcdEndpoints = etcd.Endpoints() })
	defer ta.Close()
	if _, err := ta.cli.CreateVM(ctx, spec("ext", kernel, ""), false); err != nil {
		t.Fatal(err)
	}
	if h, err := ta.cli.Host(ctx); err != nil || h.Store != "external" || h.VMs != 1 {
		t.Fatalf("host: %+v, %v", h, err)
	}
	// The VM is in the external etcd, and the agent's state dir has no etcd.
	if r, err := etcd.GetVM(ctx, "ext"); err != nil || r.Desired.Host != "testhost" {
		t.Fatalf("in etcd: %+v, %v", r, err)
	}
	if hs, err := etcd.Hosts(ctx); err != nil || len(hs) != 1 || hs[0].Name != "testhost" {
		t.Fatalf("hosts in etcd: %+v, %v", hs, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "agent", "etcd")); !os.IsNotExist(err) {
		t.Fatalf("agent started its own etcd: %v", err)
	}
}
