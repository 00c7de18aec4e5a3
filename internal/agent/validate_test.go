package agent

import (
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/node"
	"github.com/govisor/govisor/internal/vmm/vmmconfig"
)

func TestParseMiB(t *testing.T) {
	cases := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"512M", 512, true}, {"512m", 512, true}, {"2G", 2048, true}, {"2GiB", 2048, true}, {"1T", 1 << 20, true},
		{"1024", 1024, true}, {" 64M ", 64, true}, {"0", 0, false}, {"", 0, false}, {"lots", 0, false},
		{"-1G", 0, false}, {"1.5G", 0, false}, {"2000000T", 0, false}, {"99999999999999999999M", 0, false},
	}
	for _, c := range cases {
		got, err := api.ParseMemoryMiB(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("api.ParseMemoryMiB(%q) = %d, %v; want %d, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
}

// FuzzParseMiB: any string parses to a size in (0, 1 EiB] (1<<40 MiB, the
// parser's bound; sizes a host cannot give, such as 64T, parse so that the
// host check can name its limit: TestAPIErrors) or fails cleanly. The bound
// here was 1 TiB, below the parser's, until make fuzz found "2T".
func FuzzParseMiB(f *testing.F) {
	for _, s := range []string{"512M", "2G", "1T", "7", "", "G", "18446744073709551615T"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := api.ParseMemoryMiB(s)
		if err == nil && (n == 0 || n > 1<<40) {
			t.Fatalf("api.ParseMemoryMiB(%q) = %d", s, n)
		}
	})
}

// FuzzDecodeSpec feeds request bodies from the network through decoding and
// validation: no panic, and whatever is accepted is a complete definition.
func FuzzDecodeSpec(f *testing.F) {
	dir := f.TempDir()
	kernel := filepath.Join(dir, "vmlinux")
	os.WriteFile(kernel, []byte("k"), 0o644)
	for _, s := range []string{
		`{"name":"a","kernel":"` + kernel + `"}`,
		`{"name":"a","kernel":"` + kernel + `","cpus":2,"memory":"1G","boot":"pvh","restartPolicy":"always"}`,
		`{"name":"a","kernel":"` + kernel + `","x":1}`,
		`{"name":1}`, `[]`, `null`, `{"name":"a"}{"name":"b"}`, `{"cpus":-1}`, ``,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest("POST", "/v1/vms", strings.NewReader(body))
		var s api.VMSpec
		err := decodeObject(r, &s, "a VM definition")
		if err == nil {
			s, err = normalize(s, 1<<20)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid (would be a 500)", err)
			}
			return
		}
		if !nameRE.MatchString(s.Name) || s.CPUs < 1 || s.Kernel != kernel && !filepath.IsAbs(s.Kernel) ||
			(s.Boot != api.BootLinux64 && s.Boot != api.BootPVH) || s.RestartPolicy == "" || s.Cmdline == "" {
			t.Fatalf("accepted an incomplete definition: %+v", s)
		}
		if _, err := api.ParseMemoryMiB(s.Memory); err != nil {
			t.Fatalf("accepted memory %q: %v", s.Memory, err)
		}
	})
}

func TestDiskSpecs(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "k")
	disk := filepath.Join(dir, "d.qcow2")
	os.WriteFile(kernel, []byte("k"), 0o644)
	os.WriteFile(disk, []byte("d"), 0o644)
	good := api.VMSpec{Name: "a", Kernel: kernel, Disks: []api.DiskSpec{{Path: disk, ReadOnly: true, Format: "qcow2"}}, RNG: true, Balloon: true}
	s, err := normalize(good, 0)
	if err != nil {
		t.Fatal(err)
	}
	c, err := node.VMMConfig(s)
	if err != nil {
		t.Fatal(err)
	}
	if want := []vmmconfig.Disk{{Path: disk, ReadOnly: true, Format: "qcow2"}}; !slices.Equal(c.Disks, want) || !c.RNG || !c.Balloon {
		t.Errorf("VMM config %+v lacks disks %+v, rng or balloon", c, want)
	}
	for _, c := range []struct {
		disk  api.DiskSpec
		field string
	}{
		{api.DiskSpec{}, "disks[0].path"},
		{api.DiskSpec{Path: "rel.img"}, "disks[0].path"},
		{api.DiskSpec{Path: filepath.Join(dir, "missing")}, "disks[0].path"},
		{api.DiskSpec{Path: disk, Format: "iso"}, "disks[0].format"},
	} {
		bad := good
		bad.Disks = []api.DiskSpec{c.disk}
		_, err := normalize(bad, 0)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("disk %+v: error %v, want one naming %s", c.disk, err, c.field)
		}
	}
}

