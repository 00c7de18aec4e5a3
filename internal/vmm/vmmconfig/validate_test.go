package vmmconfig

import (
	"errors"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	boot := func(edit func(c *Config)) Config {
		c := Defaults()
		c.Kernel = "vmlinux"
		edit(&c)
		return c
	}
	tests := []struct {
		name  string
		cfg   Config
		field string // "" for a valid config
		want  string // in the message
	}{
		{"defaults with a kernel", boot(func(*Config) {}), "", ""},
		{"zero values are the defaults", Config{Kernel: "vmlinux"}, "", ""},
		{"everything", boot(func(c *Config) {
			c.CPUs, c.MemoryMiB, c.Boot, c.OnReboot, c.CPUTemplate = 4, 1024, "pvh", "exit", "host"
			c.Disks = []Disk{{Path: "a.qcow2", ReadOnly: true, Format: "qcow2", Serial: "s", Queues: 16}, {Path: "b.raw", Direct: true}}
			c.Nets = []Net{{TAP: "tap0", MAC: "02:00:00:00:00:01"}, {TAP: "gv0123456789abc"}}
			c.Vsock = &Vsock{CID: 3, UDS: "v.sock"}
			c.APISock, c.ConsoleSock, c.RNG, c.Balloon = "api.sock", "console.sock", true, true
		}), "", ""},
		{"restore without a kernel", Config{Restore: "snap"}, "", ""},
		{"incoming without a kernel", Config{Incoming: "127.0.0.1:7000"}, "", ""},
		{"incoming with TLS", Config{Incoming: "127.0.0.1:7000", TLS: &TLS{Cert: "c", Key: "k", CA: "ca"}}, "", ""},
		{"no kernel", Config{}, "kernel", "kernel is required"},
		{"BIOS firmware without a kernel", Config{Firmware: "bios", Disks: []Disk{{Path: "d.img"}}}, "", ""},
		{"BIOS firmware with an image", Config{Firmware: "bios", FirmwareImage: "bios.bin"}, "", ""},
		{"firmware and a kernel", boot(func(c *Config) { c.Firmware = "bios" }), "firmware", "exclude each other"},
		{"UEFI firmware", Config{Firmware: "uefi", FirmwareVars: "vars.fd"}, "", ""},
		{"UUID with firmware", Config{Firmware: "bios", UUID: "6ba7b810-9dad-11d1-80b4-00c04fd430c8"}, "", ""},
		{"UUID without firmware", boot(func(c *Config) { c.UUID = "6ba7b810-9dad-11d1-80b4-00c04fd430c8" }), "uuid", "needs firmware bios or uefi"},
		{"not a UUID", Config{Firmware: "bios", UUID: "6ba7b810-9dad"}, "uuid", "is not a UUID: write 8-4-4-4-12 hex digits"},
		{"UEFI firmware and a kernel", boot(func(c *Config) { c.Firmware = "uefi" }), "firmware", "exclude each other"},
		{"variables without UEFI", Config{Firmware: "bios", FirmwareVars: "vars.fd"}, "firmwareVars", "needs firmware uefi"},
		{"unknown firmware", Config{Firmware: "coreboot"}, "firmware", `firmware "coreboot": use bios or uefi`},
		{"firmware image without firmware", boot(func(c *Config) { c.FirmwareImage = "bios.bin" }), "firmwareImage", "needs firmware bios or uefi"},
		{"restore and incoming", Config{Restore: "snap", Incoming: "unix:m.sock"}, "incoming", "exclude each other"},
		{"negative cpus", boot(func(c *Config) { c.CPUs = -1 }), "cpus", "cpus -1: give 1 to 64"},
		{"too many cpus", boot(func(c *Config) { c.CPUs = 65 }), "cpus", "cpus 65: give 1 to 64"},
		{"boot mode", boot(func(c *Config) { c.Boot = "bios" }), "boot", `boot "bios": use linux64 or pvh`},
		{"on reboot", boot(func(c *Config) { c.OnReboot = "halt" }), "onReboot", `onReboot "halt": use restart or exit`},
		{"cpu template", boot(func(c *Config) { c.CPUTemplate = "skylake" }), "cpuTemplate", "use auto, host or pvm"},
		{"cpu feature", boot(func(c *Config) { c.CPUFeatures = []string{"sse2", "AVX2"} }), "cpuFeatures", `"AVX2" is not a CPU feature name`},
		{"disk without a path", boot(func(c *Config) { c.Disks = []Disk{{Path: "a"}, {ReadOnly: true}} }), "disks[1].path", "disks[1].path is required"},
		{"too many disk queues", boot(func(c *Config) { c.Disks = []Disk{{Path: "a"}, {Path: "b", Queues: 20}} }), "disks[1].queues", "disks[1].queues 20: give 1 to 16"},
		{"negative disk queues", boot(func(c *Config) { c.Disks = []Disk{{Path: "a", Queues: -1}} }), "disks[0].queues", "give 1 to 16"},
		{"net without a TAP", boot(func(c *Config) { c.Nets = []Net{{MAC: "02:00:00:00:00:01"}} }), "nets[0].tap", "TAP device's name"},
		{"TAP name too long", boot(func(c *Config) { c.Nets = []Net{{TAP: "waytoolongforalinuxiface"}} }), "nets[0].tap", "1 to 15 characters"},
		{"bad MAC", boot(func(c *Config) { c.Nets = []Net{{TAP: "t", MAC: "zz"}} }), "nets[0].mac", "not a MAC address"},
		{"vsock CID 2", boot(func(c *Config) { c.Vsock = &Vsock{CID: 2, UDS: "v"} }), "vsock.cid", "3 or more"},
		{"vsock CID beyond 32 bits", boot(func(c *Config) { c.Vsock = &Vsock{CID: 1 << 32, UDS: "v"} }), "vsock.cid", "3 or more"},
		{"vsock without a socket", boot(func(c *Config) { c.Vsock = &Vsock{CID: 3} }), "vsock.uds", "vsock.uds is required"},
		{"jailed", boot(func(c *Config) { c.Jail, c.Seccomp = &Jail{ID: "host.vm", Dir: "/var/lib/vms/vm"}, "kill" }), "", ""},
		{"seccomp mode", boot(func(c *Config) { c.Seccomp = "trap" }), "seccomp", `seccomp "trap": give kill, log or off`},
		{"jail without an id", boot(func(c *Config) { c.Jail = &Jail{Dir: "/v"} }), "jail.id", "without '/'"},
		{"jail id with a slash", boot(func(c *Config) { c.Jail = &Jail{ID: "../x", Dir: "/v"} }), "jail.id", "without '/'"},
		{"jail folder relative", boot(func(c *Config) { c.Jail = &Jail{ID: "a", Dir: "vm"} }), "jail.dir", "absolute path"},
		{"jail folder the root", boot(func(c *Config) { c.Jail = &Jail{ID: "a", Dir: "/"} }), "jail.dir", "not the root"},
		{"TLS without incoming", boot(func(c *Config) { c.TLS = &TLS{Cert: "c", Key: "k", CA: "ca"} }), "incoming", "give incoming HOST:PORT too"},
		{"TLS incomplete", Config{Incoming: "127.0.0.1:1", TLS: &TLS{Cert: "c"}}, "tls", "go together"},
		{"TLS on a Unix socket", Config{Incoming: "unix:m.sock", TLS: &TLS{Cert: "c", Key: "k", CA: "ca"}}, "tls", "never leaves this host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			fe, ok := errors.AsType[*FieldError](err)
			if !ok || fe.Field != tt.field || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want a FieldError on %s saying %q", err, tt.field, tt.want)
			}
			if strings.Contains(err.Error(), "--") {
				t.Errorf("%q names a flag; a config names fields", err)
			}
		})
	}
}

