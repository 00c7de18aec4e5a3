package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/govisor/govisor/api"
)

// newClusterCmd is `govisor cluster`: the cluster-wide settings.
func newClusterCmd() *cobra.Command {
	f := &apiFlags{}
	cmd := &cobra.Command{Use: "cluster", Short: "Show and change the cluster-wide settings", Long: "Show and change the cluster-wide settings.\n" + exitCodesHelp}
	f.register(cmd)
	var admission string
	var failures int
	settings := &cobra.Command{
		Use:   "settings [--ha-admission off|warn|refuse] [--host-failures N]",
		Short: "Show the cluster's settings, or change those given",
		Long: `HA admission control: with --ha-admission refuse, a VM start that would
leave too little capacity to restart the HA VMs of the largest host(s)
(--host-failures of them, default 1) on the others is refused with the
reason; warn starts it and logs a warning; off (the default) does not check.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			cs, err := c.Settings(cmd.Context())
			if err != nil {
				return apiErr(err)
			}
			if cmd.Flags().Changed("ha-admission") || cmd.Flags().Changed("host-failures") {
				if cmd.Flags().Changed("ha-admission") {
					cs.HAAdmission = admission
				}
				if cmd.Flags().Changed("host-failures") {
					cs.HostFailures = failures
				}
				if cs, err = c.PutSettings(cmd.Context(), cs); err != nil {
					return apiErr(err)
				}
			}
			return f.print(cmd.OutOrStdout(), cs, func(w io.Writer) {
				fmt.Fprintf(w, "HA admission:\t%s\nHost failures:\t%d\n", or(cs.HAAdmission, api.AdmissionOff), max(cs.HostFailures, 1))
			})
		},
	}
	settings.Flags().StringVar(&admission, "ha-admission", "", "off, warn or refuse")
	settings.Flags().IntVar(&failures, "host-failures", 0, "how many hosts may fail at once for admission control (0: 1)")
	cmd.AddCommand(settings)
	return cmd
}

// or is s, or def when s is empty.
func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
