package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/govisor/govisor/api"
)

// hostMaintenanceCmd is `govisor host maintenance enter|exit HOST`.
func hostMaintenanceCmd(f *apiFlags) *cobra.Command {
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "maintenance enter|exit HOST [--wait 10m]",
		Short: "Put a host in maintenance mode (its VMs are live-migrated away) or take it out",
		Long: `enter: the cluster's leader live-migrates every running VM off HOST, placement
picking each target, and HOST takes no new VM; it is entering-maintenance
while VMs run there and maintenance once none does. VMs that cannot move are
listed with the reason. With --wait, the command follows the evacuation
until HOST is in maintenance (exit status 1 if it is not within the wait).
exit: HOST takes VMs again.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var on bool
			switch args[0] {
			case "enter":
				on = true
			case "exit":
			default:
				return &ExitError{Code: 2, Err: fmt.Errorf("maintenance %q: use enter or exit", args[0])}
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			h, err := c.SetMaintenance(cmd.Context(), args[1], on)
			if err != nil {
				return apiErr(err)
			}
			out := cmd.OutOrStdout()
			if !on || wait <= 0 || h.State == api.HostMaintenance {
				return f.print(out, h, func(w io.Writer) { fmt.Fprintf(w, "host %s: %s\n", h.Name, hostState(h)) })
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), wait)
			defer cancel()
			last := ""
			for {
				hs, err := c.Hosts(ctx)
				if err == nil {
					for _, x := range hs {
						if x.Name != h.Name {
							continue
						}
						if line := fmt.Sprintf("host %s: %s", x.Name, hostState(x)); line != last && f.output == "table" {
							fmt.Fprintln(out, line)
							last = line
						}
						if x.State == api.HostMaintenance {
							return f.print(out, x, func(io.Writer) {})
						}
					}
				}
				select {
				case <-ctx.Done():
					return &ExitError{Code: 1, Err: fmt.Errorf("host %s is not in maintenance after %v: %s", h.Name, wait, last)}
				case <-time.After(time.Second):
				}
			}
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", 0, "with enter: follow the evacuation until the host is in maintenance, at most this long")
	return cmd
}

// hostState is a host's state with its running VMs and stuck VMs.
func hostState(h api.Host) string {
	s := fmt.Sprintf("%s, %d of %d VMs running", h.State, h.RunningVMs, h.VMs)
	if len(h.Stuck) > 0 {
		s += "; cannot move: " + strings.Join(h.Stuck, "; ")
	}
	return s
}
