package cli

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/vmimport"
	"github.com/govisor/govisor/internal/vmimport/exporter"
	"github.com/govisor/govisor/internal/vmm/vmmconfig"
)

// newExportCmd builds `govisor export ova`.
func newExportCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Export a VM for another hypervisor",
	}
	cmd.AddCommand(newExportOVACmd())
	return cmd
}

func newExportOVACmd() *cobra.Command {
	f := &apiFlags{}
	var out, firmware string
	var progress bool
	cmd := &cobra.Command{
		Use:   "ova VM|CONFIG.json -o FILE.ova",
		Short: "Write a VM as an OVA (OVF 1.x, streamOptimized VMDK disks) for VMware or VirtualBox",
		Long: `Write a VM as an OVA: an OVF 1.0 descriptor, a SHA256 manifest and the
disks as streamOptimized VMDKs, the package VMware and VirtualBox import.
The VM is a "govisor run --config" file, or the name of a VM of the agent
whose disks are files on this host (stop it first: its disks must not
change while they are read).` + "\n" + exitCodesHelp,
		Example: `  govisor export ova web01 -o web01.ova
  govisor export ova ./web01.json -o /tmp/web01.ova`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return &ExitError{Code: exitInvalid, Err: errors.New("export: give the .ova to write with -o FILE.ova")}
			}
			vm, images, err := exportSource(cmd, f, args[0])
			if err != nil {
				return err
			}
			switch firmware {
			case "":
			case vmimport.FirmwareBIOS, vmimport.FirmwareUEFI:
				vm.Firmware = firmware
			default:
				return &ExitError{Code: exitInvalid, Err: fmt.Errorf("--firmware %q: use bios or uefi", firmware)}
			}
			if len(images) == 0 {
				return &ExitError{Code: exitInvalid, Err: fmt.Errorf("export: VM %s has no disks", vm.Name)}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			o := exporter.Options{VM: vm, Images: images, Out: absPath(out)}
			errw := cmd.ErrOrStderr()
			if progress || isTerminal(errw) {
				bars := &progressBars{w: errw}
				o.Progress = func(i, n int, done, total int64) {
					bars.update(fmt.Sprintf("disk %d of %d:", i+1, n), done, total)
				}
				defer bars.finish()
			}
			if err := exporter.Export(ctx, o); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "VM %s (%d CPUs, %d MiB, firmware %s, %d disks) written to %s\n", vm.Name, vm.CPUs, vm.MemoryMiB, vm.Firmware, len(images), o.Out)
			return nil
		},
	}
	f.registerConn(cmd)
	cmd.Flags().StringVarP(&out, "out", "o", "", "the .ova file to write")
	cmd.Flags().StringVar(&firmware, "firmware", "", "the firmware the package declares: bios or uefi (default: the VM's, else bios)")
	cmd.Flags().BoolVarP(&progress, "progress", "p", false, "show progress on stderr (the default on a terminal)")
	return cmd
}

// exportFirmware is the firmware a package declares for a VM that boots
// through firmware (bios, uefi) or its kernel directly (""): a package
// carries no kernel, so the latter's disks are declared for BIOS, the
// firmware most images without an ESP boot on.
func exportFirmware(f string) string {
	if f == vmimport.FirmwareUEFI {
		return vmimport.FirmwareUEFI
	}
	return vmimport.FirmwareBIOS
}

// exportSource reads the VM to export: a run config file, else a VM of
// the agent.
func exportSource(cmd *cobra.Command, f *apiFlags, arg string) (*vmimport.VM, []string, error) {
	if fi, err := os.Stat(arg); err == nil && fi.Mode().IsRegular() {
		cfg, err := vmmconfig.Load(arg)
		if err != nil {
			return nil, nil, err
		}
		name := strings.TrimSuffix(filepath.Base(arg), filepath.Ext(arg))
		vm := &vmimport.VM{Name: name, CPUs: max(cfg.CPUs, 1), MemoryMiB: int64(cfg.MemoryMiB), Firmware: exportFirmware(cfg.Firmware), UUID: cfg.UUID}
		var images []string
		for _, d := range cfg.Disks {
			images = append(images, d.Path)
		}
		for _, n := range cfg.Nets {
			vm.NICs = append(vm.NICs, vmimport.NIC{MAC: n.MAC})
		}
		return vm, images, nil
	}
	f.output = "table"
	c, err := f.client()
	if err != nil {
		return nil, nil, err
	}
	v, err := c.GetVM(cmd.Context(), arg)
	if err != nil {
		return nil, nil, apiErr(err)
	}
	switch v.Status.State {
	case api.StateRunning, api.StatePaused, api.StateStopping:
		return nil, nil, &ExitError{Code: exitInvalid, Err: fmt.Errorf("export: VM %s is %s: stop it first (its disks must not change while they are read)", arg, v.Status.State)}
	}
	s := v.Spec
	vm := &vmimport.VM{Name: s.Name, CPUs: max(s.CPUs, 1), Firmware: exportFirmware(s.Firmware), UUID: s.UUID}
	if s.Memory != "" {
		mib, err := api.ParseMemoryMiB(s.Memory)
		if err != nil {
			return nil, nil, fmt.Errorf("export: VM %s memory: %w", arg, err)
		}
		vm.MemoryMiB = int64(mib)
	}
	var images []string
	for _, d := range s.Disks {
		images = append(images, d.Path)
	}
	for _, n := range s.NICs {
		vm.NICs = append(vm.NICs, vmimport.NIC{MAC: n.MAC, Network: n.Network})
	}
	return vm, images, nil
}
