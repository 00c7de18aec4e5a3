package vmmconfig

import (
	"fmt"
	"math"
	"net"
	"strings"

	"github.com/google/uuid"
	"github.com/govisor/govisor/internal/vmlimits"
)

// Names says how messages name a config field, given its JSON path
// (kernel, disks[1].queues, tls.cert): a config file's users know the
// paths, `govisor run`'s users know its flags.
type Names func(field string) string

// Name names field with n, or by its JSON path when n is nil.
func (n Names) Name(field string) string {
	if n == nil {
		return field
	}
	return n(field)
}

// FieldError is a config value that cannot work. Field is its JSON path;
// the message names it and says what to give instead.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Msg }

// maxTAPName is the longest network interface name Linux takes (IFNAMSIZ-1).
const maxTAPName = 15

// Validate checks c and returns the first problem as a *FieldError that
// names the field by its JSON path and the fix. It checks what can be
// checked without the host: files are opened, and memory and disk formats
// checked, when the VMM builds the machine.
// Zero values stand for the defaults (see WithDefaults).
func (c *Config) Validate() error { return c.ValidateNamed(nil) }

// ValidateNamed is Validate with the fields named by names (nil: JSON
// paths), so that `govisor run` can speak of its flags.
func (c *Config) ValidateNamed(names Names) error {
	n := names.Name
	bad := func(field, format string, args ...any) error {
		return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	switch c.Firmware {
	case "":
	case FirmwareBIOS, FirmwareUEFI:
		if c.Kernel != "" || c.Initrd != "" {
			return bad("firmware", "%s and %s exclude each other: firmware boots the disk's own boot loader", n("firmware"), n("kernel"))
		}
	default:
		return bad("firmware", "%s %q: use bios or uefi", n("firmware"), c.Firmware)
	}
	if c.FirmwareImage != "" && c.Firmware == "" {
		return bad("firmwareImage", "%s needs %s bios or uefi", n("firmwareImage"), n("firmware"))
	}
	if c.FirmwareVars != "" && c.Firmware != FirmwareUEFI {
		return bad("firmwareVars", "%s needs %s uefi: only UEFI firmware keeps variables", n("firmwareVars"), n("firmware"))
	}
	if c.UUID != "" {
		if c.Firmware == "" {
			return bad("uuid", "%s needs %s bios or uefi: the UUID reaches the guest through firmware's SMBIOS tables", n("uuid"), n("firmware"))
		}
		if _, err := uuid.Parse(c.UUID); err != nil {
			return bad("uuid", "%s %q is not a UUID: write 8-4-4-4-12 hex digits, e.g. 6ba7b810-9dad-11d1-80b4-00c04fd430c8", n("uuid"), c.UUID)
		}
	}
	if c.Kernel == "" && c.Firmware == "" && c.Restore == "" && c.Incoming == "" {
		return bad("kernel", "%s is required: the path of a bzImage or vmlinux (or %s DIR, or %s HOST:PORT)",
			n("kernel"), n("restore"), n("incoming"))
	}
	if c.Restore != "" && c.Incoming != "" {
		return bad("incoming", "%s and %s exclude each other: start from a snapshot or from a migration, not both",
			n("restore"), n("incoming"))
	}
	if c.CPUs < 0 || c.CPUs > vmlimits.MaxCPUs {
		return bad("cpus", "%s %d: give 1 to %d", n("cpus"), c.CPUs, vmlimits.MaxCPUs)
	}
	switch c.Boot {
	case "", "linux64", "pvh":
	default:
		return bad("boot", "%s %q: use linux64 or pvh", n("boot"), c.Boot)
	}
	switch c.OnReboot {
	case "", "restart", "exit":
	default:
		return bad("onReboot", "%s %q: use restart or exit", n("onReboot"), c.OnReboot)
	}
	switch c.CPUTemplate {
	case "", "auto", "host", "pvm":
	default:
		return bad("cpuTemplate", "%s %q: use auto, host or pvm", n("cpuTemplate"), c.CPUTemplate)
	}
	for _, f := range c.CPUFeatures {
		if !validFeature(f) {
			return bad("cpuFeatures", "%s: %q is not a CPU feature name: write them as /proc/cpuinfo flags (lower-case letters, digits, '_')", n("cpuFeatures"), f)
		}
	}
	for i, d := range c.Disks {
		if err := d.validate(fmt.Sprintf("disks[%d]", i), n); err != nil {
			return err
		}
	}
	for i, nc := range c.Nets {
		if err := nc.validate(fmt.Sprintf("nets[%d]", i), n); err != nil {
			return err
		}
	}
	if v := c.Vsock; v != nil {
		if v.CID < 3 || v.CID > math.MaxUint32 {
			return bad("vsock.cid", "%s %d: give a context ID of 3 or more (32 bits)", n("vsock.cid"), v.CID)
		}
		if v.UDS == "" {
			return bad("vsock.uds", "%s is required: the Unix socket host connections go through", n("vsock.uds"))
		}
	}
	if err := c.validateFence(n); err != nil {
		return err
	}
	if err := c.validateJail(n); err != nil {
		return err
	}
	return c.validateTLS(n)
}

// validateFence checks the watchdog's TTL and the disk leases' owner.
func (c *Config) validateFence(n func(string) string) error {
	if c.FenceTTLMS < 0 || c.FenceTTLMS > MaxFenceTTLMS {
		return &FieldError{Field: "fenceTTLMS", Msg: fmt.Sprintf("%s %d ms: give 0 (not armed) to %d", n("fenceTTLMS"), c.FenceTTLMS, MaxFenceTTLMS)}
	}
	if c.FenceDeadlineMonoNS < 0 || c.FenceDeadlineMonoNS != 0 && c.FenceTTLMS != 0 {
		return &FieldError{Field: "fenceDeadlineMonoNS", Msg: fmt.Sprintf("%s %d: give a CLOCK_MONOTONIC time in nanoseconds, and not with %s", n("fenceDeadlineMonoNS"), c.FenceDeadlineMonoNS, n("fenceTTLMS"))}
	}
	leased := false
	for _, d := range c.Disks {
		leased = leased || d.Lease
	}
	if c.LeaseOwner != "" {
		host, vm, ok := strings.Cut(c.LeaseOwner, "/")
		if !ok || host == "" || vm == "" || strings.Contains(vm, "/") {
			return &FieldError{Field: "leaseOwner", Msg: fmt.Sprintf("%s %q: give HOST/VM", n("leaseOwner"), c.LeaseOwner)}
		}
	}
	switch {
	case leased && c.LeaseOwner == "":
		return &FieldError{Field: "leaseOwner", Msg: fmt.Sprintf("disks with a lease need %s HOST/VM: who holds it", n("leaseOwner"))}
	case c.AdoptLeases != nil && (c.Incoming == "" || c.LeaseOwner == "" || c.AdoptLeases.Nonce == 0 || len(c.AdoptLeases.Disks) == 0):
		return &FieldError{Field: "adoptLeases", Msg: fmt.Sprintf("adopting disk leases needs %s, %s HOST/VM, a non-zero nonce and the disks", n("incoming"), n("leaseOwner"))}
	}
	return nil
}

func (d Disk) validate(field string, n func(string) string) error {
	if d.Path == "" {
		return &FieldError{Field: field + ".path", Msg: fmt.Sprintf("%s is required: the disk image's file", n(field+".path"))}
	}
	if d.Queues < 0 || d.Queues > MaxDiskQueues {
		return &FieldError{Field: field + ".queues", Msg: fmt.Sprintf("%s %d: give 1 to %d", n(field+".queues"), d.Queues, MaxDiskQueues)}
	}
	return nil
}

func (nc Net) validate(field string, n func(string) string) error {
	if nc.TAP == "" || len(nc.TAP) > maxTAPName {
		return &FieldError{Field: field + ".tap", Msg: fmt.Sprintf("%s %q: give the TAP device's name (1 to %d characters)",
			n(field+".tap"), nc.TAP, maxTAPName)}
	}
	if nc.MAC != "" {
		if _, err := net.ParseMAC(nc.MAC); err != nil {
			return &FieldError{Field: field + ".mac", Msg: fmt.Sprintf("%s %q is not a MAC address (use aa:bb:cc:dd:ee:ff)", n(field+".mac"), nc.MAC)}
		}
	}
	return nil
}

// validateTLS checks that TLS secures a TCP Incoming with all its parts.
func (c *Config) validateTLS(n func(string) string) error {
	t := c.TLS
	if t == nil {
		return nil
	}
	bad := func(field, format string, args ...any) error {
		return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	parts := fmt.Sprintf("%s, %s and %s", n("tls.cert"), n("tls.key"), n("tls.ca"))
	switch {
	case c.Incoming == "":
		return bad("incoming", "%s secure %s: give %s HOST:PORT too", parts, n("incoming"), n("incoming"))
	case t.Cert == "" || t.Key == "" || t.CA == "":
		return bad("tls", "%s go together: mutual TLS needs all three", parts)
	case strings.HasPrefix(c.Incoming, UnixPrefix):
		return bad("tls", "%s secure a TCP %s; a unix: socket never leaves this host (its file mode keeps other users out)", n("tls"), n("incoming"))
	}
	return nil
}

// UnixPrefix marks a migration address that is a Unix socket path: both
// VMMs run on this host, and open vsock connections move with the VM.
const UnixPrefix = "unix:"

// validFeature reports whether f is written as /proc/cpuinfo writes a flag.
func validFeature(f string) bool {
	if f == "" || len(f) > 64 {
		return false
	}
	for _, c := range f {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}
