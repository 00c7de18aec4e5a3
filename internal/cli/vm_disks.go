package cli

import (
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/govisor/govisor/api"
)

// vmDiskAttachCmd is `govisor vm disk-attach NAME PATH [--readonly] [--format F]`.
func vmDiskAttachCmd(f *apiFlags) *cobra.Command {
	var d api.DiskSpec
	cmd := &cobra.Command{
		Use:   "disk-attach NAME PATH [--readonly] [--format FMT]",
		Short: "Add a disk to a VM (a running guest gets it at once, by PCI hotplug)",
		Long: `Add the image at PATH (on the VM's host) to the VM's disks. A running VM
gets it at once through ACPI PCI hotplug (the guest needs acpiphp, which
Linux has); a stopped VM gets it at its next start.`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: vmNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			d.Path = args[1]
			v, err := c.AttachDisk(cmd.Context(), args[0], d)
			if err != nil {
				return apiErr(err)
			}
			return f.print(cmd.OutOrStdout(), v, func(w io.Writer) { printDisks(w, v) })
		},
	}
	cmd.Flags().BoolVar(&d.ReadOnly, "readonly", false, "the guest may only read the disk")
	cmd.Flags().StringVar(&d.Format, "format", "", "raw, qcow2, vmdk, vhd, vhdx or vdi (default: probe the file)")
	return cmd
}

// vmDiskDetachCmd is `govisor vm disk-detach NAME INDEX`.
func vmDiskDetachCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "disk-detach NAME INDEX",
		Short: "Remove a VM's disk (a running guest is asked to eject it)",
		Long: `Remove disks[INDEX] (0 is vda) from the VM's definition. A running guest is
asked to eject a disk that was hot-plugged; disks the VM started with can be
removed only while it is stopped.`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: vmNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			i, err := strconv.Atoi(args[1])
			if err != nil || i < 0 {
				return &ExitError{Code: 2, Err: fmt.Errorf("disk index %q: give the disk's position, 0 for the first (vda)", args[1])}
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			v, err := c.DetachDisk(cmd.Context(), args[0], i)
			if err != nil {
				return apiErr(err)
			}
			return f.print(cmd.OutOrStdout(), v, func(w io.Writer) { printDisks(w, v) })
		},
	}
}

func printDisks(w io.Writer, v api.VM) {
	fmt.Fprintln(w, "INDEX\tPATH\tFORMAT\tREADONLY")
	for i, d := range v.Spec.Disks {
		format := d.Format
		if format == "" {
			format = "-"
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%v\n", i, d.Path, format, d.ReadOnly)
	}
}