func TestStopTimeoutSpec(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "k")
	os.WriteFile(kernel, []byte("k"), 0o644)
	a := &Agent{cfg: Config{StopTimeout: 7 * time.Second}}
	for _, c := range []struct {
		in    string
		ok    bool
		grace time.Duration
	}{
		{"", true, 7 * time.Second}, {"30s", true, 30 * time.Second}, {"0s", true, 0},
		{"-1s", false, 0}, {"2h", false, 0}, {"soon", false, 0},
	} {
		s, err := normalize(api.VMSpec{Name: "a", Kernel: kernel, StopTimeout: c.in}, 0)
		var fe *FieldError
		if c.ok != (err == nil) || (!c.ok && (!errors.As(err, &fe) || fe.Field != "stopTimeout")) {
			t.Errorf("stopTimeout %q: %v", c.in, err)
			continue
		}
		if c.ok && a.stopGrace(s) != c.grace {
			t.Errorf("stopTimeout %q: grace %v, want %v", c.in, a.stopGrace(s), c.grace)
		}
	}
	if c, err := node.VMMConfig(api.VMSpec{Name: "a", Kernel: kernel}); err != nil || c.APISock != node.APISock || c.ConsoleSock != node.ConsoleSock {
		t.Errorf("VMM config %+v (%v) lacks the API and console sockets", c, err)
	}
}

// FuzzDecodeActionBodies feeds request bodies of the VM actions (snapshot,
// restore, migrate, incoming) through decoding: no panic, and every error
// is a client error (400), never a 500.
func FuzzDecodeActionBodies(f *testing.F) {
	for _, s := range []string{
		`{"name":"s1"}`, `{"name":"s1","path":"/tmp/x"}`, `{"snapshot":"s1"}`, `{"host":"b","maxDowntimeMS":50}`,
		`{"spec":{"name":"a","kernel":"/k"},"from":"h"}`, `{"host":1}`, `{"nope":true}`, `[]`, `{}{}`, ``,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		for _, v := range []any{&api.SnapshotRequest{}, &api.RestoreRequest{}, &api.MigrateRequest{}, &api.IncomingRequest{}} {
			r := httptest.NewRequest("POST", "/v1/vms/a/x", strings.NewReader(body))
			if err := decodeObject(r, v, "a request"); err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("decode %T: error %v does not match ErrInvalid (would be a 500)", v, err)
			}
		}
	})
}

// TestHASpec: an HA VM gets the medium restart priority unless it says,
// and an unknown priority is refused naming the field.
func TestHASpec(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "k")
	os.WriteFile(kernel, []byte("k"), 0o644)
	for _, c := range []struct {
		ha         bool
		prio, want string
		ok         bool
	}{
		{true, "", api.PriorityMedium, true},
		{true, "high", api.PriorityHigh, true},
		{false, "", "", true},
		{false, "low", api.PriorityLow, true},
		{true, "urgent", "", false},
		{true, "HIGH", "", false},
	} {
		s, err := normalize(api.VMSpec{Name: "a", Kernel: kernel, HA: c.ha, RestartPriority: c.prio}, 0)
		var fe *FieldError
		switch {
		case c.ok && (err != nil || s.RestartPriority != c.want):
			t.Errorf("ha %v priority %q: %q, %v; want %q", c.ha, c.prio, s.RestartPriority, err, c.want)
		case !c.ok && (!errors.As(err, &fe) || fe.Field != "restartPriority"):
			t.Errorf("ha %v priority %q: error %v, want one naming restartPriority", c.ha, c.prio, err)
		}
	}
}

// TestRuleSpecs: host rules and affinity groups are checked when a VM is
// defined, the error naming the element.
func TestRuleSpecs(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "k")
	os.WriteFile(kernel, []byte("k"), 0o644)
	good := api.VMSpec{Name: "a", Kernel: kernel, HostRules: []string{"must zone=a", "should-not gpu"}, Affinity: []string{"web"}, AntiAffinity: []string{"db-pair"}}
	if _, err := normalize(good, 0); err != nil {
		t.Fatalf("good rules: %v", err)
	}
	for _, c := range []struct {
		mod   func(s *api.VMSpec)
		field string
	}{
		{func(s *api.VMSpec) { s.HostRules = []string{"must zone=a", "perhaps zone=b"} }, "hostRules[1]"},
		{func(s *api.VMSpec) { s.HostRules = []string{"must "} }, "hostRules[0]"},
		{func(s *api.VMSpec) { s.Affinity = []string{"Web"} }, "affinity[0]"},
		{func(s *api.VMSpec) { s.AntiAffinity = []string{"ok", "no spaces"} }, "antiAffinity[1]"},
	} {
		s := good
		c.mod(&s)
		_, err := normalize(s, 0)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%+v: error %v, want one naming %s", s, err, c.field)
		}
	}
}

