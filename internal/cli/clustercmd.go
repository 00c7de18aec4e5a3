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
	var admission, balanceMode string
	var failures int
	var threshold float64
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
			fl := cmd.Flags()
			if fl.Changed("ha-admission") || fl.Changed("host-failures") || fl.Changed("balance") || fl.Changed("balance-threshold") {
				if fl.Changed("ha-admission") {
					cs.HAAdmission = admission
				}
				if fl.Changed("host-failures") {
					cs.HostFailures = failures
				}
				if fl.Changed("balance") {
					cs.Balance = balanceMode
				}
				if fl.Changed("balance-threshold") {
					cs.BalanceThreshold = threshold
				}
				if cs, err = c.PutSettings(cmd.Context(), cs); err != nil {
					return apiErr(err)
				}
			}
			return f.print(cmd.OutOrStdout(), cs, func(w io.Writer) {
				th := cs.BalanceThreshold
				if th == 0 {
					th = 0.15
				}
				fmt.Fprintf(w, "HA admission:\t%s\nHost failures:\t%d\nBalance:\t%s (band %.0f%%)\n",
					or(cs.HAAdmission, api.AdmissionOff), max(cs.HostFailures, 1), or(cs.Balance, api.BalanceOff), 100*th)
			})
		},
	}
	settings.Flags().StringVar(&admission, "ha-admission", "", "off, warn or refuse")
	settings.Flags().IntVar(&failures, "host-failures", 0, "how many hosts may fail at once for admission control (0: 1)")
	settings.Flags().StringVar(&balanceMode, "balance", "", "the load balancer: off, manual (govisor cluster balance) or automatic (every 30 s)")
	settings.Flags().Float64Var(&threshold, "balance-threshold", 0, "the band of host loads (0 to 1; 0: 0.15)")
	var apply bool
	bal := &cobra.Command{
		Use:   "balance [--apply]",
		Short: "Show the load balancer's plan (the live migrations that even out host loads), or carry it out",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			get := c.BalancePlan
			if apply {
				get = c.Balance
			}
			p, err := get(cmd.Context())
			if err != nil {
				return apiErr(err)
			}
			if err := f.print(cmd.OutOrStdout(), p, func(w io.Writer) { printPlan(w, p, apply) }); err != nil {
				return err
			}
			for _, m := range p.Moves {
				if m.Error != "" {
					return &ExitError{Code: 1, Err: fmt.Errorf("the migration of %s to %s failed: %s", m.VM, m.To, m.Error)}
				}
			}
			return nil
		},
	}
	bal.Flags().BoolVar(&apply, "apply", false, "carry the plan out (live migrations), then show it")
	var last int
	evs := &cobra.Command{
		Use:   "events [-n N]",
		Short: "List the cluster's latest decisions and host changes, with their reasons (govisor events --cluster follows them)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			l, err := c.ClusterEvents(cmd.Context(), last)
			if err != nil {
				return apiErr(err)
			}
			return f.print(cmd.OutOrStdout(), api.ClusterEventList{Items: l}, func(w io.Writer) { printClusterEvents(w, l) })
		},
	}
	evs.Flags().IntVarP(&last, "last", "n", 50, "how many of the newest events (0: every one kept)")
	cmd.AddCommand(settings, bal, evs)
	return cmd
}

// printPlan shows a balance plan: the imbalance before and after, the
// moves, each host's load.
func printPlan(w io.Writer, p api.BalancePlan, applied bool) {
	fmt.Fprintf(w, "imbalance %.0f%% -> %.0f%% (band %.0f%%)", 100*p.Before, 100*p.After, 100*p.Threshold)
	if !p.Balanced && p.Why != "" {
		fmt.Fprintf(w, "; %s", p.Why)
	}
	fmt.Fprintln(w)
	if len(p.Moves) == 0 {
		fmt.Fprintln(w, "no migration")
	}
	for _, m := range p.Moves {
		state := "planned"
		if applied {
			state = "done"
			if m.Error != "" {
				state = "failed: " + m.Error
			}
		}
		fmt.Fprintf(w, "%s\t%s -> %s\t%s\t%s\n", m.VM, m.From, m.To, m.Reason, state)
	}
	for _, l := range p.Loads {
		fmt.Fprintf(w, "%s\t%.0f%% -> %.0f%%\n", l.Host, 100*l.Before, 100*l.After)
	}
}

// or is s, or def when s is empty.
func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
