package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/govisor/govisor/api"
)

// vmPauseResumeCmd is `govisor vm pause|resume NAME`.
func vmPauseResumeCmd(f *apiFlags, action, short string) *cobra.Command {
	return &cobra.Command{
		Use:               action + " NAME",
		Short:             short,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: vmNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAction(cmd, f, args[0], action, 0)
		},
	}
}

// vmSnapshotCmd is `govisor vm snapshot NAME SNAPSHOT [--path DIR]`.
func vmSnapshotCmd(f *apiFlags) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "snapshot NAME SNAPSHOT [--path DIR]",
		Short: "Save a running VM's full state (it carries on afterwards)",
		Long: `Save a running or paused VM's full state (vCPUs, devices, memory) as the
snapshot SNAPSHOT, kept in the agent's folder for the VM or at --path (a
folder to create on the VM's host). 'govisor vm restore' resumes it.`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: vmNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			s, err := c.Snapshot(cmd.Context(), args[0], api.SnapshotRequest{Name: args[1], Path: path})
			if err != nil {
				return apiErr(err)
			}
			return f.print(cmd.OutOrStdout(), s, func(w io.Writer) {
				fmt.Fprintf(w, "vm %s: snapshot %s saved in %s (%s)\n", args[0], s.Name, s.Path, sizeString(s.SizeBytes))
			})
		},
	}
	cmd.Flags().StringVar(&path, "path", "", "absolute folder on the VM's host to save the snapshot in (default: the agent's folder for the VM)")
	return cmd
}

// vmSnapshotsCmd is `govisor vm snapshots NAME`.
func vmSnapshotsCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:               "snapshots NAME",
		Short:             "List a VM's snapshots",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: vmNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			l, err := c.Snapshots(cmd.Context(), args[0])
			if err != nil {
				return apiErr(err)
			}
			return f.print(cmd.OutOrStdout(), api.SnapshotList{Items: l}, func(w io.Writer) {
				fmt.Fprintln(w, "NAME\tCREATED\tSIZE\tPATH")
				for _, s := range l {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", s.Name, s.Created.Local().Format(time.DateTime), sizeString(s.SizeBytes), s.Path)
				}
			})
		},
	}
}

// vmRestoreCmd is `govisor vm restore NAME SNAPSHOT`.
func vmRestoreCmd(f *apiFlags) *cobra.Command {
	var wait time.Duration
	cmd := &cobra.Command{
		Use:               "restore NAME SNAPSHOT",
		Short:             "Resume a VM from one of its snapshots (a running VM's current state is dropped)",
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: vmNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			v, err := c.Restore(cmd.Context(), args[0], args[1], wait)
			if err != nil {
				return apiErr(err)
			}
			return f.print(cmd.OutOrStdout(), v, func(w io.Writer) {
				fmt.Fprintf(w, "vm %s: %s from snapshot %s\n", args[0], v.Status.State, args[1])
			})
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", time.Minute, "wait this long for the VM to run from the snapshot (0: do not wait)")
	return cmd
}

// vmMigrateCmd is `govisor vm migrate NAME --to HOST`.
func vmMigrateCmd(f *apiFlags) *cobra.Command {
	var req api.MigrateRequest
	var maxDowntime time.Duration
	var cancel bool
	cmd := &cobra.Command{
		Use:   "migrate NAME --to HOST [--max-downtime 50ms] [--bandwidth BYTES/S] | migrate NAME --cancel",
		Short: "Live-migrate a running VM to another host",
		Long: `Live-migrate a running VM to another host of the cluster (see 'govisor host
list'). The command returns when the migration ended; on failure the VM keeps
running where it was. 'govisor vm show' shows the progress meanwhile;
'govisor vm migrate NAME --cancel' stops it.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: vmNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cancel {
				c, err := f.client()
				if err != nil {
					return err
				}
				v, err := c.CancelMigrate(cmd.Context(), args[0])
				if err != nil {
					return apiErr(err)
				}
				return f.print(cmd.OutOrStdout(), v, func(w io.Writer) {
					fmt.Fprintf(w, "vm %s: migration cancelled; it keeps running on %s\n", args[0], v.Host)
				})
			}
			if req.Host == "" {
				return &ExitError{Code: exitInvalid, Err: fmt.Errorf("--to is required: the destination host")}
			}
			req.MaxDowntimeMS = int(maxDowntime / time.Millisecond)
			c, err := f.client()
			if err != nil {
				return err
			}
			v, err := c.Migrate(cmd.Context(), args[0], req)
			if err != nil {
				return apiErr(err)
			}
			return f.print(cmd.OutOrStdout(), v, func(w io.Writer) {
				fmt.Fprintf(w, "vm %s: %s on %s\n", args[0], v.Status.State, v.Host)
				if m := v.Status.Migration; m != nil && m.GuestReboots > 0 {
					fmt.Fprintf(w, "vm %s: the guest rebooted %d time(s) while it was sent; it was sent again each time\n", args[0], m.GuestReboots)
				}
			})
		},
	}
	cmd.Flags().StringVar(&req.Host, "to", "", "destination host (required)")
	cmd.Flags().DurationVar(&maxDowntime, "max-downtime", 0, "downtime target (default: the VMM's)")
	cmd.Flags().Int64Var(&req.Bandwidth, "bandwidth", 0, "bytes per second (0: unlimited)")
	cmd.Flags().BoolVar(&cancel, "cancel", false, "cancel the VM's running migration (it keeps running where it is)")
	return cmd
}

// sizeString formats n as B, KiB, MiB or GiB.
func sizeString(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	d, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 3; m /= unit {
		d *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(d), "KMGT"[exp])
}

// migrationString summarizes a migration for `vm show`.
func migrationString(m *api.MigrationStatus) string {
	if m == nil {
		return ""
	}
	s := fmt.Sprintf("%s to %s", m.State, m.To)
	switch m.State {
	case api.MigrationRunning:
		s += fmt.Sprintf(", round %d, %s sent, %.0f pages/s dirtied, %d pages left, ~%.0f ms downtime",
			m.Round, sizeString(m.BytesSent), m.DirtyRate, m.RemainingPages, m.ExpectedDowntimeMS)
	case api.MigrationFailed:
		s += ": " + m.Error
	}
	return s
}