// TestValidateNamed checks that the messages name fields as the caller's
// users know them: govisor run speaks of its flags.
func TestValidateNamed(t *testing.T) {
	flags := func(field string) string { return "--" + strings.ToLower(field) }
	c := Config{}
	err := c.ValidateNamed(flags)
	want := "--kernel is required: the path of a bzImage or vmlinux (or --restore DIR, or --incoming HOST:PORT)"
	if err == nil || err.Error() != want {
		t.Fatalf("ValidateNamed = %v, want %q", err, want)
	}
	if fe, ok := errors.AsType[*FieldError](err); !ok || fe.Field != "kernel" {
		t.Errorf("the error's field is not the JSON path: %#v", err)
	}
}

func TestWithDefaults(t *testing.T) {
	got := Config{Kernel: "k"}.WithDefaults()
	want := Defaults()
	want.Kernel, want.CPUs, want.Cmdline = "k", 1, ""
	if !equal(got, want) {
		t.Errorf("WithDefaults = %+v, want %+v", got, want)
	}
	if c := (Config{Incoming: "h:1"}).WithDefaults(); c.CPUs != 0 {
		t.Errorf("an incoming migration's vCPUs became %d; 0 means the source's", c.CPUs)
	}
	set := Config{Kernel: "k", CPUs: 2, MemoryMiB: 64, Boot: "pvh", OnReboot: "exit", CPUTemplate: "pvm", Cmdline: "quiet"}
	if c := set.WithDefaults(); !equal(c, set) {
		t.Errorf("WithDefaults changed given values: %+v", c)
	}
}
