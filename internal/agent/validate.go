package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/agent/service"
	"github.com/govisor/govisor/internal/cluster/placement"
	"github.com/govisor/govisor/internal/node"
	"github.com/govisor/govisor/internal/vmlimits"
)

// The services' errors (see package service), by their short names here.
var (
	ErrInvalid = service.ErrInvalid
	ErrBusy    = service.ErrBusy
	ErrNotHere = service.ErrNotHere
	ErrVMM     = service.ErrVMM
	errf       = service.Errf
)

// FieldError is a bad request naming the offending field.
type FieldError = service.FieldError

// Defaults for fields a definition leaves out (the same as `govisor run`).
const (
	defaultMemory  = "256M"
	defaultCmdline = "console=ttyS0"
	maxCmdline     = 4096
	maxStopTimeout = time.Hour
)

// nameRE is what a VM name (a DNS label) looks like.
var nameRE = node.NameRE

// normalize checks a definition and fills in its defaults. hostMiB is the
// host's RAM: a VM that could never fit is refused up front.
func normalize(s api.VMSpec, hostMiB uint64) (api.VMSpec, error) {
	return normalizeDisksAt(s, hostMiB, true)
}

// normalizeDisksAt is normalize; disksHere false leaves out the check that
// each disk's file exists on this host (an incoming migration whose disks
// are mirrored: their copies are made here after the check, and the
// source checked the originals).
func normalizeDisksAt(s api.VMSpec, hostMiB uint64, disksHere bool) (api.VMSpec, error) {
	if !nameRE.MatchString(s.Name) {
		return s, fieldErr("name", fmt.Sprintf("%q: use 1-63 lower-case letters, digits and '-' (a DNS label)", s.Name))
	}
	if s.CPUs == 0 {
		s.CPUs = 1
	}
	if s.CPUs < 1 || s.CPUs > vmlimits.MaxCPUs {
		return s, fieldErr("cpus", fmt.Sprintf("%d: give 1 to %d", s.CPUs, vmlimits.MaxCPUs))
	}
	if s.Memory == "" {
		s.Memory = defaultMemory
	}
	mib, err := api.ParseMemoryMiB(s.Memory)
	if err != nil {
		return s, fieldErr("memory", err.Error())
	}
	if hostMiB > 0 && mib > hostMiB {
		return s, fieldErr("memory", fmt.Sprintf("%s is more than this host's %d MiB of RAM", s.Memory, hostMiB))
	}
	switch s.Firmware {
	case "":
		if err := checkFile(s.Kernel, true); err != nil {
			return s, fieldErr("kernel", err.Error())
		}
	case api.FirmwareBIOS, api.FirmwareUEFI:
		// Specs stored before normalize left firmware VMs' cmdline empty
		// carry the default: it is no kernel option of the user's.
		if s.Cmdline == defaultCmdline {
			s.Cmdline = ""
		}
		if s.Kernel != "" || s.Initrd != "" || s.Cmdline != "" {
			return s, fieldErr("firmware", s.Firmware+" boots the first disk's own boot loader: leave out kernel, initrd and cmdline")
		}
		if len(s.Disks) == 0 {
			return s, fieldErr("disks", "firmware "+s.Firmware+" boots the first disk: give one")
		}
	default:
		return s, fieldErr("firmware", fmt.Sprintf("%q: use bios or uefi, or leave it out to boot kernel", s.Firmware))
	}
	if s.UUID != "" {
		u, err := uuid.Parse(s.UUID)
		if err != nil {
			return s, fieldErr("uuid", fmt.Sprintf("%q is not a UUID: write 8-4-4-4-12 hex digits, or leave it out for a new one", s.UUID))
		}
		s.UUID = u.String()
	}
	if err := checkFile(s.Initrd, false); err != nil {
		return s, fieldErr("initrd", err.Error())
	}
	for i, d := range s.Disks {
		field := fmt.Sprintf("disks[%d]", i)
		if d.Path == "" {
			return s, fieldErr(field+".path", "required: the path of a disk image on the host")
		}
		if disksHere {
			if err := checkFile(d.Path, true); err != nil {
				return s, fieldErr(field+".path", err.Error())
			}
		}
		if strings.ContainsAny(d.Path, ",") {
			return s, fieldErr(field+".path", fmt.Sprintf("%q: a disk path cannot contain a comma", d.Path))
		}
		switch d.Format {
		case "", "raw", "qcow2", "vmdk", "vhd", "vhdx", "vdi":
		default:
			return s, fieldErr(field+".format", fmt.Sprintf("%q: use raw, qcow2, vmdk, vhd, vhdx or vdi (or leave it out to probe)", d.Format))
		}
	}
	if err := normalizeNICs(&s); err != nil {
		return s, err
	}
	if s.Cmdline == "" && s.Firmware == "" {
		s.Cmdline = defaultCmdline
	}
	if len(s.Cmdline) > maxCmdline {
		return s, fieldErr("cmdline", fmt.Sprintf("%d bytes; at most %d", len(s.Cmdline), maxCmdline))
	}
	switch s.Boot {
	case "":
		s.Boot = api.BootLinux64
	case api.BootLinux64, api.BootPVH:
	default:
		return s, fieldErr("boot", fmt.Sprintf("%q: use linux64 or pvh", s.Boot))
	}
	if s.StopTimeout != "" {
		d, err := time.ParseDuration(s.StopTimeout)
		if err != nil || d < 0 || d > maxStopTimeout {
			return s, fieldErr("stopTimeout", fmt.Sprintf("%q: give a duration up to %v, such as 30s (0s: no graceful shutdown)", s.StopTimeout, maxStopTimeout))
		}
	}
	switch s.RestartPolicy {
	case "":
		s.RestartPolicy = api.RestartOnFailure
	case api.RestartNever, api.RestartOnFailure, api.RestartAlways:
	default:
		return s, fieldErr("restartPolicy", fmt.Sprintf("%q: use never, on-failure or always", s.RestartPolicy))
	}
	for i, r := range s.HostRules {
		if _, err := placement.ParseHostRule(r); err != nil {
			return s, fieldErr(fmt.Sprintf("hostRules[%d]", i), err.Error())
		}
	}
	for _, f := range []struct {
		field  string
		groups []string
	}{{"affinity", s.Affinity}, {"antiAffinity", s.AntiAffinity}} {
		field := f.field
		for i, g := range f.groups {
			if !nameRE.MatchString(g) {
				return s, fieldErr(fmt.Sprintf("%s[%d]", field, i), fmt.Sprintf("%q: name groups like VMs (lower-case letters, digits, '-')", g))
			}
		}
	}
	switch s.CPU {
	case "", api.CPUBaseline, api.CPUHost:
	default:
		return s, fieldErr("cpu", fmt.Sprintf("%q: use baseline (the cluster's common CPU features, the default) or host", s.CPU))
	}
	switch s.RestartPriority {
	case "":
		if s.HA {
			s.RestartPriority = api.PriorityMedium
		}
	case api.PriorityHigh, api.PriorityMedium, api.PriorityLow:
	default:
		return s, fieldErr("restartPriority", fmt.Sprintf("%q: use high, medium or low", s.RestartPriority))
	}
	return s, nil
}

// checkFile requires an absolute path to a readable regular file: the VMM
// child opens it later, and a missing file must fail the create, not the boot.
func checkFile(path string, required bool) error {
	if path == "" {
		if required {
			return errors.New("required: the path of a bzImage or vmlinux on the host")
		}
		return nil
	}
	if !filepath.IsAbs(path) {
		return fmt.Errorf("%q: give an absolute path on the host", path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s: no such file on this host", path)
		}
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", path)
	}
	return nil
}

// fieldErr is a FieldError on field.
func fieldErr(field, msg string) *FieldError { return &FieldError{Field: field, Msg: msg} }
