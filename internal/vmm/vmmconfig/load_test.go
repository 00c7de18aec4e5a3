package vmmconfig

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// equal compares configs field by field (they hold slices and pointers).
func equal(a, b Config) bool { return reflect.DeepEqual(a, b) }

func TestParse(t *testing.T) {
	withKernel := func(edit func(c *Config)) Config {
		c := Defaults()
		c.Kernel = "vmlinux"
		edit(&c)
		return c
	}
	tests := []struct {
		name string
		in   string
		want Config
		err  string // "" when it parses
	}{
		{"left-out fields get the defaults", `{"kernel": "vmlinux"}`, withKernel(func(*Config) {}), ""},
		{"an empty command line stays empty", `{"kernel": "vmlinux", "cmdline": ""}`, withKernel(func(c *Config) { c.Cmdline = "" }), ""},
		{"every field", `{
			"kernel": "vmlinux", "initrd": "initrd.cpio", "cmdline": "console=ttyS0 quiet", "cpus": 2, "memoryMiB": 512,
			"boot": "pvh", "guestDecompress": true, "onReboot": "exit", "cpuTemplate": "host", "debugExit": true, "verbose": true,
			"disks": [{"path": "a.qcow2", "readOnly": true, "direct": false, "format": "qcow2", "serial": "d1", "queues": 4}],
			"rng": true, "nets": [{"tap": "tap0", "mac": "02:00:00:00:00:01"}], "vsock": {"cid": 3, "uds": "v.sock"},
			"balloon": true, "apiSock": "api.sock", "consoleSock": "console.sock"}`,
			Config{Kernel: "vmlinux", Initrd: "initrd.cpio", Cmdline: "console=ttyS0 quiet", CPUs: 2, MemoryMiB: 512,
				Boot: "pvh", GuestDecompress: true, OnReboot: "exit", CPUTemplate: "host", DebugExit: true, Verbose: true,
				Disks: []Disk{{Path: "a.qcow2", ReadOnly: true, Format: "qcow2", Serial: "d1", Queues: 4}},
				RNG:   true, Nets: []Net{{TAP: "tap0", MAC: "02:00:00:00:00:01"}}, Vsock: &Vsock{CID: 3, UDS: "v.sock"},
				Balloon: true, APISock: "api.sock", ConsoleSock: "console.sock"}, ""},
		{"incoming with TLS", `{"incoming": "10.0.0.2:7000", "tls": {"cert": "c.pem", "key": "k.pem", "ca": "ca.pem"}}`,
			func() Config {
				c := Defaults()
				c.Incoming, c.TLS = "10.0.0.2:7000", &TLS{Cert: "c.pem", Key: "k.pem", CA: "ca.pem"}
				return c
			}(), ""},
		{"a misspelt field", `{"kernel": "vmlinux", "cpu": 2}`, Config{}, `unknown field "cpu"`},
		{"a wrong type", `{"kernel": "vmlinux", "cpus": "two"}`, Config{}, "cpus: give a whole number, not a JSON string"},
		{"a nested wrong type", `{"kernel": "vmlinux", "disks": [{"path": "a", "queues": true}]}`, Config{}, "disks.queues: give a whole number, not a JSON bool"},
		{"negative memory", `{"kernel": "vmlinux", "memoryMiB": -1}`, Config{}, "memoryMiB: give a whole number of 0 or more"},
		{"not an object", `["vmlinux"]`, Config{}, "give a JSON object, not a JSON array"},
		{"a syntax error", "{\n  \"kernel\": \"vmlinux\",\n  \"cpus\": 2,,\n}", Config{}, "line 3, column 13"},
		{"cut short", `{"kernel": "vmlinux"`, Config{}, "unexpected EOF"},
		{"empty", ``, Config{}, "empty"},
		{"two objects", `{"kernel": "a"} {"kernel": "b"}`, Config{}, "give one object"},
		{"invalid", `{"kernel": "vmlinux", "disks": [{"path": "a", "queues": 20}]}`, Config{}, "disks[0].queues 20: give 1 to 16"},
		{"no kernel", `{}`, Config{}, "kernel is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Parse = %+v, %v; want an error saying %q", got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !equal(got, tt.want) {
				t.Fatalf("Parse =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
	if _, err := Parse([]byte(`{"kernel": "` + strings.Repeat("k", MaxFileSize) + `"}`)); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("an oversized config: %v", err)
	}
}

func TestLoadAndWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "vmm.json")
	c := Config{Kernel: "/boot/vmlinux", Cmdline: "", CPUs: 2, MemoryMiB: 512, Boot: "linux64",
		Disks: []Disk{{Path: "/d.raw", ReadOnly: true}}, Nets: []Net{{TAP: "gv1", MAC: "02:00:00:00:00:02"}},
		APISock: "api.sock", ConsoleSock: "console.sock", Incoming: "127.0.0.1:7000"}
	if err := WriteFile(path, c); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	// What was written comes back, with the defaults for the zero values
	// the file leaves out (an empty command line is kept).
	want := c
	want.OnReboot, want.CPUTemplate = DefaultOnReboot, DefaultCPUTemplate
	if !equal(got, want) {
		t.Errorf("Load =\n%+v\nwant\n%+v", got, want)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("config file mode: %v, %v; want 0600", fi, err)
	}
	// Replacing leaves no temporary file behind.
	c.CPUs = 4
	if err := WriteFile(path, c); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("files left in the folder: %v", ents)
	}
	if got, err := Load(path); err != nil || got.CPUs != 4 {
		t.Errorf("after replacing: %+v, %v", got, err)
	}

	if _, err := Load(filepath.Join(dir, "missing.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing file: %v", err)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"kernel": "k", "nets": [{"tap": ""}]}`), 0o600)
	_, err = Load(bad)
	if fe, ok := errors.AsType[*FieldError](err); !ok || fe.Field != "nets[0].tap" || !strings.Contains(err.Error(), bad) {
		t.Errorf("an invalid file: %v; want a FieldError naming the file and nets[0].tap", err)
	}
	if err := WriteFile(filepath.Join(dir, "no", "such", "dir.json"), c); err == nil {
		t.Error("WriteFile into a missing folder succeeded")
	}
}

// FuzzParse feeds arbitrary config files to the parser (a config file is
// input): it never panics, and what it accepts is valid and survives being
// written out and read back unchanged.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"kernel": "vmlinux"}`, `{"restore": "snap", "debugExit": true}`,
		`{"kernel": "k", "disks": [{"path": "a", "queues": 2}], "nets": [{"tap": "t", "mac": "02:00:00:00:00:01"}]}`,
		`{"incoming": "h:1", "tls": {"cert": "c", "key": "k", "ca": "a"}, "vsock": {"cid": 3, "uds": "u"}}`,
		`{"kernel": "k", "cpus": 1e3}`, `{"kernel": "k", "memoryMiB": 18446744073709551616}`,
		`{"kernel": "k", "cmdline": "\u0000"}`, `{"kernel": null}`, `[]`, `{`, ``, `{"a":1}`, `{"kernel": "k"} x`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted an invalid config: %v", err)
		}
		b, err := Marshal(c)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		again, err := Parse(b)
		if err != nil {
			t.Fatalf("Parse of its own output %s: %v", b, err)
		}
		// Compared as written: an empty list and none are the same config.
		if b2, err := Marshal(again); err != nil || !bytes.Equal(b2, b) {
			t.Fatalf("round trip changed the config:\n%s\n%s (%v)", b, b2, err)
		}
	})
}
