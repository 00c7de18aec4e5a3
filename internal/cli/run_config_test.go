package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/vmm/vmmconfig"
)

// parseRunFlags parses govisor run's flags into the VMM's config.
func parseRunFlags(args ...string) (vmmconfig.Config, vmmconfig.Names, error) {
	o := &runOptions{}
	f := pflag.NewFlagSet("run", pflag.ContinueOnError)
	o.addFlags(f)
	if err := f.Parse(args); err != nil {
		return vmmconfig.Config{}, nil, err
	}
	return o.vmmConfig(f)
}

func TestRunFlagsToConfig(t *testing.T) {
	flagDefaults := vmmconfig.Config{Cmdline: "console=ttyS0", MemoryMiB: 256, Boot: "linux64", OnReboot: "restart", CPUTemplate: "auto"}
	with := func(edit func(c *vmmconfig.Config)) vmmconfig.Config {
		c := flagDefaults
		edit(&c)
		return c
	}
	tests := []struct {
		name string
		args []string
		want vmmconfig.Config
		err  string
	}{
		{"defaults", []string{"--kernel", "k"}, with(func(c *vmmconfig.Config) { c.Kernel = "k" }), ""},
		{"every flag", []string{"--kernel", "k", "--initrd", "i", "--cmdline", "", "--cpus", "3", "--memory", "1G",
			"--boot", "pvh", "--guest-decompress", "--on-reboot", "exit", "--cpu-template", "pvm", "--debug-exit", "-v",
			"--disk", "path=/dev/null,readonly,direct,format=raw,serial=s,queues=2", "--disk", "/dev/null", "--rng",
			"--net", "tap=t0,mac=02:00:00:00:00:01", "--vsock", "cid=3,uds=v.sock", "--balloon",
			"--api-sock", "a.sock", "--console-sock", "c.sock"},
			vmmconfig.Config{Kernel: "k", Initrd: "i", Cmdline: "", CPUs: 3, MemoryMiB: 1024, Boot: "pvh", GuestDecompress: true,
				OnReboot: "exit", CPUTemplate: "pvm", DebugExit: true, Verbose: true,
				Disks: []vmmconfig.Disk{{Path: "/dev/null", ReadOnly: true, Direct: true, Format: "raw", Serial: "s", Queues: 2}, {Path: "/dev/null"}},
				RNG:   true, Nets: []vmmconfig.Net{{TAP: "t0", MAC: "02:00:00:00:00:01"}}, Vsock: &vmmconfig.Vsock{CID: 3, UDS: "v.sock"},
				Balloon: true, APISock: "a.sock", ConsoleSock: "c.sock"}, ""},
		// Left out, --cpus lets an incoming migration take the source's.
		{"incoming", []string{"--incoming", "h:1", "--memory", "64M", "--tls-cert", "c", "--tls-key", "k", "--tls-ca", "a"},
			with(func(c *vmmconfig.Config) {
				c.Incoming, c.MemoryMiB, c.TLS = "h:1", 64, &vmmconfig.TLS{Cert: "c", Key: "k", CA: "a"}
			}), ""},
		{"restore", []string{"--restore", "snap", "--debug-exit"}, with(func(c *vmmconfig.Config) { c.Restore, c.DebugExit = "snap", true }), ""},
		{"no vCPUs", []string{"--kernel", "k", "--cpus", "0"}, vmmconfig.Config{}, "--cpus 0: give 1 to 64"},
		{"bad memory", []string{"--kernel", "k", "--memory", "lots"}, vmmconfig.Config{}, "--memory"},
		{"bad disk", []string{"--kernel", "k", "--disk", "path=/dev/null,queues=99"}, vmmconfig.Config{}, "give 1 to 16"},
		{"bad net", []string{"--kernel", "k", "--net", "mac=02:00:00:00:00:01"}, vmmconfig.Config{}, "--net"},
		{"bad vsock", []string{"--kernel", "k", "--vsock", "cid=2,uds=x"}, vmmconfig.Config{}, "--vsock"},
		{"config and flags", []string{"--config", "vmm.json", "--kernel", "k", "--rng"}, vmmconfig.Config{}, "--config and --kernel, --rng exclude each other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, names, err := parseRunFlags(tt.args...)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("config %+v, error %v; want one saying %q", got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("config\n%+v\nwant\n%+v", got, tt.want)
			}
			if err := got.ValidateNamed(names); err != nil {
				t.Fatalf("the flags' config is invalid: %v", err)
			}
		})
	}
}

// TestRunFlagNames checks that every config field has its flag's name in
// messages, and that the names are govisor run's flags.
func TestRunFlagNames(t *testing.T) {
	o := &runOptions{}
	f := pflag.NewFlagSet("run", pflag.ContinueOnError)
	o.addFlags(f)
	for field, flag := range runFlagNames {
		name, _, _ := strings.Cut(strings.TrimPrefix(flag, "--"), " ")
		if field == "tls" {
			name = "tls-cert"
		}
		if f.Lookup(name) == nil {
			t.Errorf("config field %s is named %q, which is no flag", field, flag)
		}
	}
	typ := reflect.TypeFor[vmmconfig.Config]()
	for i := range typ.NumField() {
		field, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		if _, ok := runFlagNames[field]; !ok && field != "disks" && field != "nets" {
			t.Errorf("config field %s has no flag name", field)
		}
	}
	for field, want := range map[string]string{"memoryMiB": "--memory", "disks[1].queues": "--disk #2 queues", "nets[0].mac": "--net #1 mac", "x.y": "x.y"} {
		if got := flagName(field); got != want {
			t.Errorf("flagName(%q) = %q, want %q", field, got, want)
		}
	}
	// The config's own messages speak of flags to govisor run's users.
	_, names, _ := parseRunFlags()
	c := vmmconfig.Config{}
	if err := c.ValidateNamed(names); err == nil || !strings.HasPrefix(err.Error(), "--kernel is required") {
		t.Errorf("no kernel: %v", err)
	}
}

// TestRunConfigFile boots a tiny guest from a config file, as the agent
// starts VMMs, and checks that a bad file fails before anything starts.
func TestRunConfigFile(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	elf := filepath.Join(dir, "tiny.elf")
	if err := os.WriteFile(elf, kvmtest.PVHELF(kvmtest.MarkerGuest("CONFIG-MARKER\n"), 0x100000), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "vmm.json")
	if err := vmmconfig.WriteFile(cfg, vmmconfig.Config{Kernel: elf, Boot: "pvh", DebugExit: true, MemoryMiB: 64}); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runGovisor(t, "run", "--config", cfg)
	if code != 0 || out != "CONFIG-MARKER\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	bad, _ := json.Marshal(map[string]any{"kernel": elf, "disks": []map[string]any{{"path": elf}, {"path": elf, "queues": 20}}})
	os.WriteFile(cfg, bad, 0o600)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--config", cfg}, "disks[1].queues 20: give 1 to 16"},
		{[]string{"run", "--config", filepath.Join(dir, "nope.json")}, "no such file"},
		{[]string{"run", "--config", cfg, "--memory", "1G"}, "--config and --memory exclude each other"},
	} {
		_, errOut, code := runGovisor(t, c.args...)
		if code != 2 || !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and one message containing %q", c.args, code, errOut, c.want)
		}
	}
}