// TestFirmwareSpecs: firmware bios boots the first disk instead of a
// kernel, as does uefi, whose VMM gets a variable file in the VM's folder;
// a kernel beside it, no disk or another value are refused naming the
// field; cpu takes baseline or host.
func TestFirmwareSpecs(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "boot.img")
	os.WriteFile(disk, []byte("d"), 0o644)
	good := api.VMSpec{Name: "imported", Firmware: "bios", Disks: []api.DiskSpec{{Path: disk}}, CPU: api.CPUHost}
	s, err := normalize(good, 0)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := node.VMMConfig(s); err != nil || c.Firmware != "bios" || c.Kernel != "" || len(c.Disks) != 1 {
		t.Errorf("VMM config %+v, %v: want firmware bios and the disk", c, err)
	}
	uefi := good
	uefi.Firmware = "uefi"
	if s, err := normalize(uefi, 0); err != nil {
		t.Errorf("a UEFI VM: %v", err)
	} else if c, err := node.VMMConfig(s); err != nil || c.Firmware != "uefi" || c.FirmwareVars != node.UEFIVarsFile || len(c.Disks) != 1 {
		t.Errorf("VMM config %+v, %v: want firmware uefi, the variable file in the VM's folder and the disk", c, err)
	}
	// A normalized spec normalizes again unchanged: the stored spec is what
	// a migration's destination and an update check again (a default
	// kernel cmdline on a firmware VM failed its live migration).
	for _, fw := range []string{"bios", "uefi"} {
		in := good
		in.Firmware = fw
		once, err := normalize(in, 0)
		if err != nil {
			t.Fatal(err)
		}
		if once.Cmdline != "" {
			t.Errorf("%s VM: normalized cmdline %q, want none (no kernel of ours boots)", fw, once.Cmdline)
		}
		twice, err := normalize(once, 0)
		if err != nil {
			t.Errorf("%s VM: its normalized spec is refused: %v", fw, err)
		}
		if twice.Cmdline != once.Cmdline || twice.Boot != once.Boot || twice.Firmware != once.Firmware {
			t.Errorf("%s VM: normalized twice %+v, once %+v", fw, twice, once)
		}
		// A spec an older agent stored, with the default cmdline.
		old := once
		old.Cmdline = defaultCmdline
		if s, err := normalize(old, 0); err != nil || s.Cmdline != "" {
			t.Errorf("%s VM stored with the default cmdline: %v, cmdline %q; want accepted, no cmdline", fw, err, s.Cmdline)
		}
	}
	// An incoming migration with mirrored disks: the copies are not made
	// yet, but a firmware VM still has its disks (it boots the first).
	away := good
	away.Firmware = "uefi"
	away.Disks = []api.DiskSpec{{Path: filepath.Join(dir, "not-here-yet.img")}}
	if _, err := normalizeDisksAt(away, 0, false); err != nil {
		t.Errorf("a firmware VM whose disks are mirrored in: %v", err)
	}
	if _, err := normalizeDisksAt(away, 0, true); err == nil {
		t.Error("a firmware VM whose disk is missing here was accepted")
	}
	for _, c := range []struct {
		mod   func(s *api.VMSpec)
		field string
	}{
		{func(s *api.VMSpec) { s.Kernel = disk }, "firmware"},
		{func(s *api.VMSpec) { s.Cmdline = "console=ttyS0 quiet" }, "firmware"},
		{func(s *api.VMSpec) { s.Disks = nil }, "disks"},
		{func(s *api.VMSpec) { s.Firmware = "uefi"; s.Disks = nil }, "disks"},
		{func(s *api.VMSpec) { s.Firmware = "coreboot" }, "firmware"},
		{func(s *api.VMSpec) { s.Firmware = "" }, "kernel"},
		{func(s *api.VMSpec) { s.CPU = "skylake" }, "cpu"},
	} {
		s := good
		c.mod(&s)
		_, err := normalize(s, 0)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%+v: error %v, want one naming %s", s, err, c.field)
		}
	}
}
