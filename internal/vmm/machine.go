package vmm

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/uuid"
	"github.com/govisor/govisor/internal/vm"
	"github.com/govisor/govisor/internal/vmm/vmmconfig"
)

// machineConfig turns a validated config (with its defaults) into the
// machine to boot, reading the kernel and initrd. Without a kernel (a
// restore or an incoming migration) it holds the devices only: the
// snapshot or the migration stream describes the rest.
func machineConfig(c vmmconfig.Config, names vmmconfig.Names) (vm.Config, error) {
	mc := vm.Config{
		CPUs: max(c.CPUs, 1), MemoryMiB: c.MemoryMiB, Cmdline: c.Cmdline, Boot: vm.BootMode(c.Boot),
		GuestDecompress: c.GuestDecompress, DebugExit: c.DebugExit, Template: c.CPUTemplate,
		CPUFeatures: c.CPUFeatures,
		Disks:       disks(c.Disks), RNG: c.RNG, Nets: nets(c.Nets), Balloon: c.Balloon,
	}
	if v := c.Vsock; v != nil {
		mc.Vsock = &vm.Vsock{CID: v.CID, UDS: v.UDS}
	}
	var err error
	if c.Firmware != "" {
		path := c.FirmwareImage
		if path == "" {
			if path, err = vmmconfig.FindFirmware(c.Firmware); err != nil {
				return mc, fmt.Errorf("%s %s: %w", names.Name("firmware"), c.Firmware, err)
			}
		}
		if mc.Firmware, err = os.ReadFile(path); err != nil {
			return mc, fmt.Errorf("%s %s: %w", names.Name("firmware"), c.Firmware, err)
		}
		if c.UUID != "" {
			u, err := uuid.Parse(c.UUID)
			if err != nil {
				return mc, fmt.Errorf("%s %q: %w", names.Name("uuid"), c.UUID, err)
			}
			mc.UUID = u
		}
		if c.Firmware == vmmconfig.FirmwareUEFI {
			if mc.FirmwareVars, err = uefiVars(c.FirmwareVars, path); err != nil {
				return mc, fmt.Errorf("%s: %w", names.Name("firmwareVars"), err)
			}
		}
		return mc, nil
	}
	if c.Kernel == "" {
		return mc, nil
	}
	if mc.Kernel, err = os.ReadFile(c.Kernel); err != nil {
		return mc, fmt.Errorf("%s: %w", names.Name("kernel"), err)
	}
	if c.Initrd != "" {
		if mc.Initrd, err = os.ReadFile(c.Initrd); err != nil {
			return mc, fmt.Errorf("%s: %w", names.Name("initrd"), err)
		}
	}
	return mc, nil
}

// uefiVars opens the VM's UEFI variable file at path, made from OVMF's
// template for the code image at code when missing; it stays open for
// the VMM's life (the machine maps it on every boot). Without a path the
// variables go to a scratch copy, unlinked at once, gone when the VMM exits.
func uefiVars(path, code string) (*os.File, error) {
	if path == "" {
		dir, err := os.MkdirTemp("", "govisor-vars-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		path = filepath.Join(dir, vmmconfig.OVMFVars)
	}
	if err := vmmconfig.PrepareVars(path, code); err != nil {
		return nil, err
	}
	return os.OpenFile(path, os.O_RDWR, 0)
}

// incomingConfig is the machine an incoming migration starts from: its
// devices on this host, and its vCPUs when the config gives them, so that
// the machine is built before the migration and not in the guest's
// downtime.
func incomingConfig(c vmmconfig.Config, boot vm.Config) vm.Config {
	// A firmware VM's comes with its firmware (the state brings the image
	// the source ran, and its UEFI variables into this VM's file).
	return vm.Config{CPUs: c.CPUs, MemoryMiB: boot.MemoryMiB, Console: boot.Console, RNG: boot.RNG, Balloon: boot.Balloon,
		DebugExit: boot.DebugExit, Disks: boot.Disks, Nets: boot.Nets, Vsock: boot.Vsock,
		Firmware: boot.Firmware, FirmwareVars: boot.FirmwareVars}
}

func disks(ds []vmmconfig.Disk) []vm.Disk {
	var out []vm.Disk
	for _, d := range ds {
		out = append(out, vm.Disk{Path: d.Path, ReadOnly: d.ReadOnly, Direct: d.Direct, Format: d.Format, Serial: d.Serial, Queues: d.Queues})
	}
	return out
}

func nets(ns []vmmconfig.Net) []vm.Net {
	var out []vm.Net
	for _, n := range ns {
		out = append(out, vm.Net{TAP: n.TAP, MAC: n.MAC})
	}
	return out
}
