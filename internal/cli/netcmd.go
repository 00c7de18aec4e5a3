package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/govisor/govisor/api"
)

// newNetCmd builds `govisor net`: bridge networks that VM NICs join.
func newNetCmd() *cobra.Command {
	f := &apiFlags{}
	cmd := &cobra.Command{
		Use:     "net",
		Aliases: []string{"network"},
		Short:   "Define, list and delete bridge networks for VM NICs",
		Long: `Define, list and delete bridge networks. Every agent makes the network's
Linux bridge on its host; a VM's "nics: [{network: NAME}]" gets a TAP on it.` + "\n" + exitCodesHelp,
	}
	f.register(cmd)
	cmd.AddCommand(netCreateCmd(f), netListCmd(f), netShowCmd(f), netDeleteCmd(f))
	return cmd
}

func netNames(f *apiFlags) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		c, err := f.client()
		if err != nil || len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		nets, err := c.ListNetworks(cmd.Context())
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var names []string
		for _, n := range nets {
			names = append(names, n.Name)
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

func netCreateCmd(f *apiFlags) *cobra.Command {
	var n api.Network
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Define a bridge network",
		Example: `  govisor net create lan --cidr 169.254.0.1/16
  govisor net create uplink --bridge br0`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			n.Name = args[0]
			out, err := c.CreateNetwork(cmd.Context(), n)
			if err != nil {
				return apiErr(err)
			}
			return f.print(cmd.OutOrStdout(), out, func(w io.Writer) {
				fmt.Fprintf(w, "network %s created (bridge %s)\n", out.Name, out.Bridge)
			})
		},
	}
	cmd.Flags().StringVar(&n.Bridge, "bridge", "", "host bridge device (default gv-NAME)")
	cmd.Flags().StringVar(&n.CIDR, "cidr", "", "the host's address on the bridge with its prefix length, e.g. 169.254.0.1/16")
	return cmd
}

func netTable(nets []api.Network) func(io.Writer) {
	return func(w io.Writer) {
		fmt.Fprintln(w, "NAME\tKIND\tBRIDGE\tCIDR\tVMS")
		for _, n := range nets {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", n.Name, n.Kind, n.Bridge, dash(n.CIDR), dash(strings.Join(n.UsedBy, ",")))
		}
	}
}

// dash shows an empty value as "-" in tables.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func netListCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List networks",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			nets, err := c.ListNetworks(cmd.Context())
			if err != nil {
				return apiErr(err)
			}
			return f.print(cmd.OutOrStdout(), api.NetworkList{Items: nets}, netTable(nets))
		},
	}
}

func netShowCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:               "show NAME",
		Short:             "Show a network and the VMs on it",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: netNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			n, err := c.GetNetwork(cmd.Context(), args[0])
			if err != nil {
				return apiErr(err)
			}
			return f.print(cmd.OutOrStdout(), n, netTable([]api.Network{n}))
		},
	}
}

func netDeleteCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:               "delete NAME",
		Aliases:           []string{"rm"},
		Short:             "Delete a network no VM uses (agents remove its bridge)",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: netNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			if err := c.DeleteNetwork(cmd.Context(), args[0]); err != nil {
				return apiErr(err)
			}
			if f.output == "table" {
				fmt.Fprintf(cmd.OutOrStdout(), "network %s deleted\n", args[0])
			}
			return nil
		},
	}
}
